#include "imds/data_wait.h"

namespace nmi::imds {

Task<WaitEnd> waitForData(ChangeNotifier& changes, const PendingCheck& pending,
                          CancellationSignal* cancel, prometheus::Gauge& waiting) {
  std::optional<MonotonicTime> deadline;
  for (;;) {
    // The generation is read before the check, so a change that lands in between still wakes us.
    const auto generation = changes.generation();
    const std::optional<MonotonicTime> until = pending();
    if (!until) {
      co_return WaitEnd::Ready;
    }
    if (!deadline) {
      deadline = until;
    }
    waiting.Increment();
    const auto waited = co_await changes.waitForChange(generation, *deadline, cancel);
    waiting.Decrement();
    switch (waited) {
      case ChangeNotifier::WaitResult::Changed:
        break;
      case ChangeNotifier::WaitResult::Cancelled:
        co_return WaitEnd::ClientGone;
      case ChangeNotifier::WaitResult::DeadlinePassed:
        co_return pending() ? WaitEnd::DeadlinePassed : WaitEnd::Ready;
    }
  }
}

}  // namespace nmi::imds
