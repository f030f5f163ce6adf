#include "identity/credential_secret.h"

namespace nmi::identity {

Result<SecretRef> credentialSecretFor(const AzureIdentity& id, bool force_namespaced) {
  if (id.client_password.name.empty()) {
    return makeError(ErrorCode::NotFound, "identity " + id.ns + "/" + id.name +
                                              " names no credential Secret (clientPassword.name)");
  }
  SecretRef ref = id.client_password;
  if (ref.ns.empty()) {
    // A reference without a namespace is read in the identity's namespace, as Kubernetes reads
    // references of namespaced objects. (The original asked for /api/v1/secrets/<name>, a path
    // that does not exist, so such identities never worked.)
    ref.ns = id.ns;
  }
  if (force_namespaced && ref.ns != id.ns) {
    return makeError(ErrorCode::PermissionDenied,
                     "secret namespace " + ref.ns + " is not the identity's namespace " + id.ns);
  }
  return ref;
}

}  // namespace nmi::identity
