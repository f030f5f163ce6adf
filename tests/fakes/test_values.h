#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace nmi::testing {

// Small readers the unit tests share.

// The error code of `r`, or nullopt when it holds a value (so a wrong success fails, not aborts).
template <class T>
std::optional<ErrorCode> codeOf(const Result<T>& r) {
  return r.has_value() ? std::nullopt : std::optional<ErrorCode>(r.error().code);
}

// The value of the first sample line of `name` in Prometheus text `text` whose labels contain
// every one of `labels` (e.g. R"(status="200")"); nullopt when there is none.
inline std::optional<double> metricValue(const std::string& text, const std::string& name,
                                         const std::vector<std::string>& labels = {}) {
  std::size_t pos = 0;
  while ((pos = text.find(name, pos)) != std::string::npos) {
    const std::size_t end = text.find('\n', pos);
    const bool line_start = pos == 0 || text[pos - 1] == '\n';
    const std::string line = text.substr(pos, end - pos);
    pos = end;
    if (!line_start || line.size() <= name.size() ||
        (line[name.size()] != '{' && line[name.size()] != ' ')) {
      continue;
    }
    bool all = true;
    for (const auto& label : labels) {
      all = all && line.find(label) != std::string::npos;
    }
    if (all) {
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return std::nullopt;
}

}  // namespace nmi::testing
