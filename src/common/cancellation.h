#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace nmi {

// A one-shot cancellation signal (Boost 1.74 has no cancellation slots). Whoever may stop an
// operation holds the signal and calls cancel(); the operation registers callbacks that abort
// its I/O (close a socket, cancel a timer). Callbacks run on the thread calling cancel(), or at
// once when registered after cancellation; they must only post work or call thread-safe Asio
// functions. Thread-safe.
class CancellationSignal {
 public:
  using Callback = std::function<void()>;

  bool cancelled() const {
    const std::lock_guard lock(mu_);
    return cancelled_;
  }

  void cancel() {
    std::vector<Callback> callbacks;
    {
      const std::lock_guard lock(mu_);
      if (cancelled_) {
        return;
      }
      cancelled_ = true;
      callbacks.swap(callbacks_);
    }
    for (auto& cb : callbacks) {
      cb();
    }
  }

  // Returns an id for remove(). Runs `cb` at once if already cancelled.
  std::size_t add(Callback cb) {
    {
      const std::lock_guard lock(mu_);
      if (!cancelled_) {
        callbacks_.push_back(std::move(cb));
        return callbacks_.size();
      }
    }
    cb();
    return 0;
  }

  // Drops a callback whose operation finished (it will not be called).
  void remove(std::size_t id) {
    const std::lock_guard lock(mu_);
    if (id > 0 && id <= callbacks_.size()) {
      callbacks_[id - 1] = [] {};
    }
  }

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::vector<Callback> callbacks_;
};

using CancellationSignalPtr = std::shared_ptr<CancellationSignal>;

}  // namespace nmi
