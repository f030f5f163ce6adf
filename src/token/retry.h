#pragma once

#include <chrono>
#include <string_view>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"
#include "http/client.h"
#include "metrics/nmi_metrics.h"
#include "token/async_semaphore.h"
#include "token/retry_policy.h"

namespace nmi::token {

// What one upstream exchange needs besides the request.
struct UpstreamCall {
  std::string_view upstream;  // "imds" or "aad": metrics label and message prefix
  const RetryPolicy& policy;
  const Clock& clock;  // also waits between attempts
  metrics::NmiMetrics& metrics;
  AsyncSemaphore* limiter = nullptr;  // held during each attempt when set
};

// Sends `request` until it gets a 2xx answer, a definite refusal or the budget is spent.
// Retries transport errors (isRetryableError) and retryable statuses (isRetryableStatus), waiting
// nextDelay() between attempts (Retry-After honoured); each attempt's timeout is
// attemptTimeout(remaining). Counts every attempt in nmi_upstream_requests_total and
// nmi_upstream_request_duration_seconds.
// Returns the 2xx response. Errors: Upstream (a non-retryable status: "<upstream> answered 400:
// invalid_request: Identity not found"), Timeout (budget spent; the message names the last
// failure), Cancelled, InvalidArgument (the client refused the request).
Task<Result<http::ClientResponse>> sendWithRetry(http::HttpClient& client,
                                                 http::ClientRequest request,
                                                 const UpstreamCall& call,
                                                 CancellationSignal* cancel);

}  // namespace nmi::token
