#include "token/async_semaphore.h"

#include <algorithm>

#include <boost/asio/this_coro.hpp>

namespace nmi::token {

namespace asio = boost::asio;

Task<Result<AsyncSemaphore::Permit>> AsyncSemaphore::acquire(std::chrono::milliseconds timeout,
                                                             CancellationSignal* cancel) {
  // First statement: clang-analyzer 14 misreads this_coro::executor after an early co_return.
  auto executor = co_await asio::this_coro::executor;
  if (cancel != nullptr && cancel->cancelled()) {
    co_return makeError(ErrorCode::Cancelled, "cancelled while waiting for an upstream slot");
  }
  auto waiter = std::make_shared<Waiter>();
  {
    const std::lock_guard lock(mu_);
    if (available_ > 0 && waiters_.empty()) {
      --available_;
      co_return Permit(this);
    }
    waiter->timer = clock_.makeTimer(executor);
    waiters_.push_back(waiter);
  }
  const TimerPtr timer = waiter->timer;
  const MonotonicTime deadline = saturatingAdd(clock_.monotonicNow(), timeout);
  co_await waitUntil(timer, deadline, cancel);
  bool granted = false;
  {
    const std::lock_guard lock(mu_);
    granted = waiter->granted;
    if (!granted) {
      waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), waiter), waiters_.end());
    }
  }
  const bool cancelled = cancel != nullptr && cancel->cancelled();
  if (granted) {
    Permit permit(this);
    if (cancelled) {
      co_return makeError(ErrorCode::Cancelled, "cancelled while waiting for an upstream slot");
    }
    co_return permit;
  }
  if (cancelled) {
    co_return makeError(ErrorCode::Cancelled, "cancelled while waiting for an upstream slot");
  }
  co_return makeError(ErrorCode::Timeout, "no upstream slot free in time");
}

void AsyncSemaphore::release() {
  std::shared_ptr<Waiter> next;
  {
    const std::lock_guard lock(mu_);
    if (waiters_.empty()) {
      ++available_;
      return;
    }
    next = waiters_.front();
    waiters_.pop_front();
    next->granted = true;
  }
  next->timer->wake();
}

std::size_t AsyncSemaphore::available() const {
  const std::lock_guard lock(mu_);
  return available_;
}

std::size_t AsyncSemaphore::waiting() const {
  const std::lock_guard lock(mu_);
  return waiters_.size();
}

}  // namespace nmi::token
