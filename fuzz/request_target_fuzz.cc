// libFuzzer target for the request-target canonicaliser and the route classifier. Aborts when a
// security invariant of docs/canonicalisation.md does not hold:
//   * a canonical target is stable: canonicalising target() again gives the same path, segments,
//     trailing slash, parameters and route;
//   * the canonical path is "/" + its segments, none empty, ".", ".." or holding / % \ ; ? #;
//   * nothing forwarded to IMDS (Proxy, InstanceMetadata) has "token" after "oauth2" in its
//     lower-cased path, or is an identity path other than /metadata/identity/info;
//   * only /metadata/identity/oauth2/token (any case) reaches the token handler.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "imds/request_target.h"
#include "imds/route.h"

namespace {

using nmi::imds::CanonicalTarget;
using nmi::imds::Route;

[[noreturn]] void violated(std::string_view what, std::string_view input) {
  std::fprintf(stderr, "invariant violated: %.*s\ninput: %.*s\n", static_cast<int>(what.size()),
               what.data(), static_cast<int>(input.size()), input.data());
  std::abort();
}

std::string lowerCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

void checkCanonicalShape(const CanonicalTarget& t, std::string_view input) {
  std::string joined;
  for (const std::string& segment : t.segments) {
    if (segment.empty() || segment == "." || segment == ".." ||
        segment.find_first_of("/%\\;?#") != std::string::npos) {
      violated("a canonical segment is not canonical", input);
    }
    for (const char c : segment) {
      if (c < 0x21 || c > 0x7e) {
        violated("a canonical segment has a byte outside 0x21-0x7E", input);
      }
    }
    joined += "/" + segment;
  }
  if (t.path != (joined.empty() ? "/" : joined)) {
    violated("the canonical path is not its segments joined", input);
  }
  if (t.trailing_slash && t.segments.empty()) {
    violated("a trailing slash on the root", input);
  }
}

void checkTarget(const CanonicalTarget& t, std::string_view input) {
  checkCanonicalShape(t, input);
  const Route route = nmi::imds::classifyRoute(t);
  const nmi::Result<CanonicalTarget> again = nmi::imds::canonicalizeTarget(t.target());
  if (!again) {
    violated("target() is refused", input);
  }
  if (again->path != t.path || again->segments != t.segments ||
      again->trailing_slash != t.trailing_slash || again->raw_query != t.raw_query ||
      again->params != t.params || nmi::imds::classifyRoute(*again) != route ||
      again->target() != t.target()) {
    violated("canonicalising target() again changes it", input);
  }
  const std::string lower = lowerCase(t.path);
  if (route == Route::Proxy || route == Route::InstanceMetadata) {
    const std::size_t oauth2 = lower.find("oauth2");
    if (oauth2 != std::string::npos && lower.find("token", oauth2 + 6) != std::string::npos) {
      violated("a token-like path is forwarded", input);
    }
    const bool identity_path =
        lower == "/metadata/identity" || lower.starts_with("/metadata/identity/");
    if (identity_path && lower != "/metadata/identity/info") {
      violated("an identity path other than info is forwarded", input);
    }
  }
  if (route == Route::Token && lower != "/metadata/identity/oauth2/token") {
    violated("a non-token path reaches the token handler", input);
  }
  if (route == Route::HostToken && lower != "/host/token") {
    violated("a non-host-token path reaches the host token handler", input);
  }
  for (const nmi::imds::QueryParam& p : t.params) {
    if (p.name.empty() || t.find(p.name) != &p) {
      violated("a query parameter name is empty or not unique", input);
    }
  }
  if (t.params.size() > nmi::imds::kMaxQueryParams) {
    violated("too many query parameters", input);
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): bytes as chars.
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const nmi::Result<CanonicalTarget> t = nmi::imds::canonicalizeTarget(input);
  if (t) {
    checkTarget(*t, input);
  } else if (t.error().code != nmi::ErrorCode::InvalidArgument || t.error().message.empty()) {
    violated("an error that is not InvalidArgument or has no message", input);
  }
  return 0;
}
