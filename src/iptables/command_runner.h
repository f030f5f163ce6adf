#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace nmi::iptables {

// One program run: argv (argv[0] is looked up in PATH, then /usr/sbin and /sbin; no shell), the
// bytes given on its standard input, variables added to (or replacing) the environment, and how
// long it may take before it is killed.
struct Command {
  std::vector<std::string> argv;
  std::string input;
  std::vector<std::pair<std::string, std::string>> env;
  std::chrono::milliseconds timeout{10'000};
};

// What the program did. A non-zero exit code is not an error of run(): the caller judges it.
struct CommandOutput {
  int exit_code = 0;
  std::string out;  // standard output
  std::string err;  // standard error
};

// Runs programs (iptables-save, iptables-restore, conntrack). run() blocks its caller until the
// program ends: call it from a worker thread, never from an I/O thread.
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Errors: NotFound (no such program), Timeout (killed after command.timeout), Cancelled (after
  // cancel()), Unavailable (could not start it, or it died from a signal).
  virtual Result<CommandOutput> run(const Command& command) = 0;
  // Makes the run in progress, and every later one, end at once with Cancelled. Thread-safe.
  virtual void cancel() = 0;
};
using CommandRunnerPtr = std::unique_ptr<CommandRunner>;

}  // namespace nmi::iptables
