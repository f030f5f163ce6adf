#pragma once

#include <string_view>

#include <boost/system/error_code.hpp>

#include "common/result.h"

namespace nmi::http {

// The Error of a failed Beast/Asio exchange, named by `what` ("GET host:port"): Timeout for an
// expired stream deadline, Cancelled for an aborted operation, `body_limit_code` ("answer too
// large") for a body over the parser's limit, Unavailable for everything else (connect, TLS, I/O).
Error ioError(const boost::system::error_code& ec, std::string_view what,
              ErrorCode body_limit_code = ErrorCode::Unavailable);

}  // namespace nmi::http
