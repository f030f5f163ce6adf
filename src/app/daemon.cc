#include "app/daemon.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <fmt/format.h>

#include "app/components.h"
#include "app/instance_lock.h"
#include "app/options.h"
#include "common/clock.h"
#include "common/log.h"
#include "health/health.h"
#include "http/server.h"
#include "imds/audit.h"
#include "imds/handler.h"
#include "iptables/process_command_runner.h"
#include "iptables/reconciler.h"
#include "kube/api_identity_source.h"
#include "kube/owner_check.h"
#include "metrics/exposition.h"
#include "metrics/nmi_metrics.h"
#include "token/caching_token_provider.h"

namespace nmi::app {

namespace asio = boost::asio;

namespace {

// Serves on until a successor says it serves, or `limit` passes.
Task<void> awaitSuccessor(const InstanceLock& lock, const Clock& clock, Timer& timer,
                          std::chrono::milliseconds limit, spdlog::logger& log) {
  const MonotonicTime start = clock.monotonicNow();
  bool said = false;
  for (;;) {
    if (lock.successorServing()) {
      log.info("the next nmi on this node serves: draining");
      co_return;
    }
    const auto waited = clock.monotonicNow() - start;
    if (waited >= limit) {
      log.warn("no next nmi served on this node within {} s: draining (the rules stay)",
               std::chrono::duration_cast<std::chrono::seconds>(limit).count());
      co_return;
    }
    if (!said) {
      log.info("serving until the next nmi on this node serves (up to {} s)",
               std::chrono::duration_cast<std::chrono::seconds>(limit).count());
      said = true;
    }
    const std::chrono::milliseconds poll_every(100);
    if (co_await timer.waitFor(poll_every)) {
      co_return;
    }
  }
}

// A successor in a hand-over (the previous nmi holds the port lock) tells it once it serves: rules
// in place and caches synced, as /readyz says. `timer` paces the checks; waking it ends the
// wait.
Task<void> announceWhenReady(const health::Readiness& readiness, InstanceLock& port_lock,
                             http::Server& server, Timer& timer, spdlog::logger& log) {
  while (!readiness.failures().empty()) {
    const std::chrono::milliseconds poll_every(100);
    if (co_await timer.waitFor(poll_every)) {
      co_return;  // woken: the SIGTERM sequence began
    }
  }
  // New connections to this listener only from now on: the previous nmi is about to close its
  // own, and what is queued on a listener when it closes is reset. Undone once the previous nmi
  // has gone (InstanceLock::onTaken).
  if (auto steered = port_lock.held() ? Result<void>{} : server.preferThisListener(); !steered) {
    log.warn(
        "{} (connections queued on the previous nmi when it closes are reset unless "
        "net.ipv4.tcp_migrate_req is 1)",
        steered.error().message);
  }
  port_lock.announceSuccessor();
}

// nmi's three listeners: the IMDS face, the probes, the metrics.
struct Servers {
  Servers(asio::io_context& io, const config::Config& config, http::Handler& imds,
          http::Handler& probes, http::Handler& exposition, metrics::NmiMetrics& counters,
          const Clock& clock)
      : nmi(io, "nmi", imds, serverLimits(config.server), &counters, clock),
        probe(io, "probe", probes, http::ServerLimits{}, nullptr, clock),
        metrics(io, "metrics", exposition, http::ServerLimits{}, nullptr, clock) {}

  Result<void> listen(const config::Config& config) {
    if (auto r = nmi.listen(config.server.listen_address, config.server.port); !r) {
      return makeError(r.error().code, "error creating http server: " + r.error().message);
    }
    if (auto r = probe.listen("0.0.0.0", config.server.probe_port); !r) {
      return makeError(r.error().code, "error creating probe server: " + r.error().message);
    }
    if (auto r = metrics.listen("0.0.0.0", config.server.metrics_port); !r) {
      return makeError(r.error().code, "error creating metrics server: " + r.error().message);
    }
    return {};
  }

  void start() {
    nmi.start();
    probe.start();
    metrics.start();
  }

  // Requests in flight to the IMDS face may finish within `grace`; the others end at once.
  Task<void> drain(std::chrono::milliseconds grace) {
    co_await nmi.drain(grace);
    co_await probe.drain(std::chrono::milliseconds(0));
    co_await metrics.drain(std::chrono::milliseconds(0));
  }

  http::Server nmi;
  http::Server probe;
  http::Server metrics;
};

// Runs `io` on `threads` threads (this one included) until it stops.
void runIoThreads(asio::io_context& io, int threads) {
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) {
    workers.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& t : workers) {
    t.join();
  }
}

}  // namespace

int runDaemon(const config::Config& config) {
  const auto log = logger("nmi");
  for (const auto& warning : config.warnings) {
    log->warn("{}", warning);
  }
  log->info("starting nmi version={} mode={} namespaced={} listen={}:{} node={}", NMI_VERSION,
            config.identity.mode == config::OperationMode::Managed ? "managed" : "standard",
            config.identity.force_namespaced, config.server.listen_address, config.server.port,
            config.identity.node_name);
  if (refusedForKubenet(config)) {
    return 1;
  }

  const int threads = std::max(1, config.server.io_threads);
  // The time seam's real side: every time read and timer of the daemon comes from here.
  const SystemClock clock;
  asio::io_context io(threads);
  // One nmi per port on a node, except for a hand-over within the same DaemonSet.
  const InstanceIdentity me = instanceIdentity(config);
  InstanceLock port_lock(io, config.server.port, me, clock);
  if (auto locked = port_lock.acquire(); !locked) {
    log->error("refusing to start on port {}: {}", config.server.port, locked.error().message);
    return 1;
  }
  metrics::NmiMetrics metrics;

  auto identity_data = startIdentityData(config, io, clock, metrics);
  if (!identity_data) {
    log->error("{}", identity_data.error().message);
    return 1;
  }
  identity::IdentitySource& source = *identity_data->source;
  const kube::ApiIdentitySource* api_source = identity_data->api;
  auto stack = TokenStack::create(config, io, clock, metrics, source);
  if (!stack) {
    log->error("{}", stack.error().message);
    return 1;
  }
  token::CachingTokenProvider& tokens = (*stack)->cache();
  if (!config.token.aad_allowed_hosts.empty()) {
    log->info("azure ad hosts allowed besides the azure clouds: {}",
              fmt::join(config.token.aad_allowed_hosts, ","));
  }

  // The IMDS face.
  imds::AuditLog audit(metrics);
  imds::ImdsHandler handler(handlerOptions(config, (*stack)->aadAuthorities()), source, tokens,
                            (*stack)->proxyClient(), clock, metrics, audit);

  health::Readiness readiness;
  readiness.add("identity", [&source] { return source.notReadyReason(); });
  if (api_source != nullptr) {
    // Stale caches do not fail readiness: nmi serves from them by design, and a NotReady nmi
    // would hold up rolling updates while the API server is away (docs/operations.md).
    readiness.addDetail("stale", [api_source] { return api_source->staleReason(); });
  }

  // Interception: nmi's iptables rules, checked and repaired on a thread of their own (iptables
  // processes never run on an I/O thread). Removed on exit only when nmi's DaemonSet is gone or
  // being deleted (an uninstall, --daemonset-name); otherwise nmi fails closed.
  iptables::ProcessCommandRunner ipt_runner(clock);
  std::unique_ptr<iptables::Reconciler> interception;
  if (const std::string off = interceptionOff(config); !off.empty()) {
    log->info("interception off ({}): nmi installs no iptables rules", off);
  } else {
    interception = std::make_unique<iptables::Reconciler>(reconcilerOptions(config), ipt_runner,
                                                          clock, metrics, logger("nmi.iptables"));
    readiness.add("interception", [raw = interception.get()] { return raw->notReadyReason(); });
  }
  std::unique_ptr<kube::OwnerWatch> owner = makeOwnerWatch(
      config, io, clock, identity_data->api_transport, source, interception != nullptr);
  if (owner) {
    // Not a readiness failure: the rules are kept (fail closed) whatever happens; an operator
    // sees why here and in the log (docs/operations.md, "Uninstall").
    readiness.addDetail("uninstall", [raw = owner.get()] { return raw->problem(); });
  }
  std::optional<kube::ExitDecision> exit_decision;
  health::ProbeHandler probe_handler(readiness);
  metrics::MetricsHandler metrics_handler(metrics, [&] {
    metrics.source_staleness.Set(static_cast<double>(source.staleness().count()));
    if (api_source != nullptr) {
      api_source->updateStaleGauges();
    }
    metrics.cache_entries.Set(static_cast<double>(tokens.size()));
  });

  Servers servers(io, config, handler, probe_handler, metrics_handler, metrics, clock);
  if (auto listening = servers.listen(config); !listening) {
    log->error("{}", listening.error().message);
    return 1;
  }
  servers.start();
  if (interception) {
    interception->start();
  }
  if (owner) {
    owner->start();
  }
  log->info("serving nmi={} probe={} metrics={}", servers.nmi.localEndpoint().port(),
            servers.probe.localEndpoint().port(), servers.metrics.localEndpoint().port());
  // The hand-over announcement and the SIGTERM sequence share one strand: the sequence cancels
  // the announcement's timer.
  auto control = asio::make_strand(io);
  const TimerPtr announce_timer = clock.makeTimer(control);
  if (!port_lock.held()) {
    asio::co_spawn(control,
                   announceWhenReady(readiness, port_lock, servers.nmi, *announce_timer, *log),
                   asio::detached);
    port_lock.onTaken([&servers] { servers.nmi.clearListenerPreference(); });
  }

  // SIGTERM/SIGINT: unless nmi is being uninstalled, keep serving until the DaemonSet's next nmi
  // on this node serves (up to --handover-wait-sec), then stop accepting, let requests in flight
  // finish (up to the grace period), then stop everything.
  asio::signal_set signals(io, SIGTERM, SIGINT);
  const TimerPtr handover_timer = clock.makeTimer(control);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) {
      return;
    }
    log->info("received signal {}, draining", signal);
    asio::co_spawn(
        control,
        [&]() -> Task<void> {
          if (owner) {
            // First, while nmi's credentials may still be valid; bounded (2 s).
            const kube::ExitDecision decision = co_await owner->decide();
            log->info("{}", decision.reason);
            exit_decision = decision;
            owner->stop();
          }
          announce_timer->wake();
          if (shouldAwaitSuccessor(config, me.daemonset, exit_decision)) {
            co_await awaitSuccessor(port_lock, clock, *handover_timer, config.server.handover_wait,
                                    *log);
          }
          co_await servers.drain(config.server.shutdown_grace);
          tokens.stop();
          identity_data->stop();
          log->info("drained, exiting");
          io.stop();
        },
        asio::detached);
  });

  runIoThreads(io, threads);
  if (interception) {
    interception->stop();  // the rules stay, unless nmi's DaemonSet is being removed
    if (exit_decision && exit_decision->action == kube::ExitAction::RemoveRules &&
        !removeRulesOnExit(config)) {
      return 1;
    }
  }
  return 0;
}

}  // namespace nmi::app
