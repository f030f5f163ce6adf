#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nmi {

// Identifiers Azure compares without regard to case: client and object ids (GUIDs) and Azure
// Resource Manager resource ids. IMDS picks an identity by any spelling of them, so nmi must too:
// every comparison of a request's selector with an identity, and every cache key holding one,
// goes through these functions and no other.

// The canonical spelling: ASCII letters lower-cased, every other byte kept (no trimming, no
// reordering). Two spellings name the same identity exactly when their canonical spellings are
// equal. Pure.
std::string canonicalIdentifier(std::string_view id);

// canonicalIdentifier(a) == canonicalIdentifier(b), without allocating. Pure.
bool sameIdentifier(std::string_view a, std::string_view b);

// A hash of canonicalIdentifier(id), without allocating: equal for every spelling. Pure.
std::size_t identifierHash(std::string_view id);

}  // namespace nmi
