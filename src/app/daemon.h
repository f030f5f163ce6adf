#pragma once

#include "config/config.h"
#include "iptables/backend.h"
#include "iptables/cleanup.h"

namespace nmi::app {

// The iptables backend --iptables-backend asks for.
iptables::BackendChoice backendChoice(config::IptablesBackend backend);

// What `nmi cleanup` and the uninstall on SIGTERM remove, from the flags.
iptables::CleanupOptions cleanupOptions(const config::Config& config);

// Builds every part from the configuration, runs until SIGTERM or SIGINT, drains and returns the
// process exit code (0 after a clean shutdown; 1 when start-up fails, after one clear log line).
int runDaemon(const config::Config& config);

}  // namespace nmi::app
