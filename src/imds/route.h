#pragma once

#include <string_view>

#include "imds/request_target.h"

namespace nmi::imds {

// Where a canonical request goes. Only InstanceMetadata (unless instance metadata is blocked) and
// Proxy are ever forwarded to IMDS, and only for the methods forwardMethods() names; every other
// route is answered by nmi itself. Forwarding is by allowlist: the documented IMDS categories
// below, every segment made of letters, digits, '-' and '_' (so no spelling that a Windows HTTP
// stack would fold, such as a trailing dot, ever leaves nmi).
enum class Route {
  Token,                // /metadata/identity/oauth2/token: the pod's own token
  HostToken,            // /host/token: a token for host processes
  InvalidTokenPath,     // any other spelling that looks like a token path: 400
  HostNotFound,         // any other /host path: 404, never proxied
  InstanceMetadata,     // /metadata/instance[/<key>...]: 403 when blocked, else proxied
  BlockedIdentityPath,  // /metadata/identity/... other than the token path and "info": refused
  Proxy,                // /metadata/versions, /metadata/identity/info, /metadata/attested/document,
                        // /metadata/scheduledevents, /metadata/loadbalancer: forwarded to IMDS
  NotFound,             // everything else: 404, answered by nmi, never proxied
};

// Classifies a canonical target; segments are compared case-insensitively (ASCII). The first
// matching rule wins, in the order of the enum; see docs/canonicalisation.md. Pure, thread-safe.
Route classifyRoute(const CanonicalTarget& t);

// A short, fixed name per route, for metric labels and logs: "token", "host_token",
// "invalid_token_path", "host_not_found", "instance", "blocked_identity", "proxy", "not_found".
std::string_view routeName(Route r);

// The methods forwarded on a forwarded route, as an Allow header value: "GET, HEAD", plus POST
// for /metadata/scheduledevents (acknowledging events); "" for routes that are never forwarded.
std::string_view forwardMethods(const CanonicalTarget& t, Route route);

// The first segment is "metadata" (any case).
bool isMetadataPath(const CanonicalTarget& t);

}  // namespace nmi::imds
