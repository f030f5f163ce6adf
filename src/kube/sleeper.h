#pragma once

#include <chrono>

#include "common/cancellation.h"
#include "common/task.h"

namespace nmi::kube {

// Waiting between attempts, as a seam: tests record the delays instead of sleeping.
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  // Waits `delay`. Returns false when `cancel` (may be null) fired first.
  virtual Task<bool> sleepFor(std::chrono::milliseconds delay, CancellationSignal* cancel) = 0;
};

// A steady_timer on the calling coroutine's executor (which must be a strand), cancelled through
// the CancellationSignal. Stateless and thread-safe.
class AsioSleeper final : public Sleeper {
 public:
  Task<bool> sleepFor(std::chrono::milliseconds delay, CancellationSignal* cancel) override;
};

// A uniform sample from [0, 1) (thread-safe), for jitter.
double uniformRandom();

}  // namespace nmi::kube
