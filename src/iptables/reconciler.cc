#include "iptables/reconciler.h"

#include <algorithm>
#include <array>
#include <utility>

#include "common/file.h"
#include "iptables/conntrack.h"

namespace nmi::iptables {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kFirstRetry{1'000};
constexpr milliseconds kMaxRetry{30'000};
constexpr std::size_t kMaxSysctlBytes = 4096;  // /proc/sys/net/ipv4/conf/all/route_localnet

// The first two lines of a program's complaint, on one line.
std::string complaint(const CommandOutput& output) {
  const std::string& source = output.err.empty() ? output.out : output.err;
  std::string_view text = source;
  std::string out;
  for (int lines = 0; lines < 2 && !text.empty(); ++lines) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (line.rfind("# Warning: iptables-legacy tables present", 0) == 0) {
      --lines;  // nft's notice about legacy tables says nothing about this failure
      continue;
    }
    if (!out.empty()) {
      out += " / ";
    }
    out += line.substr(0, 300);
  }
  return out;
}

std::string commandName(const Command& command) {
  std::string name = command.argv.front();
  for (std::size_t i = 1; i < command.argv.size(); ++i) {
    if (command.argv[i] == "-t" && i + 1 < command.argv.size()) {
      name += " -t " + command.argv[i + 1];
    }
  }
  return name;
}

// Runs a command that must exit 0; its standard output.
Result<std::string> runChecked(CommandRunner& runner, const Command& command) {
  auto output = runner.run(command);
  if (!output) {
    return output.error();
  }
  if (output->exit_code != 0) {
    return makeError(ErrorCode::Unavailable, commandName(command) + " exited " +
                                                 std::to_string(output->exit_code) + ": " +
                                                 complaint(*output));
  }
  return std::move(output->out);
}

}  // namespace

milliseconds nextDelay(int failures, milliseconds interval) {
  if (failures <= 0) {
    return interval;
  }
  milliseconds delay = kFirstRetry;
  for (int i = 1; i < failures && delay < kMaxRetry; ++i) {
    delay *= 2;
  }
  return std::min(delay, kMaxRetry);
}

Reconciler::Reconciler(ReconcilerOptions options, CommandRunner& runner, const Clock& clock,
                       metrics::NmiMetrics& metrics, std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)),
      runner_(runner),
      clock_(clock),
      metrics_(metrics),
      log_(std::move(log)) {}

Reconciler::~Reconciler() {
  stop();
}

void Reconciler::start() {
  const std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) {
    return;
  }
  thread_ = std::thread([this] { loop(); });
}

void Reconciler::stop() {
  {
    const std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    runner_.cancel();
    thread_.join();
  }
}

void Reconciler::loop() {
  while (true) {
    {
      const std::lock_guard lock(mu_);
      if (stopping_) {
        return;
      }
    }
    const milliseconds delay = runOnce();
    std::unique_lock lock(mu_);
    if (wake_.wait_for(lock, delay, [this] { return stopping_; })) {
      return;
    }
  }
}

std::string Reconciler::notReadyReason() const {
  const std::lock_guard lock(mu_);
  if (!ran_) {
    return "iptables rules not checked yet";
  }
  std::string reason;
  if (!error_.empty()) {
    reason = error_ + " (retrying in " + std::to_string(retry_in_.count() / 1000) + " s)";
  }
  if (!localnet_.empty()) {
    reason += (reason.empty() ? "" : "; ") + localnet_;
  }
  return reason;
}

PassResult Reconciler::lastResultForTest() const {
  const std::lock_guard lock(mu_);
  return last_result_;
}

bool Reconciler::waitForPassForTest(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return passed_.wait_for(lock, timeout, [this] { return ran_; });
}

milliseconds Reconciler::runOnce() {
  const PassOutcome outcome = pass();
  const Result<std::string> localnet_file =
      readSmallFile(options_.route_localnet_path, kMaxSysctlBytes);
  std::string localnet = routeLocalnetProblem(options_.spec.target_ip, localnet_file);
  if (localnet != last_localnet_logged_) {
    if (!localnet.empty()) {
      log_->warn("interception cannot work: {}", localnet);
    } else if (!last_localnet_logged_.empty()) {
      log_->info("route_localnet is now 1: DNAT to {} works", options_.spec.target_ip);
    }
    last_localnet_logged_ = localnet;
  }

  failures_ = outcome.result == PassResult::Error ? failures_ + 1 : 0;
  const milliseconds delay = nextDelay(failures_, options_.interval);
  switch (outcome.result) {
    case PassResult::Ok:
      metrics_.iptables_reconcile_ok.Increment();
      break;
    case PassResult::Repaired:
      metrics_.iptables_reconcile_repaired.Increment();
      break;
    case PassResult::Error:
      metrics_.iptables_reconcile_error.Increment();
      log_->warn("iptables: {}; retrying in {} ms (failure {})", outcome.error, delay.count(),
                 failures_);
      break;
  }
  metrics_.iptables_rules_installed.Set(outcome.rules_in_place ? 1 : 0);
  if (outcome.result != PassResult::Error && !last_logged_error_.empty()) {
    log_->info("iptables: working again after {}", last_logged_error_);
  }
  last_logged_error_ = outcome.error;

  const std::lock_guard lock(mu_);
  ran_ = true;
  last_result_ = outcome.result;
  error_ = outcome.error;
  localnet_ = std::move(localnet);
  retry_in_ = delay;
  passed_.notify_all();
  return delay;
}

Result<Plan> Reconciler::observeAndPlan(const Tools& tools, const char* when) {
  auto nat_text = runChecked(runner_, tools.save("nat"));
  if (!nat_text) {
    return makeError(nat_text.error().code, nat_text.error().message + when);
  }
  auto filter_text = runChecked(runner_, tools.save("filter"));
  if (!filter_text) {
    return makeError(filter_text.error().code, filter_text.error().message + when);
  }
  auto nat = parseSave(*nat_text);
  if (!nat) {
    return nat.error();
  }
  auto filter = parseSave(*filter_text);
  if (!filter) {
    return filter.error();
  }
  return planReconcile(nat->find("nat"), filter->find("filter"), options_.spec);
}

Result<void> Reconciler::apply(const Tools& tools, const Plan& plan) {
  // The guard first: until the DNAT is in place too, pods are refused rather than let through.
  const std::array<std::pair<DesiredTable, const TablePlan*>, 2> tables = {
      {{desiredFilter(options_.spec), &plan.filter}, {desiredNat(options_.spec), &plan.nat}}};
  for (const auto& [desired, table_plan] : tables) {
    std::string text = restoreText(desired, *table_plan);
    if (text.empty()) {
      continue;
    }
    log_->debug("iptables-restore --noflush input:\n{}", text);
    Command restore = tools.restore(std::move(text));
    auto done = runChecked(runner_, restore);
    if (!done) {
      return makeError(done.error().code, done.error().message + " (table " + desired.table + ")");
    }
  }
  return {};
}

Reconciler::PassOutcome Reconciler::pass() {
  PassOutcome out;
  if (!tools_) {
    auto decision = resolveBackend(options_.backend, runner_, options_.command_timeout);
    if (!decision) {
      out.result = PassResult::Error;
      out.error = "cannot choose the iptables backend: " + decision.error().message;
      return out;
    }
    Tools tools;
    tools.backend = decision->backend;
    tools.lock_file = options_.lock_file;
    tools.timeout = options_.command_timeout;
    tools_ = tools;
    log_->info("iptables backend={} ({})", backendName(decision->backend), decision->reason);
  }
  const MonotonicTime started = clock_.monotonicNow();
  auto plan = observeAndPlan(*tools_, "");
  if (!plan) {
    out.result = PassResult::Error;
    out.error = plan.error().message;
    return out;
  }
  if (!plan->empty()) {
    const std::string what = describe(*plan);
    if (conntrack_done_) {
      log_->warn("iptables: repairing interception rules: {}", what);
    } else {
      log_->info("iptables: installing interception rules: {}", what);
    }
    if (auto applied = apply(*tools_, *plan); !applied) {
      out.result = PassResult::Error;
      out.error = applied.error().message;
      return out;
    }
    auto check = observeAndPlan(*tools_, " (after the repair)");
    if (!check) {
      out.result = PassResult::Error;
      out.error = check.error().message;
      return out;
    }
    if (!check->empty()) {
      out.result = PassResult::Error;
      out.error = "rules still differ after the repair: " + describe(*check);
      return out;
    }
    out.result = PassResult::Repaired;
    const auto took = std::chrono::duration_cast<milliseconds>(clock_.monotonicNow() - started);
    log_->info("iptables: interception rules in place ({} backend, {} ms)",
               backendName(tools_->backend), took.count());
  }
  out.rules_in_place = true;
  // Drop connections opened before the rules: once, and again whenever both the DNAT and the
  // guard were missing (nothing stood between pods and the metadata address).
  const bool was_open = !plan->nat.empty() && !plan->filter.empty();
  if (!conntrack_done_ || was_open) {
    auto deleted = deleteMetadataConnections(runner_, options_.spec.metadata_ip,
                                             options_.spec.metadata_port, options_.command_timeout);
    if (!deleted) {
      out.result = PassResult::Error;
      out.error =
          "rules in place, but dropping earlier connections to the metadata address "
          "failed: " +
          deleted.error().message;
      return out;
    }
    conntrack_done_ = true;
    metrics_.conntrack_flows_deleted.Increment(*deleted);
    log_->info("conntrack: dropped {} connections to {}:{}", *deleted, options_.spec.metadata_ip,
               options_.spec.metadata_port);
  }
  return out;
}

}  // namespace nmi::iptables
