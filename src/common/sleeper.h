#pragma once

#include <chrono>

#include "common/cancellation.h"
#include "common/task.h"

namespace nmi {

// Waiting between attempts, as a seam: tests record the delays instead of sleeping
// (tests/fakes/fake_sleeper.h).
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  // Waits `delay`. Returns false when `cancel` (may be null) fired first.
  virtual Task<bool> sleepFor(std::chrono::milliseconds delay, CancellationSignal* cancel) = 0;
};

// A steady_timer on the calling coroutine's executor (which must be a strand), cancelled through
// the CancellationSignal (the cancel is posted to the timer's executor). Stateless, thread-safe.
class AsioSleeper final : public Sleeper {
 public:
  Task<bool> sleepFor(std::chrono::milliseconds delay, CancellationSignal* cancel) override;
};

// The process-wide AsioSleeper.
Sleeper& defaultSleeper();

}  // namespace nmi
