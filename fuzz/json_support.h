#pragma once

// Iterative walks over nlohmann::json values for the fuzz targets. Inputs may nest thousands of
// levels deep, so nothing here recurses.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace nmi::fuzz {

struct JsonShape {
  std::size_t nodes = 0;         // every value, containers included
  std::size_t depth = 0;         // containers open around the deepest value (a scalar: 0)
  std::size_t string_bytes = 0;  // bytes of string values and object keys
};

inline JsonShape shapeOf(const nlohmann::json& root) {
  JsonShape shape;
  std::vector<std::pair<const nlohmann::json*, std::size_t>> stack{{&root, 0}};
  while (!stack.empty()) {
    const auto [value, depth] = stack.back();
    stack.pop_back();
    ++shape.nodes;
    if (value->is_string()) {
      shape.string_bytes += value->get_ref<const std::string&>().size();
    } else if (value->is_object()) {
      shape.depth = std::max(shape.depth, depth + 1);
      for (auto it = value->begin(); it != value->end(); ++it) {
        shape.string_bytes += it.key().size();
        stack.emplace_back(&*it, depth + 1);
      }
    } else if (value->is_array()) {
      shape.depth = std::max(shape.depth, depth + 1);
      for (const nlohmann::json& child : *value) {
        stack.emplace_back(&child, depth + 1);
      }
    }
  }
  return shape;
}

// Calls on_string(text, is_key) for every string value and object key.
inline void forEachString(const nlohmann::json& root,
                          const std::function<void(const std::string&, bool)>& on_string) {
  std::vector<const nlohmann::json*> stack{&root};
  while (!stack.empty()) {
    const nlohmann::json* value = stack.back();
    stack.pop_back();
    if (value->is_string()) {
      on_string(value->get_ref<const std::string&>(), false);
    } else if (value->is_object()) {
      for (auto it = value->begin(); it != value->end(); ++it) {
        on_string(it.key(), true);
        stack.push_back(&*it);
      }
    } else if (value->is_array()) {
      for (const nlohmann::json& child : *value) {
        stack.push_back(&child);
      }
    }
  }
}

// Counts '{' and '[' in a text: an upper bound on the nesting of the JSON it may hold, cheap
// enough to decide whether a recursive operation (dump, ==) is safe on what it parses to.
inline std::size_t openBrackets(std::string_view text) {
  std::size_t n = 0;
  for (const char c : text) {
    n += (c == '{' || c == '[') ? 1 : 0;
  }
  return n;
}

}  // namespace nmi::fuzz
