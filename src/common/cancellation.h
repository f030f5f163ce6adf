#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace nmi {

// A one-shot cancellation signal (Boost 1.74 has no cancellation slots). Whoever may stop an
// operation holds the signal and calls cancel(); the operation registers callbacks that abort
// its I/O (close a socket, cancel a timer). Callbacks run on the thread calling cancel(), or at
// once when registered after cancellation; they must only post work or call thread-safe Asio
// functions. A signal may live as long as the process (the reflectors' stop signal) while
// operations come and go: remove() forgets a callback completely, so the signal holds only the
// callbacks of operations in flight. Thread-safe.
class CancellationSignal {
 public:
  using Callback = std::function<void()>;

  bool cancelled() const {
    const std::lock_guard lock(mu_);
    return cancelled_;
  }

  void cancel() {
    std::map<std::uint64_t, Callback> callbacks;
    {
      const std::lock_guard lock(mu_);
      if (cancelled_) {
        return;
      }
      cancelled_ = true;
      callbacks.swap(callbacks_);
    }
    for (auto& [id, cb] : callbacks) {
      cb();
    }
  }

  // Returns an id for remove() (never 0). Runs `cb` at once, and returns 0, if already
  // cancelled. The first add() runs the onFirstListener hook (on its own thread, before
  // returning).
  std::size_t add(Callback cb) {
    std::unique_lock lock(mu_);
    if (cancelled_) {
      lock.unlock();
      cb();
      return 0;
    }
    const std::uint64_t id = ++last_id_;
    callbacks_.emplace(id, std::move(cb));
    const Callback first = std::exchange(on_first_listener_, nullptr);
    lock.unlock();
    if (first) {
      first();
    }
    return static_cast<std::size_t>(id);
  }

  // `hook` runs once, when an operation first listens (add()): for a signal whose source costs
  // something to watch (a client's socket), so that it is watched only when someone waits on
  // it. Null clears it.
  void onFirstListener(Callback hook) {
    const std::lock_guard lock(mu_);
    on_first_listener_ = std::move(hook);
  }

  // Drops a callback whose operation finished (it will not be called). Unknown ids (0, removed,
  // or already run by cancel()) are ignored.
  void remove(std::size_t id) {
    const std::lock_guard lock(mu_);
    callbacks_.erase(static_cast<std::uint64_t>(id));
  }

  // Callbacks registered and not yet removed or run.
  std::size_t pending() const {
    const std::lock_guard lock(mu_);
    return callbacks_.size();
  }

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::uint64_t last_id_ = 0;
  std::map<std::uint64_t, Callback> callbacks_;
  Callback on_first_listener_;
};

using CancellationSignalPtr = std::shared_ptr<CancellationSignal>;

// A callback registered with a CancellationSignal (may be null: nothing is registered) for as long
// as this object lives, or until reset(): the one way operations register, so that a long-lived
// signal holds only the callbacks of operations in flight. Runs the callback at once when the
// signal has already fired. Not thread-safe itself (one operation owns it); the signal is.
class CancelRegistration {
 public:
  CancelRegistration(CancellationSignal* signal, CancellationSignal::Callback callback)
      : signal_(signal) {
    if (signal_ != nullptr) {
      id_ = signal_->add(std::move(callback));
    }
  }
  ~CancelRegistration() { reset(); }
  CancelRegistration(const CancelRegistration&) = delete;
  CancelRegistration& operator=(const CancelRegistration&) = delete;
  CancelRegistration(CancelRegistration&&) = delete;
  CancelRegistration& operator=(CancelRegistration&&) = delete;

  // Unregisters now (the operation finished); the callback will not run after this returns
  // unless cancel() had already taken it.
  void reset() {
    if (signal_ != nullptr) {
      signal_->remove(id_);
      signal_ = nullptr;
    }
  }

 private:
  CancellationSignal* signal_;
  std::size_t id_ = 0;
};

}  // namespace nmi
