#pragma once

#include <memory>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace nmi {

using TimerPtr = std::shared_ptr<boost::asio::steady_timer>;

// Wakes whoever waits on `timer`, from any thread: timers are not thread-safe, so the cancel runs
// on the timer's own (strand) executor.
inline void wakeTimer(const TimerPtr& timer) {
  boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

}  // namespace nmi
