#pragma once

#include <chrono>
#include <mutex>

#include "common/clock.h"

namespace nmi::testing {

// A Clock that moves only when told (STYLE.md Example 1). Starts at 2024-01-01T00:00:00Z.
// Thread-safe.
class FakeClock final : public Clock {
 public:
  SystemTime systemNow() const override {
    const std::lock_guard lock(mu_);
    return system_;
  }
  MonotonicTime monotonicNow() const override {
    const std::lock_guard lock(mu_);
    return monotonic_;
  }

  // Moves both clocks forward.
  void advance(std::chrono::milliseconds by) {
    const std::lock_guard lock(mu_);
    system_ += by;
    monotonic_ += by;
  }

  // Sets the wall clock only (a clock step); the monotonic clock is unaffected.
  void setSystemTime(SystemTime t) {
    const std::lock_guard lock(mu_);
    system_ = t;
  }

 private:
  mutable std::mutex mu_;
  SystemTime system_{std::chrono::sys_days{std::chrono::January / 1 / 2024}};
  MonotonicTime monotonic_{std::chrono::hours{1}};
};

}  // namespace nmi::testing
