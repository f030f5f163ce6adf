#include "common/sleeper.h"

#include <memory>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace nmi {

namespace asio = boost::asio;

Task<bool> AsioSleeper::sleepFor(std::chrono::milliseconds delay, CancellationSignal* cancel) {
  auto executor = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(executor, delay);
  std::size_t cancel_id = 0;
  if (cancel != nullptr) {
    cancel_id =
        cancel->add([timer] { asio::post(timer->get_executor(), [timer] { timer->cancel(); }); });
  }
  boost::system::error_code ec;
  co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (cancel != nullptr) {
    cancel->remove(cancel_id);
  }
  co_return cancel == nullptr || !cancel->cancelled();
}

Sleeper& defaultSleeper() {
  static AsioSleeper sleeper;
  return sleeper;
}

}  // namespace nmi
