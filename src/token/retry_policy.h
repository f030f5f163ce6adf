#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/result.h"

namespace nmi::token {

// How a token fetch retries. The budget covers the whole fetch: every attempt and every wait.
struct RetryPolicy {
  std::chrono::milliseconds budget{30'000};  // --token-retry-budget-sec
  // The waits: 500 ms doubling per attempt, capped at 8 s, ±20 %.
  BackoffPolicy backoff{std::chrono::milliseconds{500}, std::chrono::milliseconds{8'000}, 0.2};
  std::chrono::milliseconds max_attempt_timeout{10'000};  // one attempt at most this long
};

// The original's list (go-autorest adal retryForIMDS): 404, 408, 410, 429, 500-508, 510, 511.
// 400, 401 and 403 are definite answers and are not retried. Pure.
bool isRetryableStatus(unsigned status);

// Transport failures worth another attempt: Unavailable (DNS, connect, TLS, I/O) and Timeout (one
// attempt's deadline; IMDS documents time-outs while it updates). Pure.
bool isRetryableError(ErrorCode code);

// The wait before the next attempt after `attempt` (0-based) failed: `retry_after` when the
// upstream sent one, else jitteredBackoff(backoff, attempt, jitter01). nullopt when the next
// attempt could not start within `remaining_budget` (wait >= remaining). Pure.
std::optional<std::chrono::milliseconds> nextDelay(int attempt,
                                                   std::optional<std::chrono::seconds> retry_after,
                                                   std::chrono::milliseconds remaining_budget,
                                                   double jitter01, const RetryPolicy& policy = {});

// The timeout of one attempt: min(max_attempt_timeout, remaining). Pure.
std::chrono::milliseconds attemptTimeout(std::chrono::milliseconds remaining,
                                         const RetryPolicy& policy = {});

// A Retry-After header value: delta-seconds ("120") or an HTTP-date (IMF-fixdate
// "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" or asctime
// "Sun Nov  6 08:49:37 1994"), converted to a wait from `now` (a past date is 0 s). nullopt when
// malformed. Pure.
std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value, SystemTime now);

}  // namespace nmi::token
