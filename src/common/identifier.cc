#include "common/identifier.h"

#include "common/text.h"

namespace nmi {

std::string canonicalIdentifier(std::string_view id) {
  return asciiLowered(id);
}

bool sameIdentifier(std::string_view a, std::string_view b) {
  return equalsIgnoreCase(a, b);
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
