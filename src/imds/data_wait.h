#pragma once

#include <functional>
#include <optional>

#include <prometheus/gauge.h>

#include "common/cancellation.h"
#include "common/change_notifier.h"
#include "common/clock.h"
#include "common/task.h"

namespace nmi::imds {

// How a wait for identity data ended.
enum class WaitEnd {
  Ready,           // `pending` answered nullopt
  DeadlinePassed,  // still pending at the deadline (evaluated once more then)
  ClientGone,      // `cancel` fired first
};

// What a waiting request asks each time the data changes: nullopt when it can be answered now,
// else the deadline until which it may wait. The first deadline holds for the whole wait.
using PendingCheck = std::function<std::optional<MonotonicTime>()>;

// The one wait loop of the IMDS handler: evaluates `pending` now and after every change of
// `changes` (event-driven: no polling) until it answers nullopt, the first deadline it answered
// passes, or `cancel` (may be null) fires. `waiting` counts the requests waiting meanwhile.
// Must run on a strand (ChangeNotifier posts wake-ups to the waiter's executor).
Task<WaitEnd> waitForData(ChangeNotifier& changes, const PendingCheck& pending,
                          CancellationSignal* cancel, prometheus::Gauge& waiting);

}  // namespace nmi::imds
