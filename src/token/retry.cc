#include "token/retry.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "common/backoff.h"
#include "token/log.h"
#include "token/oauth_response.h"

namespace nmi::token {

namespace {

std::chrono::milliseconds remainingBudget(const UpstreamCall& call, MonotonicTime start) {
  const auto spent =
      std::chrono::duration_cast<std::chrono::milliseconds>(call.clock.monotonicNow() - start);
  return call.policy.budget - spent;
}

double secondsSince(const Clock& clock, MonotonicTime start) {
  return std::chrono::duration<double>(clock.monotonicNow() - start).count();
}

std::string statusMessage(std::string_view upstream, const http::ClientResponse& response) {
  std::string message = std::string(upstream) + " answered " + std::to_string(response.status);
  const std::string detail = describeOAuthError(response.body);
  if (!detail.empty()) {
    message += ": ";
    message += detail;
  }
  return message;
}

Error cancelled(std::string_view upstream) {
  return makeError(ErrorCode::Cancelled, std::string(upstream) + " request cancelled");
}

}  // namespace

Task<Result<http::ClientResponse>> sendWithRetry(http::HttpClient& client,
                                                 http::ClientRequest request,
                                                 const UpstreamCall& call,
                                                 CancellationSignal* cancel) {
  const MonotonicTime start = call.clock.monotonicNow();
  std::string last_failure = "no attempt made";
  for (int attempt = 0;; ++attempt) {
    if (cancel != nullptr && cancel->cancelled()) {
      co_return cancelled(call.upstream);
    }
    auto remaining = remainingBudget(call, start);
    if (remaining <= std::chrono::milliseconds{0}) {
      break;
    }
    AsyncSemaphore::Permit permit;
    if (call.limiter != nullptr) {
      auto acquired = co_await call.limiter->acquire(remaining, cancel);
      if (!acquired) {
        if (acquired.error().code == ErrorCode::Cancelled) {
          co_return cancelled(call.upstream);
        }
        last_failure = "all upstream slots busy";
        break;
      }
      permit = std::move(acquired).value();
      remaining = remainingBudget(call, start);
      if (remaining <= std::chrono::milliseconds{0}) {
        break;
      }
    }
    request.timeout = attemptTimeout(remaining, call.policy);
    const MonotonicTime attempt_start = call.clock.monotonicNow();
    auto result = co_await client.send(request, cancel);
    permit.reset();
    call.metrics.observeUpstream(call.upstream, secondsSince(call.clock, attempt_start));

    std::optional<std::chrono::seconds> retry_after;
    if (result) {
      const http::ClientResponse& response = *result;
      call.metrics.countUpstream(call.upstream, static_cast<int>(response.status));
      if (response.status >= 200 && response.status < 300) {
        co_return std::move(result).value();
      }
      last_failure = statusMessage(call.upstream, response);
      if (!isRetryableStatus(response.status)) {
        co_return makeError(ErrorCode::Upstream, last_failure);
      }
      if (const auto header = response.header("Retry-After")) {
        retry_after = parseRetryAfter(*header, call.clock.systemNow());
      }
    } else {
      call.metrics.countUpstream(call.upstream, 0);
      const Error& error = result.error();
      if (error.code == ErrorCode::Cancelled || (cancel != nullptr && cancel->cancelled())) {
        co_return cancelled(call.upstream);
      }
      if (!isRetryableError(error.code)) {
        co_return makeError(error.code, std::string(call.upstream) + ": " + error.message);
      }
      last_failure = std::string(call.upstream) + ": " + error.message;
    }
    const auto delay =
        nextDelay(attempt, retry_after, remainingBudget(call, start), uniformRandom(), call.policy);
    if (!delay) {
      break;
    }
    logger()->debug("upstream={} attempt={} failure=\"{}\" retry_in_ms={}", call.upstream,
                    attempt + 1, last_failure, delay->count());
    if (!co_await sleepFor(call.clock, *delay, cancel)) {
      co_return cancelled(call.upstream);
    }
  }
  co_return makeError(ErrorCode::Timeout, std::string(call.upstream) + " retry budget of " +
                                              std::to_string(call.policy.budget.count()) +
                                              " ms spent; last: " + last_failure);
}

}  // namespace nmi::token
