#include "kube/backoff.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace nmi::kube {

std::chrono::milliseconds backoffDelay(const BackoffPolicy& policy, int failures, double random,
                                       std::optional<std::chrono::seconds> retry_after) {
  const auto delay = jitteredBackoff(policy, failures - 1, random);
  if (retry_after && *retry_after > delay) {
    return *retry_after;
  }
  return delay;
}

int watchTimeoutSeconds(std::chrono::seconds min, std::chrono::seconds max, double random) {
  const auto lo = static_cast<double>(std::max<std::int64_t>(1, min.count()));
  const auto hi = static_cast<double>(std::max<std::int64_t>(min.count(), max.count()));
  return static_cast<int>(std::floor(lo + (hi - lo + 1.0) * std::clamp(random, 0.0, 0.999999)));
}

}  // namespace nmi::kube
