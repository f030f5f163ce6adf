#pragma once

#include <optional>
#include <string>

#include "common/result.h"
#include "identity/resolver.h"
#include "identity/types.h"
#include "imds/request_target.h"
#include "imds/responses.h"
#include "token/authority.h"
#include "token/types.h"

namespace nmi::imds {

// The pure decisions between "this identity was chosen" and "ask for this token", kept apart
// from the handler that waits and answers. All pure and thread-safe.

// The identity selectors of a token request's query: client_id, msi_res_id (else mi_res_id, as
// Azure.Identity for .NET since 1.8.2 and adal send it) and object_id.
identity::IdentityRequest identityRequest(const CanonicalTarget& target);

// The token request for a granted AzureIdentity: a managed identity by client id, else by
// resource id; a service principal with its secret or certificate. Errors: PermissionDenied when
// --forceNamespaced (`force_namespaced`) forbids its Secret; InvalidArgument for an identity that
// lacks what its type needs or has an unsupported type (the original's "unsupported identity
// type").
Result<token::TokenRequest> tokenRequestFor(const identity::AzureIdentity& id,
                                            const std::string& resource, bool force_namespaced);

// The token request for a pod of an AzurePodIdentityException: the node's identity, narrowed by
// the selector the pod sent (client id, then resource id, then object id), as IMDS would.
token::TokenRequest exceptionRequest(const identity::IdentityRequest& forward,
                                     const std::string& resource);

// Where a service principal's credential would go must be an allowed Azure AD host (the Azure
// clouds, or --aad-allowed-hosts); checked before its Secret is read. Nullopt when allowed, and
// for managed identities.
std::optional<token::AuthorityCheck> refusedAadHost(const token::TokenRequest& request,
                                                    const token::AuthorityAllowlist& allowlist);

// The answer for a failed token fetch: the upstream's refusal (the original's 403), the
// provider's own host guard, nmi's rate limit, else the original's 503.
Reply replyForTokenError(const Error& e);

}  // namespace nmi::imds
