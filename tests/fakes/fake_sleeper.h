#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "common/sleeper.h"
#include "tests/fakes/fake_clock.h"

namespace nmi::testing {

// Test-only Sleeper: records each wait and returns at once (false when cancelled), advancing a
// FakeClock by the delay when given one, so retry and backoff tests run in microseconds. An
// optional hook runs before each wait (e.g. to fire a cancellation or to count).
class FakeSleeper final : public Sleeper {
 public:
  FakeSleeper() = default;
  explicit FakeSleeper(FakeClock& clock) : clock_(&clock) {}

  void onSleep(std::function<void()> hook) { hook_ = std::move(hook); }

  Task<bool> sleepFor(std::chrono::milliseconds delay, CancellationSignal* cancel) override {
    {
      const std::lock_guard lock(mu_);
      delays_.push_back(delay);
    }
    if (hook_) {
      hook_();
    }
    if (cancel != nullptr && cancel->cancelled()) {
      co_return false;
    }
    if (clock_ != nullptr) {
      clock_->advance(delay);
    }
    co_return true;
  }

  std::vector<std::chrono::milliseconds> delays() const {
    const std::lock_guard lock(mu_);
    return delays_;
  }

 private:
  FakeClock* clock_ = nullptr;
  std::function<void()> hook_;
  mutable std::mutex mu_;
  std::vector<std::chrono::milliseconds> delays_;
};

}  // namespace nmi::testing
