#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/clock.h"

namespace nmi {

// Pure helpers for parsers of written dates and times (Kubernetes' RFC 3339, adal's date forms).

// Between min_digits and max_digits ASCII decimal digits from the front of `s` (as many as there
// are, up to max_digits), consumed; nullopt, with `s` unchanged, when there are fewer than
// min_digits. max_digits must be at most 9.
std::optional<int> takeDigits(std::string_view& s, std::size_t min_digits, std::size_t max_digits);

// Consumes `c` from the front of `s` when it is there.
bool takeChar(std::string_view& s, char c);

// takeDigits, then `separator`: the field and its separator, both consumed; nullopt when either
// is missing (then `s` may have lost the digits).
std::optional<int> takeDigitsThen(std::string_view& s, std::size_t min_digits,
                                  std::size_t max_digits, char separator);

// A UTC offset "+HH:MM" or "-HH:MM" (hours 0-23, minutes 0-59) from the front of `s`, consumed,
// in seconds east of UTC; nullopt when it is not one.
std::optional<std::int64_t> takeUtcOffset(std::string_view& s);

// A written date and time of day, as parsed.
struct CivilTime {
  int year = 1970;
  int month = 1;
  int day = 1;
  int hour = 0;
  int minute = 0;
  int second = 0;
};

// Seconds since 1970-01-01T00:00:00Z of `t` read at `utc_offset_seconds` east of UTC; nullopt for
// a date that does not exist or a time of day out of range (hour 0-23, minute and second 0-59;
// no leap second).
std::optional<std::int64_t> epochSecondsAt(const CivilTime& t, std::int64_t utc_offset_seconds);

// Seconds since 1970-01-01T00:00:00Z of a UTC date and time of day; nullopt for a date that does
// not exist (month 13, February 30). The time of day is not range-checked: callers decide which
// fields they accept.
std::optional<std::int64_t> civilToEpochSeconds(int year, int month, int day, int hour, int minute,
                                                int second);

// `epoch_seconds` as a SystemTime. SystemTime counts nanoseconds in 64 bits and ends on
// 2262-04-11; later seconds (the written forms go to 9999) become its last second, which is as
// far away for every use in nmi, instead of overflowing.
SystemTime clampedSystemTime(std::int64_t epoch_seconds);

// The last whole second SystemTime can hold.
std::int64_t lastSystemTimeSecond();

}  // namespace nmi
