#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>

#include <boost/asio/this_coro.hpp>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/task.h"

namespace nmi::testing {

// The hold(true) of the fakes (FakeHttpClient, FakeTokenProvider): while holding, each call
// waits at the gate until a test release()s it (pass() returns true) or its CancellationSignal
// fires (false), so tests can keep calls in flight and let them go one by one. Waits run on the
// callers' strands, on timers of the real clock (nothing times out: a wait ends by release or
// cancellation only). Thread-safe.
class HoldGate {
 public:
  void hold(bool on) {
    const std::lock_guard lock(mu_);
    holding_ = on;
  }
  bool holding() const {
    const std::lock_guard lock(mu_);
    return holding_;
  }

  // Lets the `n` oldest waiting calls go on; returns how many there were.
  std::size_t release(std::size_t n = 1) {
    std::deque<std::shared_ptr<Held>> to_wake;
    {
      const std::lock_guard lock(mu_);
      while (n-- > 0 && !held_.empty()) {
        held_.front()->released = true;
        to_wake.push_back(held_.front());
        held_.pop_front();
      }
    }
    for (const auto& h : to_wake) {
      h->timer->wake();
    }
    return to_wake.size();
  }
  std::size_t releaseAll() { return release(static_cast<std::size_t>(-1)); }

  // Calls waiting now.
  std::size_t heldCount() const {
    const std::lock_guard lock(mu_);
    return held_.size();
  }

  // Waits until released (true) or `cancel` (may be null) fires (false).
  Task<bool> pass(CancellationSignal* cancel) {
    const auto executor = co_await boost::asio::this_coro::executor;
    auto held = std::make_shared<Held>();
    held->timer = systemClock().makeTimer(executor);
    {
      const std::lock_guard lock(mu_);
      held_.push_back(held);
    }
    co_await waitUntil(held->timer, MonotonicTime::max(), cancel);
    const std::lock_guard lock(mu_);
    if (held->released) {
      co_return true;
    }
    held_.erase(std::remove(held_.begin(), held_.end(), held), held_.end());
    co_return false;
  }

 private:
  struct Held {
    TimerPtr timer;
    bool released = false;
  };

  mutable std::mutex mu_;
  bool holding_ = false;
  std::deque<std::shared_ptr<Held>> held_;
};

}  // namespace nmi::testing
