#include "common/backoff.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>

namespace nmi {

std::chrono::milliseconds jitteredBackoff(const BackoffPolicy& policy, int doublings,
                                          double random) {
  const int shift = std::clamp(doublings, 0, 30);
  const std::int64_t initial = std::max<std::int64_t>(0, policy.initial.count());
  const std::int64_t cap = std::max<std::int64_t>(0, policy.max.count());
  // initial × 2^shift without overflow.
  const std::int64_t nominal = initial > (cap >> shift) ? cap : std::min(cap, initial << shift);
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double factor = 1.0 + jitter * (2.0 * std::clamp(random, 0.0, 1.0) - 1.0);
  return std::chrono::milliseconds(
      std::llround(std::max(0.0, static_cast<double>(nominal) * factor)));
}

double uniformRandom() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
}

}  // namespace nmi
