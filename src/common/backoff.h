#pragma once

#include <chrono>

namespace nmi {

// Exponential backoff with jitter: the one formula behind every retry in nmi (the API client's
// lists and watches, token fetches). Each user keeps its own policy values and decides what a
// server's Retry-After means to it.
// The defaults are the API client's (kube/backoff.h); token fetches set their own
// (token/retry_policy.h).
struct BackoffPolicy {
  std::chrono::milliseconds initial{100};  // the first delay
  std::chrono::milliseconds max{1000};     // the cap of the doubling
  double jitter = 0.2;                     // ± this fraction (0 to 1) of the delay
};

// initial × 2^doublings (doublings clamped to 0..30), capped at max without overflow, scaled by
// 1 + jitter × (2 × random − 1) with `random` a uniform sample from [0, 1) (clamped to [0, 1]) so
// that many nodes do not retry in step; rounded to the nearest millisecond. Pure.
std::chrono::milliseconds jitteredBackoff(const BackoffPolicy& policy, int doublings,
                                          double random);

// A uniform sample from [0, 1), for jitter (a per-thread engine seeded from random_device).
// Thread-safe.
double uniformRandom();

}  // namespace nmi
