#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"

namespace nmi::token {

// A counting semaphore for coroutines: acquire() suspends (never blocks a thread) until a permit
// is free. Waiters are served first come, first served; a waiter whose timeout passes or whose
// CancellationSignal fires leaves the queue. Thread-safe. Waiters must run on a strand (or a
// single-threaded executor): wake-ups are posted to it. Timeouts run on `clock`. The semaphore
// must outlive its permits and waiters; the clock must outlive the semaphore.
class AsyncSemaphore {
 public:
  AsyncSemaphore(std::size_t permits, const Clock& clock) : clock_(clock), available_(permits) {}
  AsyncSemaphore(const AsyncSemaphore&) = delete;
  AsyncSemaphore& operator=(const AsyncSemaphore&) = delete;

  // A held permit; released (handed to the first waiter) when destroyed.
  class Permit {
   public:
    Permit() = default;
    explicit Permit(AsyncSemaphore* owner) : owner_(owner) {}
    Permit(Permit&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    Permit& operator=(Permit&& other) noexcept {
      if (this != &other) {
        reset();
        owner_ = std::exchange(other.owner_, nullptr);
      }
      return *this;
    }
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() { reset(); }

    void reset() {
      if (owner_ != nullptr) {
        std::exchange(owner_, nullptr)->release();
      }
    }

   private:
    AsyncSemaphore* owner_ = nullptr;
  };

  // Waits for a permit. Errors: Timeout (`timeout` passed first), Cancelled (`cancel`, which may
  // be null, fired first).
  Task<Result<Permit>> acquire(std::chrono::milliseconds timeout, CancellationSignal* cancel);

  std::size_t available() const;
  std::size_t waiting() const;

 private:
  struct Waiter {
    TimerPtr timer;
    bool granted = false;
  };

  void release();

  const Clock& clock_;
  mutable std::mutex mu_;
  std::size_t available_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace nmi::token
