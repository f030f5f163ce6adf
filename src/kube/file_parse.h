#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nmi::kube {

inline constexpr std::size_t kMaxIdentityFileBytes = std::size_t{16} * 1024 * 1024;
inline constexpr std::size_t kMaxIdentityFileObjects = 100'000;
inline constexpr int kMaxNestingDepth = 128;

// One Kubernetes object of an identity file and where it was found, for error messages:
// "document 2 (line 14)", "items[3]", "document 1 (line 1), items[0] (line 5)".
struct LocatedObject {
  nlohmann::json object;
  std::string where;
};

// Splits the text of an identity file into its objects. The text is JSON when its first
// non-blank character is '{' or '[' (a single object, a `{"kind":"List","items":[...]}` or any
// `*List` with items, or an array of objects), YAML otherwise (one or more `---` documents, each an
// object or a List; empty documents are skipped). YAML scalars follow the YAML 1.2 core schema:
// unquoted 0, true, null are numbers, booleans, null; quoted ones are strings.
// Errors (InvalidArgument): syntax errors with their line, nesting deeper than kMaxNestingDepth,
// non-object entries, more than kMaxIdentityFileObjects objects, and YAML aliases expanding
// beyond a fixed budget. Messages never quote the file's content.
Result<std::vector<LocatedObject>> parseIdentityText(std::string_view text);

}  // namespace nmi::kube
