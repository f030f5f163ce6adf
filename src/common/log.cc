#include "common/log.h"

#include <mutex>

#include <spdlog/spdlog.h>

namespace nmi {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  static std::mutex mu;
  const std::lock_guard lock(mu);
  if (auto existing = spdlog::get(name)) {
    return existing;
  }
  const auto& sinks = spdlog::default_logger()->sinks();
  auto created = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
  created->set_level(spdlog::default_logger()->level());
  spdlog::register_logger(created);
  return created;
}

std::string quoteLogValue(std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(value.size() + 2);
  out.push_back('"');
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c >= 0x7F) {
      out.append("\\x");
      out.push_back(kHex[c >> 4U]);
      out.push_back(kHex[c & 0xFU]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace nmi
