#pragma once

// The interception loop: checks nmi's rules every interval, repairs drift, drops stale
// connections once, and says in readiness and metrics how it went. Rules are never removed here
// (not on SIGTERM either): nmi fails closed; `nmi cleanup` removes them.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <spdlog/logger.h>

#include "common/clock.h"
#include "iptables/backend.h"
#include "iptables/command_runner.h"
#include "iptables/node_checks.h"
#include "iptables/rules.h"
#include "metrics/nmi_metrics.h"

namespace nmi::iptables {

struct ReconcilerOptions {
  InterceptionSpec spec;
  BackendChoice backend = BackendChoice::Auto;
  std::string lock_file = "/run/xtables.lock";
  std::chrono::milliseconds interval{5'000};  // between checks while all is well
  std::chrono::milliseconds command_timeout{15'000};
  std::string route_localnet_path = std::string(kRouteLocalnetPath);
};

// Pure. The delay before the next attempt after `failures` consecutive failed passes: 1 s doubling
// to 30 s; `interval` after a good pass (failures == 0).
std::chrono::milliseconds nextDelay(int failures, std::chrono::milliseconds interval);

// What one pass did.
enum class PassResult { Ok, Repaired, Error };

// Thread-safe: start()/stop() from the owner; notReadyReason() from any thread. runOnce() is for
// the loop thread (and tests), one call at a time. Passes are timed on `clock`; the loop waits
// between passes on a condition variable of its own thread (iptables commands block), so stop()
// ends it at once.
class Reconciler {
 public:
  Reconciler(ReconcilerOptions options, CommandRunner& runner, const Clock& clock,
             metrics::NmiMetrics& metrics, std::shared_ptr<spdlog::logger> log);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Starts the loop on a thread of its own (its first pass at once).
  void start();
  // Ends the loop: a command in progress is killed, nothing is removed. Idempotent.
  void stop();

  // "" when the rules are in place and can work; else why not (readiness check "interception").
  std::string notReadyReason() const;

  // One pass: check, repair if needed, verify, conntrack once, route_localnet. Returns the delay
  // until the next pass.
  std::chrono::milliseconds runOnce();
  PassResult lastResultForTest() const;
  // Waits until a pass has finished (after start(), the loop's first); false after `timeout`.
  bool waitForPassForTest(std::chrono::milliseconds timeout) const;

 private:
  struct PassOutcome {
    PassResult result = PassResult::Ok;
    bool rules_in_place = false;
    std::string error;
  };
  PassOutcome pass();
  Result<Plan> observeAndPlan(const Tools& tools, const char* when);
  Result<void> apply(const Tools& tools, const Plan& plan);
  void loop();

  const ReconcilerOptions options_;
  CommandRunner& runner_;
  const Clock& clock_;
  metrics::NmiMetrics& metrics_;
  const std::shared_ptr<spdlog::logger> log_;

  // Loop-thread state.
  std::optional<Tools> tools_;
  bool conntrack_done_ = false;
  int failures_ = 0;
  std::string last_logged_error_;
  std::string last_localnet_logged_;

  mutable std::mutex mu_;
  bool ran_ = false;
  PassResult last_result_ = PassResult::Ok;
  std::string error_;     // last pass's error, "" after a good pass
  std::string localnet_;  // routeLocalnetProblem, "" when fine
  std::chrono::milliseconds retry_in_{0};
  bool stopping_ = false;
  std::condition_variable wake_;
  mutable std::condition_variable passed_;
  std::thread thread_;
};

}  // namespace nmi::iptables
