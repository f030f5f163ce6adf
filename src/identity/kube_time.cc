#include "identity/kube_time.h"

#include <chrono>
#include <cstdint>

namespace nmi::identity {

namespace {

// Exactly `digits` decimal digits from the front of `s`, consumed.
std::optional<int> takeDigits(std::string_view& s, std::size_t digits) {
  if (s.size() < digits) {
    return std::nullopt;
  }
  int value = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    value = value * 10 + (c - '0');
  }
  s.remove_prefix(digits);
  return value;
}

bool takeChar(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) {
    return false;
  }
  s.remove_prefix(1);
  return true;
}

// RFC 3339 allows a lower-case separator and zone letter.
bool takeEither(std::string_view& s, char upper, char lower) {
  return takeChar(s, upper) || takeChar(s, lower);
}

}  // namespace

std::optional<SystemTime> parseKubeTime(std::string_view s) {
  const auto year = takeDigits(s, 4);
  if (!year || !takeChar(s, '-')) {
    return std::nullopt;
  }
  const auto month = takeDigits(s, 2);
  if (!month || !takeChar(s, '-')) {
    return std::nullopt;
  }
  const auto day = takeDigits(s, 2);
  if (!day || !takeEither(s, 'T', 't')) {
    return std::nullopt;
  }
  const auto hour = takeDigits(s, 2);
  if (!hour || !takeChar(s, ':')) {
    return std::nullopt;
  }
  const auto minute = takeDigits(s, 2);
  if (!minute || !takeChar(s, ':')) {
    return std::nullopt;
  }
  const auto second = takeDigits(s, 2);
  if (!second) {
    return std::nullopt;
  }
  std::chrono::nanoseconds fraction{0};
  if (takeChar(s, '.')) {
    std::int64_t nanos = 0;
    std::size_t digits = 0;
    while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
      if (digits < 9) {
        nanos = nanos * 10 + (s.front() - '0');
      }
      ++digits;
      s.remove_prefix(1);
    }
    if (digits == 0 || digits > 9) {
      return std::nullopt;
    }
    for (std::size_t i = digits; i < 9; ++i) {
      nanos *= 10;
    }
    fraction = std::chrono::nanoseconds{nanos};
  }
  std::int64_t offset_seconds = 0;
  if (!takeEither(s, 'Z', 'z')) {
    if (s.empty() || (s.front() != '+' && s.front() != '-')) {
      return std::nullopt;
    }
    const int sign = s.front() == '-' ? -1 : 1;
    s.remove_prefix(1);
    const auto off_hour = takeDigits(s, 2);
    if (!off_hour || !takeChar(s, ':')) {
      return std::nullopt;
    }
    const auto off_minute = takeDigits(s, 2);
    if (!off_minute || *off_hour > 23 || *off_minute > 59) {
      return std::nullopt;
    }
    offset_seconds = sign * (std::int64_t{*off_hour} * 3600 + std::int64_t{*off_minute} * 60);
  }
  if (!s.empty() || *month < 1 || *month > 12 || *hour > 23 || *minute > 59 || *second > 59) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year{*year},
                                        std::chrono::month{static_cast<unsigned>(*month)},
                                        std::chrono::day{static_cast<unsigned>(*day)}};
  if (!ymd.ok()) {
    return std::nullopt;
  }
  const std::int64_t days = std::chrono::sys_days{ymd}.time_since_epoch().count();
  const std::int64_t epoch = days * 86400 + std::int64_t{*hour} * 3600 +
                             std::int64_t{*minute} * 60 + *second - offset_seconds;
  if (epoch < 0) {
    return std::nullopt;
  }
  // SystemTime counts nanoseconds in 64 bits and ends in 2262; a later time (the format goes to
  // 9999) is its last second, which is as far away for every use here.
  constexpr std::int64_t kLastSecond =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::max().time_since_epoch())
          .count();
  if (epoch >= kLastSecond) {
    return SystemTime{
        std::chrono::duration_cast<SystemTime::duration>(std::chrono::seconds{kLastSecond})};
  }
  return SystemTime{
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::seconds{epoch} + fraction)};
}

}  // namespace nmi::identity
