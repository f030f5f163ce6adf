#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "app/daemon.h"
#include "app/logging.h"
#include "config/config.h"

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
