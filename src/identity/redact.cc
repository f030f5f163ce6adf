#include "identity/redact.h"

#include <cstddef>
#include <vector>

namespace nmi::identity {

namespace {

constexpr std::size_t kKept = 4;

// Go's \s in RE2 syntax: [\t\n\f\r ].
bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

bool isContinuationByte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0U) == 0x80U;
}

}  // namespace

std::string redactClientId(std::string_view id) {
  std::vector<std::size_t> starts;  // byte offset of each code point
  starts.reserve(id.size());
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (!isContinuationByte(id[i]) || starts.empty()) {
      starts.push_back(i);
    }
  }
  if (starts.size() < 2 * kKept) {
    return std::string(id);
  }
  const std::size_t head_end = starts[kKept];
  const std::size_t tail_begin = starts[starts.size() - kKept];
  for (std::size_t i = 0; i < head_end; ++i) {
    if (isSpace(id[i])) {
      return std::string(id);
    }
  }
  for (std::size_t i = tail_begin; i < id.size(); ++i) {
    if (isSpace(id[i])) {
      return std::string(id);
    }
  }
  std::string out;
  out.reserve(head_end + (id.size() - tail_begin) + 20);
  out.append(id.substr(0, head_end));
  out.append("##### REDACTED #####");
  out.append(id.substr(tail_begin));
  return out;
}

}  // namespace nmi::identity
