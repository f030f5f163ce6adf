#pragma once

#include <atomic>

#include "common/clock.h"
#include "iptables/command_runner.h"

namespace nmi::iptables {

// Runs programs with posix_spawn: no shell, a clean signal mask, every descriptor above 2 closed
// in the child, standard input fed and standard output and error captured through pipes (each
// capped at 64 MiB), the child killed (SIGKILL) at its timeout or on cancel(). run() may be called
// from one thread at a time; cancel() from any thread. Timeouts are read on `clock` (the wait
// itself is poll(2)'s), which must outlive the runner.
class ProcessCommandRunner final : public CommandRunner {
 public:
  explicit ProcessCommandRunner(const Clock& clock = systemClock());
  ~ProcessCommandRunner() override;
  ProcessCommandRunner(const ProcessCommandRunner&) = delete;
  ProcessCommandRunner& operator=(const ProcessCommandRunner&) = delete;

  Result<CommandOutput> run(const Command& command) override;
  void cancel() override;

 private:
  const Clock& clock_;
  std::atomic<bool> cancelled_{false};
  int cancel_read_ = -1;  // readable once cancel() was called
  int cancel_write_ = -1;
};

}  // namespace nmi::iptables
