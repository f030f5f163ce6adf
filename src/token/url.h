#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace nmi::token {

// Go's url.QueryEscape: keeps A-Z a-z 0-9 '-' '_' '.' '~', writes a space as '+' and every other
// byte as %XX (upper-case hex). Pure.
std::string queryEscape(std::string_view text);

// Go's url.Values.Encode: parameters sorted by name (stable for equal names), each written as
// queryEscape(name) "=" queryEscape(value), joined with '&'. Used for IMDS queries and Azure AD
// form bodies, so both look exactly like the original's. Pure.
std::string encodeQuery(std::vector<std::pair<std::string, std::string>> params);

// RFC 3986 section 5.2 reference resolution (what Go's url.URL.Parse(ref) on a base URL does):
// a relative path replaces the base's last segment, so "https://h/base" + "t/x" is "https://h/t/x"
// while "https://h/base/" + "t/x" is "https://h/base/t/x"; dot segments are removed. `base` must
// be absolute (have a scheme). The scheme is returned in lower case. Pure.
// Errors: InvalidArgument (base not absolute, or a control character or space in either).
Result<std::string> resolveReference(std::string_view base, std::string_view reference);

// The parts of an absolute URL, split as RFC 3986 appendix B does.
struct UrlParts {
  std::string scheme;  // lower case
  bool has_authority = false;
  std::string authority;
  std::string path;
  bool has_query = false;
  std::string query;
  bool has_fragment = false;
  std::string fragment;
};

UrlParts splitUrl(std::string_view url);

}  // namespace nmi::token
