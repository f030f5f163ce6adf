#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/clock.h"

namespace nmi::testing {

// A Clock that moves only when told (Seastar's manual_clock). Starts at 2024-01-01T00:00:00Z.
// advance() moves both clocks and fires every timer whose deadline it passed, in deadline order
// (ties in the order the waits began), each completed on its own executor. In auto-advance mode
// every wait moves the clock to its deadline at once (firing the timers due on the way), as if
// everything else were blocked: retry and backoff loops run in microseconds, and delays() tells
// what they waited for. A wait whose deadline has passed returns at once. Thread-safe; timers
// follow the Timer contract (waits on their strand, wake() from anywhere).
class FakeClock final : public Clock {
 public:
  SystemTime systemNow() const override {
    const std::lock_guard lock(state_->mu);
    return state_->system;
  }
  MonotonicTime monotonicNow() const override {
    const std::lock_guard lock(state_->mu);
    return state_->monotonic;
  }

  TimerPtr makeTimer(const boost::asio::any_io_executor& executor) const override {
    return std::make_shared<FakeTimer>(state_, executor);
  }

  // Moves both clocks forward and fires the timers that came due.
  void advance(std::chrono::nanoseconds by) { state_->advanceTo(by); }

  // Sets the wall clock only (a clock step); the monotonic clock and timers are unaffected.
  void setSystemTime(SystemTime t) {
    const std::lock_guard lock(state_->mu);
    state_->system = t;
  }

  // From now on, every wait moves the clock to its deadline at once.
  void setAutoAdvance(bool on) {
    const std::lock_guard lock(state_->mu);
    state_->auto_advance = on;
  }

  // Runs at the start of every wait, outside the lock (e.g. to fire a cancellation or count).
  void onWait(std::function<void()> hook) {
    const std::lock_guard lock(state_->mu);
    state_->hook = std::move(hook);
  }

  // What every wait begun so far waited for (its deadline minus now), in order.
  std::vector<std::chrono::milliseconds> delays() const {
    const std::lock_guard lock(state_->mu);
    return state_->delays;
  }

  // Waits pending now (begun, not yet fired or woken).
  std::size_t pendingTimers() const {
    const std::lock_guard lock(state_->mu);
    return state_->pending.size();
  }

 private:
  class FakeTimer;

  struct Pending {
    MonotonicTime deadline;
    std::uint64_t seq = 0;
    std::weak_ptr<FakeTimer> timer;
  };

  struct State {
    std::mutex mu;
    SystemTime system{std::chrono::sys_days{std::chrono::January / 1 / 2024}};
    MonotonicTime monotonic{std::chrono::hours{1}};
    bool auto_advance = false;
    std::function<void()> hook;
    std::vector<std::chrono::milliseconds> delays;
    std::vector<Pending> pending;
    std::uint64_t last_seq = 0;

    // Moves the clocks by `by` (when positive) and fires the timers due.
    void advanceTo(std::chrono::nanoseconds by) {
      std::vector<std::shared_ptr<FakeTimer>> due;
      {
        const std::lock_guard lock(mu);
        if (by.count() > 0) {
          const MonotonicTime target = saturatingAdd(monotonic, by);
          system += std::chrono::duration_cast<SystemTime::duration>(target - monotonic);
          monotonic = target;
        }
        std::stable_sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
          return a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq);
        });
        auto first_later = std::find_if(pending.begin(), pending.end(), [this](const Pending& p) {
          return p.deadline > monotonic;
        });
        for (auto it = pending.begin(); it != first_later; ++it) {
          if (auto timer = it->timer.lock()) {
            timer->fired_ = true;
            due.push_back(std::move(timer));
          }
        }
        pending.erase(pending.begin(), first_later);
      }
      for (const auto& timer : due) {
        timer->unpark();
      }
    }
  };

  class FakeTimer final : public Timer, public std::enable_shared_from_this<FakeTimer> {
   public:
    FakeTimer(std::shared_ptr<State> state, const boost::asio::any_io_executor& executor)
        : state_(std::move(state)), park_(executor) {}

    ~FakeTimer() override {
      const std::lock_guard lock(state_->mu);
      std::erase_if(state_->pending, [](const Pending& p) { return p.timer.expired(); });
    }

    Task<bool> waitUntil(MonotonicTime deadline) override {
      std::function<void()> hook;
      bool advance = false;
      {
        const std::lock_guard lock(state_->mu);
        state_->delays.push_back(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - state_->monotonic));
        hook = state_->hook;
      }
      if (hook) {
        hook();
      }
      {
        const std::lock_guard lock(state_->mu);
        if (woken_) {
          woken_ = false;
          co_return true;
        }
        if (deadline <= state_->monotonic) {
          co_return false;
        }
        fired_ = false;
        state_->pending.push_back(Pending{deadline, ++state_->last_seq, weak_from_this()});
        advance = state_->auto_advance;
      }
      // (A wait without deadline, MonotonicTime::max(), ends only by wake(): nothing to jump to.)
      if (advance && deadline != MonotonicTime::max()) {
        state_->advanceTo(deadline - monotonicNow());
      }
      for (;;) {
        park_.expires_at(boost::asio::steady_timer::time_point::max());
        boost::system::error_code ec;
        co_await park_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        const std::lock_guard lock(state_->mu);
        if (woken_) {
          woken_ = false;
          auto* const self = this;
          std::erase_if(state_->pending,
                        [self](const Pending& p) { return p.timer.lock().get() == self; });
          co_return true;
        }
        if (fired_) {
          fired_ = false;
          co_return false;
        }
        // A stale unpark (a wake() consumed by an earlier wait): keep waiting.
      }
    }

    Task<bool> waitFor(std::chrono::nanoseconds delay) override {
      return waitUntil(saturatingAdd(monotonicNow(), delay));
    }

    void wake() override {
      {
        const std::lock_guard lock(state_->mu);
        woken_ = true;
      }
      unpark();
    }

   private:
    friend struct State;

    MonotonicTime monotonicNow() const {
      const std::lock_guard lock(state_->mu);
      return state_->monotonic;
    }

    void unpark() {
      boost::asio::post(park_.get_executor(),
                        [self = shared_from_this()] { self->park_.cancel(); });
    }

    const std::shared_ptr<State> state_;
    boost::asio::steady_timer park_;  // only ever cancelled: the fake's way to suspend a wait
    bool woken_ = false;              // guarded by state_->mu
    bool fired_ = false;              // guarded by state_->mu
  };

  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace nmi::testing
