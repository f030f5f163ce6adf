#include "common/clock.h"

#include <atomic>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace nmi {

namespace asio = boost::asio;

namespace {

// SystemClock's timer: the product's one steady_timer. `woken_` carries a wake() that arrives
// between two waits to the next one; the cancel itself runs on the timer's executor, where the
// waits run.
class SteadyTimer final : public Timer, public std::enable_shared_from_this<SteadyTimer> {
 public:
  explicit SteadyTimer(const asio::any_io_executor& executor) : timer_(executor) {}

  Task<bool> waitUntil(MonotonicTime deadline) override {
    for (;;) {
      if (woken_.exchange(false)) {
        co_return true;
      }
      timer_.expires_at(deadline);
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec != asio::error::operation_aborted) {
        // The deadline passed; a wake() that came meanwhile still counts (its cancel was late).
        co_return woken_.exchange(false);
      }
      // Cancelled: by a wake() (the loop returns true), or by the late cancel of a wake() an
      // earlier wait already consumed (keep waiting).
    }
  }

  Task<bool> waitFor(std::chrono::nanoseconds delay) override {
    return waitUntil(saturatingAdd(std::chrono::steady_clock::now(), delay));
  }

  void wake() override {
    woken_.store(true);
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
  }

 private:
  asio::steady_timer timer_;
  std::atomic<bool> woken_{false};
};

}  // namespace

TimerPtr SystemClock::makeTimer(const asio::any_io_executor& executor) const {
  return std::make_shared<SteadyTimer>(executor);
}

const Clock& systemClock() {
  static const SystemClock clock;
  return clock;
}

DeadlineWatch::DeadlineWatch(const Clock& clock, const asio::any_io_executor& executor,
                             MonotonicTime deadline, std::function<void()> on_expiry)
    : timer_(clock.makeTimer(executor)) {
  // A wake() from disarm() wins even over a deadline that fired just before (Timer): on the
  // strand, on_expiry never runs after disarm().
  asio::co_spawn(
      executor,
      [timer = timer_, deadline, on_expiry = std::move(on_expiry)]() -> Task<void> {
        if (!co_await timer->waitUntil(deadline)) {
          on_expiry();
        }
      },
      asio::detached);
}

Task<bool> waitUntil(TimerPtr timer, MonotonicTime deadline, CancellationSignal* cancel) {
  CancelRegistration on_cancel(cancel, [timer] { timer->wake(); });
  const bool woken = co_await timer->waitUntil(deadline);
  on_cancel.reset();
  co_return woken;
}

Task<bool> sleepFor(const Clock& clock, std::chrono::milliseconds delay,
                    CancellationSignal* cancel) {
  auto executor = co_await asio::this_coro::executor;
  const TimerPtr timer = clock.makeTimer(executor);
  const MonotonicTime deadline = saturatingAdd(clock.monotonicNow(), delay);
  co_await waitUntil(timer, deadline, cancel);
  co_return cancel == nullptr || !cancel->cancelled();
}

}  // namespace nmi
