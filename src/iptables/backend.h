#pragma once

// Which iptables the node uses (nft or legacy), chosen like Kubernetes' iptables-wrapper, and how
// to call it.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "iptables/command_runner.h"

namespace nmi::iptables {

enum class Backend { Nft, Legacy };
enum class BackendChoice { Auto, Nft, Legacy };

std::string_view backendName(Backend backend);

// The save output of each backend over all tables (`iptables-nft-save`, `iptables-legacy-save`);
// nullopt when that program could not run.
struct BackendEvidence {
  std::optional<std::string> nft_save;
  std::optional<std::string> legacy_save;
};

struct BackendDecision {
  Backend backend = Backend::Nft;
  std::string reason;  // for the log
};

// Pure. The backend whose tables carry kubelet's hint chains (KUBE-IPTABLES-HINT,
// KUBE-KUBELET-CANARY; nft looked at first); else the one with more rules (legacy only when it has
// strictly more); nft when neither has any. A backend whose save could not run is not chosen.
// Errors: NotFound when neither could run.
Result<BackendDecision> chooseBackend(const BackendEvidence& evidence);

// How nmi calls one backend: `iptables-<b>-save [-t table]` and
// `iptables-<b>-restore --noflush --wait=<s>`, with XTABLES_LOCKFILE set to the lock file (legacy
// uses it; nft ignores it). Never the `iptables` alternative: the backend is always explicit.
struct Tools {
  Backend backend = Backend::Nft;
  std::string lock_file = "/run/xtables.lock";
  std::chrono::seconds lock_wait{5};
  std::chrono::milliseconds timeout{15'000};

  Command save(std::string_view table) const;  // "" for every table
  Command restore(std::string input) const;
};

// The save command of a backend over every table (for detection; it creates no table).
Command detectionSave(Backend backend, std::chrono::milliseconds timeout);

// A forced choice as is; Auto runs both saves (over all tables: `-t` would create a legacy table)
// and decides with chooseBackend. Runs on the caller's thread.
Result<BackendDecision> resolveBackend(BackendChoice choice, CommandRunner& runner,
                                       std::chrono::milliseconds timeout);

}  // namespace nmi::iptables
