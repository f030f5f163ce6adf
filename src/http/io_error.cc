#include "http/io_error.h"

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <fmt/format.h>

namespace nmi::http {

Error ioError(const boost::system::error_code& ec, std::string_view what,
              ErrorCode body_limit_code) {
  if (ec == boost::beast::error::timeout) {
    return makeError(ErrorCode::Timeout, fmt::format("{}: timed out", what));
  }
  if (ec == boost::asio::error::operation_aborted) {
    return makeError(ErrorCode::Cancelled, fmt::format("{}: cancelled", what));
  }
  if (ec == boost::beast::http::error::body_limit) {
    return makeError(body_limit_code, fmt::format("{}: answer too large", what));
  }
  return makeError(ErrorCode::Unavailable, fmt::format("{}: {}", what, ec.message()));
}

}  // namespace nmi::http
