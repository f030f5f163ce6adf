#pragma once

#include <chrono>
#include <cstdint>

namespace nmi::identity {

// How identities are found; mirrors config::OperationMode so that identity/ need not link
// nmi_config (the daemon maps one onto the other).
enum class Mode : std::uint8_t {
  Standard,  // MIC writes AzureAssignedIdentities; nmi reads them
  Managed,   // no MIC: bindings and identities in the pod's namespace are read directly
};

// How long a waiting request may wait (see waitBudget in resolver.h). Defaults are the original's
// --retry-attempts-for-created, --retry-attempts-for-assigned and --find-identity-retry-interval.
struct WaitBudgetConfig {
  int retry_attempts_for_created = 16;
  int retry_attempts_for_assigned = 4;
  std::chrono::milliseconds interval{5'000};
};

}  // namespace nmi::identity
