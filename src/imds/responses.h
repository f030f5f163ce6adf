#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "http/server.h"
#include "token/types.h"

namespace nmi::imds {

// Every answer nmi gives a pod other than a token, with a fixed IMDS-shaped body: the pod learns
// what kind of failure it is, details go only to nmi's log.
enum class Reply {
  MetadataHeaderMissing,     // 400: no `Metadata: true` (also a repeated Metadata header)
  ForwardedHeader,           // 400: X-Forwarded-For present (IMDS refuses proxied requests)
  BadRequestTarget,          // 400: the request target could not be canonicalised
  InvalidTokenPath,          // 400: a spelling of a token path that is not the token path
  ResourceMissing,           // 400: no `resource` query parameter
  ConflictingSelectors,      // 400: more than one of client_id, msi_res_id/mi_res_id, object_id
  IdentityNotFoundObjectId,  // 400: object_id cannot be matched to an AzureIdentity
  HostHeadersMissing,        // 400: /host/token without podns and podname
  HostPeerNotLoopback,       // 403: /host/token from a non-loopback peer (the original: 500)
  InstanceBlocked,           // 403: --block-instance-metadata
  IdentityPathBlocked,       // 403: other /metadata/identity endpoints (e.g. IMDSv2 credentials)
  TokenRefused,              // 403: IMDS or Azure AD refused the token request
  CredentialSecretRefused,   // 403: --forceNamespaced, the identity's Secret in another namespace
  AadHostRefused,            // 403: the identity's Azure AD host is not in the allowlist
  NotFound,                  // 404: a path nmi neither serves nor forwards
  MethodNotAllowed,          // 405: a forwarded path with a method IMDS does not take there
  IdentityNotFound,          // 404: no identity for this pod (and request)
  TooManyRequests,           // 429: per-pod limits (Retry-After: 1)
  ProxyBusyForPod,           // 429: the pod has its share of forwarded requests in flight
  PodNotFound,               // 500: no pod on this node has the caller's address
  PodConflict,               // 500: several live pods claim the caller's address
  NotReady,                  // 503: identity data not synced yet (Retry-After: 1)
  IdentityNotReady,  // 503 + Retry-After: 20: identity not assigned yet (--set-retry-after-header)
  TokenUnavailable,  // 503: token acquisition failed (network, credential, budget)
  ProxyOverloaded,   // 503: every forwarding slot is busy (Retry-After: 1)
  UpstreamUnreachable,  // 502: IMDS could not be reached by the proxy
  UpstreamTimeout,      // 504: IMDS did not answer the proxy in time
  Internal,             // 500
};

unsigned statusFor(Reply reply);

// The response for `reply`: status, IMDS-shaped JSON body, Retry-After where it applies.
http::Response makeReply(Reply reply, unsigned http_version);

// The token body IMDS sends: eight string fields. expires_in is the remaining lifetime at `now`.
std::string tokenJson(const token::AccessToken& token, std::string_view resource,
                      std::string_view client_id, SystemTime now);

// /host/token's body: {"token":{...},"clientid":"..."}.
std::string hostTokenJson(const token::AccessToken& token, std::string_view resource,
                          std::string_view client_id, SystemTime now);

http::Response jsonResponse(unsigned status, std::string body, unsigned http_version);

}  // namespace nmi::imds
