#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility> (g++ 12).
#include <utility>

#include <boost/asio/awaitable.hpp>

namespace nmi {

// A coroutine returning T, run on an Asio executor.
template <class T>
using Task = boost::asio::awaitable<T>;

}  // namespace nmi
