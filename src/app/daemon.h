#pragma once

#include "config/config.h"

namespace nmi::app {

// Builds every part from the configuration, runs until SIGTERM or SIGINT, drains and returns the
// process exit code (0 after a clean shutdown; 1 when start-up fails, after one clear log line).
int runDaemon(const config::Config& config);

}  // namespace nmi::app
