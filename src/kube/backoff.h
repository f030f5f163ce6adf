#pragma once

#include <chrono>
#include <optional>

namespace nmi::kube {

// Delays between attempts after failures: initial, doubling per consecutive failure up to max,
// each varied by ±jitter (a fraction) so that many nodes do not retry in step. With the defaults
// (100 ms doubling, capped at 1 s, ±20 %) nmi is back within about 1.2 s of the API server's
// return.
struct BackoffPolicy {
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds max{1000};
  double jitter = 0.2;
};

// The delay before the attempt that follows `failures` consecutive failures (1 for the first
// failure). `random` is a uniform sample from [0, 1); the result lies within ±jitter of the
// nominal delay. A Retry-After (from a 429) is honoured when it is longer. Pure.
std::chrono::milliseconds backoffDelay(const BackoffPolicy& policy, int failures, double random,
                                       std::optional<std::chrono::seconds> retry_after = {});

// How long a watch asks the server to keep it open: min..max seconds, spread by `random`
// (uniform in [0, 1)) so that nodes do not reconnect in step. Pure.
int watchTimeoutSeconds(std::chrono::seconds min, std::chrono::seconds max, double random);

// A uniform sample from [0, 1) (thread-safe), for jitter.
double uniformRandom();

}  // namespace nmi::kube
