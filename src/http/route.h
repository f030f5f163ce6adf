#pragma once

#include <string_view>

#include "http/request_target.h"

namespace nmi::http {

// Where a canonical request goes. Only Proxy (and InstanceMetadata, unless instance metadata is
// blocked) is ever forwarded to IMDS; every other route is answered by nmi itself.
enum class Route {
  Token,                // /metadata/identity/oauth2/token: the pod's own token
  HostToken,            // /host/token: a token for host processes
  InvalidTokenPath,     // any other spelling that looks like a token path: 400
  HostNotFound,         // any other /host path: 404, never proxied
  InstanceMetadata,     // /metadata/instance...: 403 when blocked, else proxied
  BlockedIdentityPath,  // /metadata/identity/... other than the token path and "info": refused
  Proxy,                // everything else: forwarded to IMDS as CanonicalTarget::target()
};

// Classifies a canonical target; segments are compared case-insensitively (ASCII). The first
// matching rule wins, in the order of the enum; see docs/canonicalisation.md. Pure, thread-safe.
Route classifyRoute(const CanonicalTarget& t);

// A short, fixed name per route, for metric labels and logs: "token", "host_token",
// "invalid_token_path", "host_not_found", "instance", "blocked_identity", "proxy".
std::string_view routeName(Route r);

// The first segment is "metadata" (any case).
bool isMetadataPath(const CanonicalTarget& t);

}  // namespace nmi::http
