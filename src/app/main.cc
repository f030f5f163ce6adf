#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "app/daemon.h"
#include "app/logging.h"
#include "app/options.h"
#include "config/config.h"
#include "iptables/cleanup.h"
#include "iptables/process_command_runner.h"

namespace {

// `nmi cleanup [flags]`: removes nmi's interception rules (for an uninstall) and exits 0, also when
// there was nothing to remove; 1 when iptables fails.
int runCleanup(const nmi::config::Config& config) {
  nmi::iptables::ProcessCommandRunner runner;
  auto removed = nmi::iptables::removeInterception(runner, nmi::app::cleanupOptions(config));
  if (!removed) {
    std::fprintf(stderr, "nmi cleanup: %s\n", removed.error().message.c_str());
    return 1;
  }
  if (removed->empty()) {
    std::fputs("nmi cleanup: no nmi iptables rules found; nothing to remove\n", stdout);
  }
  for (const std::string& line : *removed) {
    std::printf("nmi cleanup: %s\n", line.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv, argv + argc);
    auto parsed = nmi::config::parse(args);
    if (!parsed) {
      std::fprintf(stderr, "nmi: %s\n", parsed.error().message.c_str());
      return 2;
    }
    switch (parsed->action) {
      case nmi::config::ParseOutcome::Action::PrintHelp:
      case nmi::config::ParseOutcome::Action::PrintVersion:
        std::fputs(parsed->text.c_str(), stdout);
        return 0;
      case nmi::config::ParseOutcome::Action::Cleanup:
        return runCleanup(parsed->config);
      case nmi::config::ParseOutcome::Action::Run:
        break;
    }
    nmi::app::setupLogging(parsed->config.log);
    return nmi::app::runDaemon(parsed->config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nmi: fatal: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "nmi: fatal: unknown exception\n");
    return 1;
  }
}
