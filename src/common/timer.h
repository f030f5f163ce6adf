#pragma once

#include <memory>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace nmi {

// Compatibility shim, to be removed: src/token/caching_token_provider.cc still waits on raw
// steady_timers (it is being rewritten and will move to Clock::makeTimer, common/clock.h).
// Everything else uses Timer::wake().
//
// Wakes whoever waits on `timer`, from any thread: timers are not thread-safe, so the cancel runs
// on the timer's own (strand) executor.
inline void wakeTimer(const std::shared_ptr<boost::asio::steady_timer>& timer) {
  boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

}  // namespace nmi
