#include "kube/kube_time.h"

#include <chrono>
#include <cstdint>

#include "common/civil_time.h"

namespace nmi::kube {

namespace {

// RFC 3339 allows a lower-case separator and zone letter.
bool takeEither(std::string_view& s, char upper, char lower) {
  return takeChar(s, upper) || takeChar(s, lower);
}

}  // namespace

std::optional<SystemTime> parseKubeTime(std::string_view s) {
  const auto year = takeDigits(s, 4, 4);
  if (!year || !takeChar(s, '-')) {
    return std::nullopt;
  }
  const auto month = takeDigits(s, 2, 2);
  if (!month || !takeChar(s, '-')) {
    return std::nullopt;
  }
  const auto day = takeDigits(s, 2, 2);
  if (!day || !takeEither(s, 'T', 't')) {
    return std::nullopt;
  }
  const auto hour = takeDigits(s, 2, 2);
  if (!hour || !takeChar(s, ':')) {
    return std::nullopt;
  }
  const auto minute = takeDigits(s, 2, 2);
  if (!minute || !takeChar(s, ':')) {
    return std::nullopt;
  }
  const auto second = takeDigits(s, 2, 2);
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
    const auto off_hour = takeDigits(s, 2, 2);
    if (!off_hour || !takeChar(s, ':')) {
      return std::nullopt;
    }
    const auto off_minute = takeDigits(s, 2, 2);
    if (!off_minute || *off_hour > 23 || *off_minute > 59) {
      return std::nullopt;
    }
    offset_seconds = sign * (std::int64_t{*off_hour} * 3600 + std::int64_t{*off_minute} * 60);
  }
  if (!s.empty() || *month < 1 || *month > 12 || *hour > 23 || *minute > 59 || *second > 59) {
    return std::nullopt;
  }
  const auto local = civilToEpochSeconds(*year, *month, *day, *hour, *minute, *second);
  if (!local) {
    return std::nullopt;
  }
  const std::int64_t epoch = *local - offset_seconds;
  if (epoch < 0) {
    return std::nullopt;
  }
  if (epoch >= lastSystemTimeSecond()) {
    return clampedSystemTime(epoch);  // (a fraction would overflow)
  }
  return SystemTime{
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::seconds{epoch} + fraction)};
}

}  // namespace nmi::kube
