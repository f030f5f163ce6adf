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

std::optional<int> takeDigitsThen(std::string_view& s, std::size_t min_digits,
                                  std::size_t max_digits, char separator) {
  const auto value = takeDigits(s, min_digits, max_digits);
  if (!value || !takeChar(s, separator)) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::int64_t> takeUtcOffset(std::string_view& s) {
  if (s.empty() || (s.front() != '+' && s.front() != '-')) {
    return std::nullopt;
  }
  const std::int64_t sign = s.front() == '-' ? -1 : 1;
  std::string_view rest = s.substr(1);
  const auto hours = takeDigitsThen(rest, 2, 2, ':');
  const auto minutes = takeDigits(rest, 2, 2);
  if (!hours || !minutes || *hours > 23 || *minutes > 59) {
    return std::nullopt;
  }
  s = rest;
  return sign * (std::int64_t{*hours} * 3600 + std::int64_t{*minutes} * 60);
}

std::optional<std::int64_t> epochSecondsAt(const CivilTime& t, std::int64_t utc_offset_seconds) {
  if (t.hour < 0 || t.hour > 23 || t.minute < 0 || t.minute > 59 || t.second < 0 || t.second > 59) {
    return std::nullopt;
  }
  const auto local = civilToEpochSeconds(t.year, t.month, t.day, t.hour, t.minute, t.second);
  if (!local) {
    return std::nullopt;
  }
  return *local - utc_offset_seconds;
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
