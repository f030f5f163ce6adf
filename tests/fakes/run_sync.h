#pragma once

#include <optional>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include "common/task.h"

namespace nmi::testing {

// Runs `task` on a strand of `io` until it and everything else queued on `io` finish, and
// returns its result. (Boost 1.74's co_spawn with use_future needs a default-constructible T.)
template <class T>
T runSync(boost::asio::io_context& io, Task<T> task) {
  std::optional<T> result;
  boost::asio::co_spawn(
      boost::asio::make_strand(io),
      [&]() -> Task<void> { result.emplace(co_await std::move(task)); }, boost::asio::detached);
  io.restart();
  io.run();
  return std::move(*result);
}

inline void runSync(boost::asio::io_context& io, Task<void> task) {
  boost::asio::co_spawn(boost::asio::make_strand(io), std::move(task), boost::asio::detached);
  io.restart();
  io.run();
}

}  // namespace nmi::testing
