#pragma once

#include <chrono>
#include <optional>

#include "common/backoff.h"

namespace nmi::kube {

// The API client retries with BackoffPolicy's defaults (common/backoff.h): 100 ms doubling per
// consecutive failure, capped at 1 s, ±20 %, so that nmi is back within about 1.2 s of the API
// server's return.

// The delay before the attempt that follows `failures` consecutive failures (1 for the first
// failure): jitteredBackoff with failures − 1 doublings; a Retry-After (from a 429) is honoured
// when it is longer. Pure.
std::chrono::milliseconds backoffDelay(const BackoffPolicy& policy, int failures, double random,
                                       std::optional<std::chrono::seconds> retry_after = {});

// How long a watch asks the server to keep it open: min..max seconds, spread by `random`
// (uniform in [0, 1)) so that nodes do not reconnect in step. Pure.
int watchTimeoutSeconds(std::chrono::seconds min, std::chrono::seconds max, double random);

}  // namespace nmi::kube
