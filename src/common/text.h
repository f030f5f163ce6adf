#pragma once

#include <string>
#include <string_view>

namespace nmi {

// ASCII case folding, independent of the locale: what HTTP field names, URL path segments,
// Azure identifiers and the original's label comparisons need. Bytes outside A-Z are unchanged.
constexpr char asciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Whether `a` and `b` are equal ignoring ASCII case.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// `s` with A-Z folded to a-z.
std::string asciiLowered(std::string_view s);

}  // namespace nmi
