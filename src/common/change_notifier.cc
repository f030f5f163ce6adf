#include "common/change_notifier.h"

#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/timer.h"

namespace nmi {

namespace asio = boost::asio;

namespace {}  // namespace

void ChangeNotifier::notify() {
  std::vector<TimerPtr> to_wake;
  {
    const std::lock_guard lock(mu_);
    ++generation_;
    to_wake.assign(waiters_.begin(), waiters_.end());
  }
  for (const auto& timer : to_wake) {
    wakeTimer(timer);
  }
}

Task<ChangeNotifier::WaitResult> ChangeNotifier::waitForChange(std::uint64_t seen,
                                                               MonotonicTime deadline,
                                                               CancellationSignal* cancel) {
  auto executor = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(executor, deadline);
  {
    const std::lock_guard lock(mu_);
    if (generation_ != seen) {
      co_return WaitResult::Changed;
    }
    waiters_.insert(timer);
  }
  CancelRegistration on_cancel(cancel, [timer] { wakeTimer(timer); });
  boost::system::error_code ec;
  co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  on_cancel.reset();
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
