#include "common/identifier.h"

#include <algorithm>

namespace nmi {

namespace {

char asciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

std::string canonicalIdentifier(std::string_view id) {
  std::string out(id);
  std::transform(out.begin(), out.end(), out.begin(), asciiLower);
  return out;
}

bool sameIdentifier(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return asciiLower(x) == asciiLower(y);
         });
}

std::size_t identifierHash(std::string_view id) {
  // FNV-1a over the canonical bytes.
  std::size_t hash = 14695981039346656037ULL;
  for (const char c : id) {
    hash ^= static_cast<unsigned char>(asciiLower(c));
    hash *= 1099511628211ULL;
  }
  return hash;
}

}  // namespace nmi
