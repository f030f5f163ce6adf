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

}  // namespace nmi
