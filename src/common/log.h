#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

namespace nmi {

// The named logger of a module ("nmi.imds", "nmi.token", ...), sharing the process's sinks and
// level. Messages are lower-case key=value lines. Never log a token, a client secret, a
// certificate, an assertion or a service-account JWT.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

// A value from outside (a request's resource, a header, a name from the API server) for a
// key=value log line: always in double quotes, with '"' and '\\' escaped as \" and \\, and
// every byte outside printable ASCII as \xNN. The result cannot end the quotes early, start a
// new line or forge another key=value field. Pure.
std::string quoteLogValue(std::string_view value);

}  // namespace nmi
