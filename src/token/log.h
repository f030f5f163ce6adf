#pragma once

#include <memory>

#include <spdlog/logger.h>

#include "common/log.h"

namespace nmi::token {

// The module's logger, "nmi.token". Never log a token, a client secret, a certificate or a
// client assertion.
inline std::shared_ptr<spdlog::logger> logger() {
  return nmi::logger("nmi.token");
}

}  // namespace nmi::token
