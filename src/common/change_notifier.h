#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_set>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/task.h"

namespace nmi {

// A generation counter that coroutines can wait on: notify() bumps it and wakes every waiter at
// once, so a request waiting for data answers the moment the data arrives (no polling).
// Waiters must run on a strand (or a single-threaded executor): wake-ups are posted to it.
// Deadlines are read on `clock`, which must outlive the notifier. Thread-safe.
class ChangeNotifier {
 public:
  explicit ChangeNotifier(const Clock& clock = systemClock()) : clock_(clock) {}

  std::uint64_t generation() const {
    const std::lock_guard lock(mu_);
    return generation_;
  }

  // Bumps the generation and wakes all waiters.
  void notify();

  // Number of coroutines waiting now.
  std::size_t waiters() const {
    const std::lock_guard lock(mu_);
    return waiters_.size();
  }

  enum class WaitResult { Changed, DeadlinePassed, Cancelled };

  // Waits until generation() != seen, `deadline` passes, or `cancel` fires (may be null).
  Task<WaitResult> waitForChange(std::uint64_t seen, MonotonicTime deadline,
                                 CancellationSignal* cancel);

 private:
  const Clock& clock_;
  mutable std::mutex mu_;
  std::uint64_t generation_ = 0;
  std::unordered_set<TimerPtr> waiters_;
};

}  // namespace nmi
