#include "kube/backoff.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>

namespace nmi::kube {

std::chrono::milliseconds backoffDelay(const BackoffPolicy& policy, int failures, double random,
                                       std::optional<std::chrono::seconds> retry_after) {
  const int doublings = std::clamp(failures - 1, 0, 30);
  const double nominal =
      std::min(static_cast<double>(policy.initial.count()) * std::pow(2.0, doublings),
               static_cast<double>(policy.max.count()));
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double factor = 1.0 + jitter * (2.0 * std::clamp(random, 0.0, 1.0) - 1.0);
  auto delay = std::chrono::milliseconds(std::llround(std::max(0.0, nominal * factor)));
  if (retry_after && *retry_after > delay) {
    delay = *retry_after;
  }
  return delay;
}

int watchTimeoutSeconds(std::chrono::seconds min, std::chrono::seconds max, double random) {
  const auto lo = static_cast<double>(std::max<std::int64_t>(1, min.count()));
  const auto hi = static_cast<double>(std::max<std::int64_t>(min.count(), max.count()));
  return static_cast<int>(std::floor(lo + (hi - lo + 1.0) * std::clamp(random, 0.0, 0.999999)));
}

double uniformRandom() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
}

}  // namespace nmi::kube
