#pragma once

#include "config/config.h"

namespace nmi::app {

// Sets up the process's logging: text (RFC 3339 UTC timestamp, level, logger, message) or JSON
// lines ({"ts","level","logger","msg"}), on stderr; -v >= 4 enables per-request debug lines,
// -v >= 6 trace.
void setupLogging(const config::LogConfig& log);

}  // namespace nmi::app
