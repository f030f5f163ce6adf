#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <boost/asio/any_io_executor.hpp>

#include "common/cancellation.h"
#include "common/task.h"

namespace nmi {

using SystemTime = std::chrono::system_clock::time_point;
using MonotonicTime = std::chrono::steady_clock::time_point;

// A deadline a coroutine can wait for, made by a Clock (Clock::makeTimer) and bound to one
// executor: a strand or a single-threaded executor, on which its waits must run, one at a time.
// wake() is thread-safe and may come from anywhere; it is posted to that executor (Asio timers
// are not thread-safe). A wake() that finds no wait pending is kept: the next wait returns at
// once. The Timer must outlive its wait (callers hold a TimerPtr; a waker may hold another).
class Timer {
 public:
  virtual ~Timer() = default;

  // Waits until the clock reaches `deadline` (returns false) or wake() is called (returns true).
  virtual Task<bool> waitUntil(MonotonicTime deadline) = 0;

  // waitUntil(now + delay), saturating.
  virtual Task<bool> waitFor(std::chrono::nanoseconds delay) = 0;

  // Ends the pending wait early (it returns true), or the next one if none is pending.
  virtual void wake() = 0;
};

using TimerPtr = std::shared_ptr<Timer>;

// The time seam: reads both clocks and makes timers. Injected everywhere time matters, so tests
// control it (tests/fakes/fake_clock.h FakeClock: advance() fires due timers; an auto-advance
// mode lets retry and backoff loops run in microseconds). Product code never reads
// std::chrono::steady_clock or makes an Asio timer itself. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual SystemTime systemNow() const = 0;
  virtual MonotonicTime monotonicNow() const = 0;
  // A timer whose waits run on (and complete on) `executor`.
  virtual TimerPtr makeTimer(const boost::asio::any_io_executor& executor) const = 0;
};

// The real clocks; timers are boost::asio::steady_timer.
class SystemClock final : public Clock {
 public:
  SystemTime systemNow() const override { return std::chrono::system_clock::now(); }
  MonotonicTime monotonicNow() const override { return std::chrono::steady_clock::now(); }
  TimerPtr makeTimer(const boost::asio::any_io_executor& executor) const override;
};

// The process-wide SystemClock, for defaults where no clock is injected (stateless).
const Clock& systemClock();

// Waits on `timer` until `deadline`, wake(), or `cancel` (may be null) fires, which wakes it.
// Returns true when woken (by either), false when the deadline passed.
Task<bool> waitUntil(TimerPtr timer, MonotonicTime deadline, CancellationSignal* cancel);

// Waits `delay` on a new timer of `clock`, on the calling coroutine's executor (which must be a
// strand). Returns false when `cancel` (may be null) fired first: the retry and backoff sleep.
Task<bool> sleepFor(const Clock& clock, std::chrono::milliseconds delay,
                    CancellationSignal* cancel);

// Runs `on_expiry` on `executor` (a strand: the caller's) once `deadline` passes on `clock`,
// unless disarm() (or the destructor) comes first, on that strand: a deadline for an operation
// that has none of its own (a DNS resolve). Not thread-safe (the strand's).
class DeadlineWatch {
 public:
  DeadlineWatch(const Clock& clock, const boost::asio::any_io_executor& executor,
                MonotonicTime deadline, std::function<void()> on_expiry);
  ~DeadlineWatch() { disarm(); }
  DeadlineWatch(const DeadlineWatch&) = delete;
  DeadlineWatch& operator=(const DeadlineWatch&) = delete;
  DeadlineWatch(DeadlineWatch&&) = delete;
  DeadlineWatch& operator=(DeadlineWatch&&) = delete;

  void disarm() {
    if (timer_) {
      timer_->wake();
      timer_.reset();
    }
  }

 private:
  TimerPtr timer_;
};

// `now + delay`, clamped to MonotonicTime::max() instead of overflowing.
inline MonotonicTime saturatingAdd(MonotonicTime now, std::chrono::nanoseconds delay) {
  if (delay.count() > 0 && now > MonotonicTime::max() - delay) {
    return MonotonicTime::max();
  }
  return now + delay;
}

inline std::int64_t toUnixSeconds(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

inline SystemTime fromUnixSeconds(std::int64_t s) {
  return SystemTime{std::chrono::seconds{s}};
}

}  // namespace nmi
