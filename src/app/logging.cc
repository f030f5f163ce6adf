#include "app/logging.h"

#include <chrono>
#include <memory>
#include <string_view>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace nmi::app {

namespace {

void appendEscaped(spdlog::memory_buf_t& dest, std::string_view s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        dest.append(std::string_view("\\\""));
        break;
      case '\\':
        dest.append(std::string_view("\\\\"));
        break;
      case '\n':
        dest.append(std::string_view("\\n"));
        break;
      case '\r':
        dest.append(std::string_view("\\r"));
        break;
      case '\t':
        dest.append(std::string_view("\\t"));
        break;
      default:
        if (c < 0x20) {
          fmt::format_to(std::back_inserter(dest), "\\u{:04x}", c);
        } else {
          dest.push_back(ch);
        }
    }
  }
}

// One JSON object per line, for log pipelines.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(msg.time.time_since_epoch()).count();
    const std::time_t secs = static_cast<std::time_t>(micros / 1'000'000);
    fmt::format_to(std::back_inserter(dest), R"({{"ts":"{:%Y-%m-%dT%H:%M:%S}.{:06d}Z","level":")",
                   fmt::gmtime(secs), micros % 1'000'000);
    const auto level = spdlog::level::to_string_view(msg.level);
    dest.append(level.data(), level.data() + level.size());
    dest.append(std::string_view(R"(","logger":")"));
    appendEscaped(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    dest.append(std::string_view(R"(","msg":")"));
    appendEscaped(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(std::string_view("\"}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

void setupLogging(const config::LogConfig& log) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  if (log.format == config::LogFormat::Json) {
    sink->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%S.%fZ %l %n %v", spdlog::pattern_time_type::utc));
  }
  auto logger = std::make_shared<spdlog::logger>("nmi", sink);
  spdlog::level::level_enum level = spdlog::level::info;
  if (log.verbosity >= 6) {
    level = spdlog::level::trace;
  } else if (log.verbosity >= 4) {
    level = spdlog::level::debug;
  }
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  spdlog::set_level(level);
  logger->flush_on(spdlog::level::info);
}

}  // namespace nmi::app
