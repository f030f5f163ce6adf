#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "tests/fakes/fake_clock.h"
#include "token/retry.h"

namespace nmi::token {

// Test-only Sleeper: records each wait and advances a FakeClock by it at once, so retry tests
// run in microseconds. An optional hook runs before each wait (e.g. to fire a cancellation).
class FakeSleeper final : public Sleeper {
 public:
  explicit FakeSleeper(testing::FakeClock& clock) : clock_(clock) {}

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
    clock_.advance(delay);
    co_return true;
  }

  std::vector<std::chrono::milliseconds> delays() const {
    const std::lock_guard lock(mu_);
    return delays_;
  }

 private:
  testing::FakeClock& clock_;
  std::function<void()> hook_;
  mutable std::mutex mu_;
  std::vector<std::chrono::milliseconds> delays_;
};

}  // namespace nmi::token
