#pragma once

#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace nmi {

// The named logger of a module ("nmi.imds", "nmi.token", ...), sharing the process's sinks and
// level. Messages are lower-case key=value lines. Never log a token, a client secret, a
// certificate, an assertion or a service-account JWT.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace nmi
