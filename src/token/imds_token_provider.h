#pragma once

#include <string>

#include "common/clock.h"
#include "http/client.h"
#include "metrics/nmi_metrics.h"
#include "token/async_semaphore.h"
#include "token/retry.h"
#include "token/retry_policy.h"
#include "token/types.h"

namespace nmi::token {

// Gets managed-identity tokens from IMDS:
//   GET http://<endpoint>/metadata/identity/oauth2/token?api-version=2018-02-01
//       [&client_id=|&msi_res_id=|&object_id=<value>]&resource=<resource>
//   Metadata: true, User-Agent: <user_agent>
// (query sorted and escaped as Go's url.Values.Encode, like the original). At most
// `max_concurrent` requests are in flight at once (IMDS allows 5 concurrent requests per VM);
// the others queue first come, first served. Retries per RetryPolicy. Thread-safe; callers run on
// strands. The provider must outlive its fetches.
class ImdsTokenProvider final : public TokenProvider {
 public:
  struct Options {
    std::string endpoint = "169.254.169.254:80";  // host:port
    std::string user_agent;
    RetryPolicy retry;
    int max_concurrent = 5;
  };

  ImdsTokenProvider(http::HttpClient& client, const Clock& clock, metrics::NmiMetrics& metrics,
                    Options options);

  // Errors: InvalidArgument (not a managed identity, no resource, a selector without a value),
  // Upstream (IMDS refused: 400 "Identity not found" and the like), Unavailable (malformed
  // response), Timeout (retry budget spent), Cancelled.
  Task<Result<AccessToken>> fetchToken(const TokenRequest& request,
                                       CancellationSignal* cancel) override;

 private:
  http::HttpClient& client_;
  const Clock& clock_;
  metrics::NmiMetrics& metrics_;
  const Options options_;
  AsyncSemaphore limiter_;
};

// The IMDS token URL for `request` (pure; exposed for tests).
std::string imdsTokenUrl(std::string_view endpoint, const TokenRequest& request);

}  // namespace nmi::token
