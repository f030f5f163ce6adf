#pragma once

#include <algorithm>
#include <chrono>

#include "common/clock.h"

namespace nmi::token {

// A token bucket: `rate` tokens per second, at most `burst` saved up; starts full. Pure value
// type driven by the caller's clock; not thread-safe (callers hold their own lock).
class TokenBucket {
 public:
  TokenBucket(double rate, double burst, MonotonicTime now)
      : rate_(std::max(0.0, rate)), burst_(std::max(1.0, burst)), tokens_(burst_), last_(now) {}

  // Takes one token if there is one.
  bool tryTake(MonotonicTime now) {
    refill(now);
    if (tokens_ < 1.0) {
      return false;
    }
    tokens_ -= 1.0;
    return true;
  }

  double available(MonotonicTime now) {
    refill(now);
    return tokens_;
  }

 private:
  void refill(MonotonicTime now) {
    if (now > last_) {
      const double elapsed = std::chrono::duration<double>(now - last_).count();
      tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
      last_ = now;
    }
  }

  double rate_;
  double burst_;
  double tokens_;
  MonotonicTime last_;
};

}  // namespace nmi::token
