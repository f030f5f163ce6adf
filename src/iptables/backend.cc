#include "iptables/backend.h"

#include <utility>

namespace nmi::iptables {

namespace {

struct Counts {
  int rules = 0;
  bool hint = false;
};

Counts count(std::string_view save) {
  Counts c;
  while (!save.empty()) {
    const std::size_t eol = save.find('\n');
    const std::string_view line = save.substr(0, eol);
    save = eol == std::string_view::npos ? std::string_view() : save.substr(eol + 1);
    if (line.rfind('-', 0) == 0) {
      ++c.rules;
    } else if (line.rfind(":KUBE-IPTABLES-HINT ", 0) == 0 ||
               line.rfind(":KUBE-KUBELET-CANARY ", 0) == 0) {
      c.hint = true;
    }
  }
  return c;
}

std::string prefix(Backend backend) {
  return backend == Backend::Nft ? "iptables-nft" : "iptables-legacy";
}

}  // namespace

std::string_view backendName(Backend backend) {
  return backend == Backend::Nft ? "nft" : "legacy";
}

Result<BackendDecision> chooseBackend(const BackendEvidence& evidence) {
  if (!evidence.nft_save && !evidence.legacy_save) {
    return makeError(ErrorCode::NotFound,
                     "neither iptables-nft-save nor iptables-legacy-save could run");
  }
  if (!evidence.legacy_save) {
    return BackendDecision{Backend::Nft, "iptables-legacy-save could not run"};
  }
  if (!evidence.nft_save) {
    return BackendDecision{Backend::Legacy, "iptables-nft-save could not run"};
  }
  const Counts nft = count(*evidence.nft_save);
  const Counts legacy = count(*evidence.legacy_save);
  if (nft.hint) {
    return BackendDecision{Backend::Nft, "kubelet's hint chain is in the nft tables"};
  }
  if (legacy.hint) {
    return BackendDecision{Backend::Legacy, "kubelet's hint chain is in the legacy tables"};
  }
  const std::string counts =
      std::to_string(nft.rules) + " nft rules, " + std::to_string(legacy.rules) + " legacy rules";
  if (legacy.rules > nft.rules) {
    return BackendDecision{Backend::Legacy, counts};
  }
  return BackendDecision{Backend::Nft, counts};
}

Command Tools::save(std::string_view table) const {
  Command c;
  c.argv = {prefix(backend) + "-save"};
  if (!table.empty()) {
    c.argv.emplace_back("-t");
    c.argv.emplace_back(table);
  }
  c.timeout = timeout;
  return c;
}

Command Tools::restore(std::string input) const {
  Command c;
  c.argv = {prefix(backend) + "-restore", "--noflush",
            "--wait=" + std::to_string(lock_wait.count())};
  c.input = std::move(input);
  c.env = {{"XTABLES_LOCKFILE", lock_file}};
  c.timeout = timeout;
  return c;
}

Command detectionSave(Backend backend, std::chrono::milliseconds timeout) {
  Command c;
  c.argv = {prefix(backend) + "-save"};
  c.timeout = timeout;
  return c;
}

Result<BackendDecision> resolveBackend(BackendChoice choice, CommandRunner& runner,
                                       std::chrono::milliseconds timeout) {
  if (choice == BackendChoice::Nft) {
    return BackendDecision{Backend::Nft, "--iptables-backend=nft"};
  }
  if (choice == BackendChoice::Legacy) {
    return BackendDecision{Backend::Legacy, "--iptables-backend=legacy"};
  }
  BackendEvidence evidence;
  for (const Backend b : {Backend::Nft, Backend::Legacy}) {
    auto out = runner.run(detectionSave(b, timeout));
    if (!out) {
      if (out.error().code == ErrorCode::Cancelled) {
        return out.error();
      }
      continue;
    }
    if (out->exit_code != 0) {
      continue;
    }
    (b == Backend::Nft ? evidence.nft_save : evidence.legacy_save) = std::move(out->out);
  }
  auto decision = chooseBackend(evidence);
  if (decision) {
    decision->reason = "auto: " + decision->reason;
  }
  return decision;
}

}  // namespace nmi::iptables
