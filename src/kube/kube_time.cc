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
  const auto year = takeDigitsThen(s, 4, 4, '-');
  const auto month = takeDigitsThen(s, 2, 2, '-');
  const auto day = takeDigits(s, 2, 2);
  if (!year || !month || !day || !takeEither(s, 'T', 't')) {
    return std::nullopt;
  }
  const auto hour = takeDigitsThen(s, 2, 2, ':');
  const auto minute = takeDigitsThen(s, 2, 2, ':');
  const auto second = takeDigits(s, 2, 2);
  if (!hour || !minute || !second) {
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
    const auto offset = takeUtcOffset(s);
    if (!offset) {
      return std::nullopt;
    }
    offset_seconds = *offset;
  }
  if (!s.empty()) {
    return std::nullopt;
  }
  const auto epoch_at =
      epochSecondsAt({*year, *month, *day, *hour, *minute, *second}, offset_seconds);
  if (!epoch_at || *epoch_at < 0) {
    return std::nullopt;
  }
  const std::int64_t epoch = *epoch_at;
  if (epoch >= lastSystemTimeSecond()) {
    return clampedSystemTime(epoch);  // (a fraction would overflow)
  }
  return SystemTime{
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::seconds{epoch} + fraction)};
}

}  // namespace nmi::kube
