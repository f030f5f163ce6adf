#pragma once

#include "common/result.h"
#include "identity/types.h"

namespace nmi::identity {

// Which Secret a service principal's credential may be read from: the identity's
// spec.clientPassword, where an empty namespace means the identity's own namespace. Under
// --forceNamespaced (`force_namespaced`) the Secret must be in the identity's namespace: an
// identity may then use only credentials of its own namespace, as it serves only pods of its own
// namespace. Without the flag any namespace is accepted, as in the original.
// Errors: NotFound (clientPassword names no Secret), PermissionDenied (a Secret of another
// namespace under --forceNamespaced; the message names both namespaces and nothing else). Pure.
Result<SecretRef> credentialSecretFor(const AzureIdentity& id, bool force_namespaced);

}  // namespace nmi::identity
