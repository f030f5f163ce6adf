#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nmi::imds {

// Limits of canonicalizeTarget(). A longer target or more parameters is an error, never truncated.
inline constexpr std::size_t kMaxRequestTargetBytes = 8192;
inline constexpr std::size_t kMaxQueryParams = 64;

// One query parameter; name and value are percent-decoded ('+' is a space).
struct QueryParam {
  std::string name;
  std::string value;

  bool operator==(const QueryParam&) const = default;
};

// The single canonical form of a request target. Every routing decision and everything the proxy
// forwards is derived from it; the raw target is never looked at again. The rules are in
// docs/canonicalisation.md. Plain value type: thread-compatible.
struct CanonicalTarget {
  // "/" followed by the segments joined with "/". Never ends with "/" unless it is "/". Contains no
  // '%', '\', ';', empty, "." or ".." segment, and only bytes 0x21-0x7E, so it is forwarded as is.
  std::string path;
  // The request ended with "/" (or a "." or ".." segment) and the path has at least one segment.
  bool trailing_slash = false;
  // The path's segments, decoded; the first is "metadata" in lower case if it was any case of it.
  std::vector<std::string> segments;
  // The query exactly as received (validated), without '?'; "" if there was none.
  std::string raw_query;
  // The decoded parameters in order of appearance; names are unique.
  std::vector<QueryParam> params;

  // The parameter with exactly this (case-sensitive) name, or nullptr. The pointer is valid while
  // this object is alive and unmodified.
  const QueryParam* find(std::string_view name) const;

  // What the proxy forwards: path, "/" if trailing_slash, then "?" + raw_query if it is non-empty.
  // canonicalizeTarget(target()) yields the same path, segments, trailing_slash and params.
  std::string target() const;
};

// Canonicalises an HTTP request-target. Only origin-form ("/path?query") is accepted. Pure and
// thread-safe. Errors: ErrorCode::InvalidArgument; the message says why (for logs only, never sent
// to a pod).
Result<CanonicalTarget> canonicalizeTarget(std::string_view request_target);

}  // namespace nmi::imds
