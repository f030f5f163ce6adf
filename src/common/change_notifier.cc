#include "common/change_notifier.h"

#include <vector>

#include <boost/asio/this_coro.hpp>

namespace nmi {

namespace asio = boost::asio;

void ChangeNotifier::notify() {
  std::vector<TimerPtr> to_wake;
  {
    const std::lock_guard lock(mu_);
    ++generation_;
    to_wake.assign(waiters_.begin(), waiters_.end());
  }
  for (const auto& timer : to_wake) {
    timer->wake();
  }
}

Task<ChangeNotifier::WaitResult> ChangeNotifier::waitForChange(std::uint64_t seen,
                                                               MonotonicTime deadline,
                                                               CancellationSignal* cancel) {
  auto executor = co_await asio::this_coro::executor;
  const TimerPtr timer = clock_.makeTimer(executor);
  {
    const std::lock_guard lock(mu_);
    if (generation_ != seen) {
      co_return WaitResult::Changed;
    }
    waiters_.insert(timer);
  }
  co_await waitUntil(timer, deadline, cancel);
  bool changed = false;
  {
    const std::lock_guard lock(mu_);
    waiters_.erase(timer);
    changed = generation_ != seen;
  }
  if (changed) {
    co_return WaitResult::Changed;
  }
  if (cancel != nullptr && cancel->cancelled()) {
    co_return WaitResult::Cancelled;
  }
  co_return WaitResult::DeadlinePassed;
}

}  // namespace nmi
