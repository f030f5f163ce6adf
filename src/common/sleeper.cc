#include "common/sleeper.h"

#include <memory>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/timer.h"

namespace nmi {

namespace asio = boost::asio;

Task<bool> AsioSleeper::sleepFor(std::chrono::milliseconds delay, CancellationSignal* cancel) {
  auto executor = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(executor, delay);
  CancelRegistration on_cancel(cancel, [timer] { wakeTimer(timer); });
  boost::system::error_code ec;
  co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  on_cancel.reset();
  co_return cancel == nullptr || !cancel->cancelled();
}

Sleeper& defaultSleeper() {
  static AsioSleeper sleeper;
  return sleeper;
}

}  // namespace nmi
