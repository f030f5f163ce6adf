#pragma once

// `nmi cleanup`: removes nmi's chains and the rules that jump to them, for an uninstall.

#include <chrono>
#include <string>
#include <vector>

#include "common/result.h"
#include "iptables/backend.h"
#include "iptables/command_runner.h"

namespace nmi::iptables {

struct CleanupOptions {
  BackendChoice backend = BackendChoice::Auto;
  std::string lock_file = "/run/xtables.lock";
  std::chrono::milliseconds command_timeout{15'000};
};

// Removes NMI-METADATA (nat) and NMI-METADATA-GUARD (filter) with every rule that jumps to them,
// one iptables-restore transaction per table, from the forced backend, or (auto) from each
// backend whose save runs and shows them. Nothing else is touched (aad-pod-identity's
// `aad-metadata` stays). Returns one line per table changed; empty when nothing was installed.
// Runs on the caller's thread. Errors: Unavailable / NotFound naming the failing program.
Result<std::vector<std::string>> removeInterception(CommandRunner& runner,
                                                    const CleanupOptions& options);

}  // namespace nmi::iptables
