#include "imds/route.h"

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/text.h"

namespace nmi::imds {
namespace {

bool segmentIs(const CanonicalTarget& t, std::size_t index, std::string_view word) {
  return index < t.segments.size() && equalsIgnoreCase(t.segments[index], word);
}

// The segments are exactly these words (any case).
bool segmentsAre(const CanonicalTarget& t, std::initializer_list<std::string_view> words) {
  if (t.segments.size() != words.size()) {
    return false;
  }
  std::size_t i = 0;
  for (const std::string_view word : words) {
    if (!equalsIgnoreCase(t.segments[i++], word)) {
      return false;
    }
  }
  return true;
}

// Each needle occurs in `haystack`, after the end of the previous one.
bool containsInOrder(std::string_view haystack, std::initializer_list<std::string_view> needles) {
  std::size_t pos = 0;
  for (const std::string_view needle : needles) {
    const std::size_t found = haystack.find(needle, pos);
    if (found == std::string_view::npos) {
      return false;
    }
    pos = found + needle.size();
  }
  return true;
}

// Letters, digits, '-' and '_' only: no dot, so nothing a Windows HTTP stack folds (a trailing
// dot or space) and nothing a server could read as a path operator.
bool plainSegment(std::string_view segment) {
  if (segment.empty()) {
    return false;
  }
  for (const char c : segment) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool plainSegmentsFrom(const CanonicalTarget& t, std::size_t first) {
  for (std::size_t i = first; i < t.segments.size(); ++i) {
    if (!plainSegment(t.segments[i])) {
      return false;
    }
  }
  return true;
}

// The IMDS categories forwarded besides /metadata/instance (docs/compat.md, "Forwarding").
bool isForwardedCategory(const CanonicalTarget& t) {
  return segmentsAre(t, {"metadata", "versions"}) ||
         segmentsAre(t, {"metadata", "identity", "info"}) ||
         segmentsAre(t, {"metadata", "attested", "document"}) ||
         segmentsAre(t, {"metadata", "scheduledevents"}) ||
         segmentsAre(t, {"metadata", "loadbalancer"});
}

bool isIdentityPath(const CanonicalTarget& t) {
  return segmentIs(t, 0, "metadata") && segmentIs(t, 1, "identity");
}

// Anything that is not the token path but could be mistaken for it by IMDS, a future IMDS, or a
// reader. aad-pod-identity's CVE-2022-23551 fix matched identity...oauth2...token; the "identity"
// is dropped here because `/metadata/instance/oauth2/token` or `/oauth2/token` must not be
// proxied either: no real IMDS path outside the token endpoint contains oauth2 then token.
bool looksLikeTokenPath(const CanonicalTarget& t) {
  const std::string lower = asciiLowered(t.path);
  if (containsInOrder(lower, {"oauth2", "token"})) {
    return true;
  }
  if (!isIdentityPath(t)) {
    return false;
  }
  for (std::size_t i = 2; i < t.segments.size(); ++i) {
    if (asciiLowered(t.segments[i]).find("token") != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

Route classifyRoute(const CanonicalTarget& t) {
  if (segmentsAre(t, {"metadata", "identity", "oauth2", "token"})) {
    return Route::Token;
  }
  if (segmentsAre(t, {"host", "token"})) {
    return Route::HostToken;
  }
  if (looksLikeTokenPath(t)) {
    return Route::InvalidTokenPath;
  }
  if (segmentIs(t, 0, "host")) {
    return Route::HostNotFound;
  }
  if (segmentIs(t, 0, "metadata") && segmentIs(t, 1, "instance") && plainSegmentsFrom(t, 2)) {
    return Route::InstanceMetadata;
  }
  // Other identity endpoints (IMDSv2's issuecredential, getplatformmetadata, ...) would act with
  // the node's identities; only the harmless "info" is proxied.
  if (isIdentityPath(t) && !segmentsAre(t, {"metadata", "identity", "info"})) {
    return Route::BlockedIdentityPath;
  }
  return isForwardedCategory(t) ? Route::Proxy : Route::NotFound;
}

std::string_view forwardMethods(const CanonicalTarget& t, Route route) {
  switch (route) {
    case Route::InstanceMetadata:
      return "GET, HEAD";
    case Route::Proxy:
      return segmentsAre(t, {"metadata", "scheduledevents"}) ? "GET, HEAD, POST" : "GET, HEAD";
    default:
      return "";
  }
}

std::string_view routeName(Route r) {
  switch (r) {
    case Route::Token:
      return "token";
    case Route::HostToken:
      return "host_token";
    case Route::InvalidTokenPath:
      return "invalid_token_path";
    case Route::HostNotFound:
      return "host_not_found";
    case Route::InstanceMetadata:
      return "instance";
    case Route::BlockedIdentityPath:
      return "blocked_identity";
    case Route::Proxy:
      return "proxy";
    case Route::NotFound:
      return "not_found";
  }
  return "not_found";
}

bool isMetadataPath(const CanonicalTarget& t) {
  return segmentIs(t, 0, "metadata");
}

}  // namespace nmi::imds
