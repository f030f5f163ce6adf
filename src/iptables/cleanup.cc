#include "iptables/cleanup.h"

#include <array>
#include <utility>

#include "iptables/rules.h"
#include "iptables/save_parser.h"

namespace nmi::iptables {

namespace {

std::string firstLine(const std::string& text) {
  return text.substr(0, std::min(text.find('\n'), std::size_t{300}));
}

// Cleans one backend. `must_run`: a forced backend whose save fails is an error; in auto mode a
// backend that cannot run has nothing of nmi's.
Result<void> cleanBackend(CommandRunner& runner, const Tools& tools, bool must_run,
                          std::vector<std::string>& done) {
  auto saved = runner.run(tools.save(""));
  if (!saved || saved->exit_code != 0) {
    if (!must_run) {
      return {};
    }
    if (!saved) {
      return saved.error();
    }
    return makeError(ErrorCode::Unavailable, tools.save("").argv.front() + " exited " +
                                                 std::to_string(saved->exit_code) + ": " +
                                                 firstLine(saved->err));
  }
  auto ruleset = parseSave(saved->out);
  if (!ruleset) {
    return ruleset.error();
  }
  const std::array<std::pair<std::string_view, std::string_view>, 2> ours = {
      {{"filter", kGuardChain}, {"nat", kNatChain}}};
  for (const auto& [table_name, chain] : ours) {
    const SavedTable* table = ruleset->find(table_name);
    if (table == nullptr) {
      continue;
    }
    std::string text = cleanupText(*table, chain);
    if (text.empty()) {
      continue;
    }
    auto restored = runner.run(tools.restore(text));
    if (!restored) {
      return restored.error();
    }
    if (restored->exit_code != 0) {
      return makeError(ErrorCode::Unavailable, tools.restore("").argv.front() + " exited " +
                                                   std::to_string(restored->exit_code) +
                                                   " removing " + std::string(chain) + ": " +
                                                   firstLine(restored->err));
    }
    done.push_back(std::string(backendName(tools.backend)) + ": removed " +
                   std::string(table_name) + " chain " + std::string(chain) +
                   " and the rules jumping to it");
  }
  return {};
}

}  // namespace

Result<std::vector<std::string>> removeInterception(CommandRunner& runner,
                                                    const CleanupOptions& options) {
  std::vector<std::string> done;
  std::vector<Backend> backends;
  if (options.backend == BackendChoice::Nft) {
    backends = {Backend::Nft};
  } else if (options.backend == BackendChoice::Legacy) {
    backends = {Backend::Legacy};
  } else {
    backends = {Backend::Nft, Backend::Legacy};
  }
  for (const Backend backend : backends) {
    Tools tools;
    tools.backend = backend;
    tools.lock_file = options.lock_file;
    tools.timeout = options.command_timeout;
    if (auto cleaned = cleanBackend(runner, tools, options.backend != BackendChoice::Auto, done);
        !cleaned) {
      return cleaned.error();
    }
  }
  return done;
}

}  // namespace nmi::iptables
