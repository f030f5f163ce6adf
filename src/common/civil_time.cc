#include "common/civil_time.h"

#include <algorithm>
#include <chrono>

namespace nmi {

std::optional<int> takeDigits(std::string_view& s, std::size_t min_digits, std::size_t max_digits) {
  std::size_t n = 0;
  int value = 0;
  while (n < s.size() && n < max_digits && s[n] >= '0' && s[n] <= '9') {
    value = value * 10 + (s[n] - '0');
    ++n;
  }
  if (n < min_digits) {
    return std::nullopt;
  }
  s.remove_prefix(n);
  return value;
}

bool takeChar(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) {
    return false;
  }
  s.remove_prefix(1);
  return true;
}

std::optional<std::int64_t> civilToEpochSeconds(int year, int month, int day, int hour, int minute,
                                                int second) {
  if (month < 1 || day < 1) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year{year},
                                        std::chrono::month{static_cast<unsigned>(month)},
                                        std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok()) {
    return std::nullopt;
  }
  const std::int64_t days = std::chrono::sys_days{ymd}.time_since_epoch().count();
  return days * 86400 + std::int64_t{hour} * 3600 + std::int64_t{minute} * 60 + second;
}

std::int64_t lastSystemTimeSecond() {
  return std::chrono::duration_cast<std::chrono::seconds>(SystemTime::duration::max()).count();
}

SystemTime clampedSystemTime(std::int64_t epoch_seconds) {
  return fromUnixSeconds(std::min(epoch_seconds, lastSystemTimeSecond()));
}

}  // namespace nmi
