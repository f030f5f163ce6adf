#include "token/retry_policy.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <vector>

namespace nmi::token {

namespace {

constexpr std::int64_t kMaxRetryAfterSeconds = 24LL * 3600 * 365;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::optional<int> number(std::string_view s) {
  if (s.empty() || s.size() > 9) {
    return std::nullopt;
  }
  int v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + (c - '0');
  }
  return v;
}

std::optional<unsigned> monthIndex(std::string_view name) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (unsigned i = 0; i < kMonths.size(); ++i) {
    if (kMonths[i] == name) {
      return i + 1;
    }
  }
  return std::nullopt;
}

// "hh:mm:ss" -> seconds of the day.
std::optional<int> timeOfDay(std::string_view s) {
  if (s.size() != 8 || s[2] != ':' || s[5] != ':') {
    return std::nullopt;
  }
  const auto h = number(s.substr(0, 2));
  const auto m = number(s.substr(3, 2));
  const auto sec = number(s.substr(6, 2));
  if (!h || !m || !sec || *h > 23 || *m > 59 || *sec > 60) {
    return std::nullopt;
  }
  return *h * 3600 + *m * 60 + *sec;
}

std::optional<SystemTime> civil(int year, std::string_view month_name, int day, int seconds) {
  const auto month = monthIndex(month_name);
  if (!month || year < 1970) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{*month},
                                        std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok()) {
    return std::nullopt;
  }
  return SystemTime{std::chrono::sys_days{ymd}} + std::chrono::seconds{seconds};
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const auto start = s.find_first_not_of(' ');
    if (start == std::string_view::npos) {
      break;
    }
    s.remove_prefix(start);
    const auto end = s.find(' ');
    out.push_back(s.substr(0, end));
    s = end == std::string_view::npos ? std::string_view{} : s.substr(end);
  }
  return out;
}

std::optional<SystemTime> parseHttpDate(std::string_view s) {
  const auto w = words(s);
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (w.size() == 6 && w[0].size() == 4 && w[0].back() == ',' && w[5] == "GMT" &&
      w[1].size() == 2 && w[3].size() == 4) {
    const auto day = number(w[1]);
    const auto year = number(w[3]);
    const auto tod = timeOfDay(w[4]);
    if (day && year && tod) {
      return civil(*year, w[2], *day, *tod);
    }
    return std::nullopt;
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" (two-digit year: 70-99 -> 19xx, else 20xx).
  if (w.size() == 4 && w[0].size() > 4 && w[0].back() == ',' && w[3] == "GMT" && w[1].size() == 9 &&
      w[1][2] == '-' && w[1][6] == '-') {
    const auto day = number(w[1].substr(0, 2));
    const auto yy = number(w[1].substr(7, 2));
    const auto tod = timeOfDay(w[2]);
    if (day && yy && tod) {
      return civil(*yy >= 70 ? 1900 + *yy : 2000 + *yy, w[1].substr(3, 3), *day, *tod);
    }
    return std::nullopt;
  }
  // asctime: "Sun Nov  6 08:49:37 1994"
  if (w.size() == 5 && w[0].size() == 3 && w[4].size() == 4) {
    const auto day = number(w[2]);
    const auto year = number(w[4]);
    const auto tod = timeOfDay(w[3]);
    if (day && year && tod && w[2].size() <= 2) {
      return civil(*year, w[1], *day, *tod);
    }
  }
  return std::nullopt;
}

}  // namespace

bool isRetryableStatus(unsigned status) {
  switch (status) {
    case 404:
    case 408:
    case 410:
    case 429:
    case 500:
    case 501:
    case 502:
    case 503:
    case 504:
    case 505:
    case 506:
    case 507:
    case 508:
    case 510:
    case 511:
      return true;
    default:
      return false;
  }
}

bool isRetryableError(ErrorCode code) {
  return code == ErrorCode::Unavailable || code == ErrorCode::Timeout;
}

std::optional<std::chrono::milliseconds> nextDelay(int attempt,
                                                   std::optional<std::chrono::seconds> retry_after,
                                                   std::chrono::milliseconds remaining_budget,
                                                   double jitter01, const RetryPolicy& policy) {
  std::chrono::milliseconds delay{0};
  if (retry_after) {
    delay = std::max(std::chrono::milliseconds{0},
                     std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after));
  } else {
    delay = jitteredBackoff(policy.backoff, attempt, jitter01);
  }
  if (delay >= remaining_budget) {
    return std::nullopt;
  }
  return delay;
}

std::chrono::milliseconds attemptTimeout(std::chrono::milliseconds remaining,
                                         const RetryPolicy& policy) {
  return std::max(std::chrono::milliseconds{0}, std::min(policy.max_attempt_timeout, remaining));
}

std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value, SystemTime now) {
  value = trim(value);
  if (value.empty()) {
    return std::nullopt;
  }
  if (value.front() >= '0' && value.front() <= '9') {
    std::int64_t seconds = 0;
    const auto* end = value.data() + value.size();
    const auto [ptr, ec] = std::from_chars(value.data(), end, seconds);
    if (ec != std::errc{} || ptr != end) {
      return std::nullopt;
    }
    return std::chrono::seconds{std::min(seconds, kMaxRetryAfterSeconds)};
  }
  const auto date = parseHttpDate(value);
  if (!date) {
    return std::nullopt;
  }
  const auto wait = std::chrono::ceil<std::chrono::seconds>(*date - now);
  return std::clamp(wait, std::chrono::seconds{0}, std::chrono::seconds{kMaxRetryAfterSeconds});
}

}  // namespace nmi::token
