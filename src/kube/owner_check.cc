#include "kube/owner_check.h"

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <fmt/format.h>

#include "common/cancellation.h"
#include "common/log.h"
#include "kube/query.h"
#include "kube/reflector.h"
#include "kube/sleeper.h"

namespace nmi::kube {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kMaxDaemonSetBytes = std::size_t{1} << 20U;

// The object's metadata.name, or "" when it has none.
std::string nameOf(const nlohmann::json& object) {
  if (!object.is_object()) {
    return "";
  }
  const auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) {
    return "";
  }
  const auto name = meta->find("name");
  return name != meta->end() && name->is_string() ? name->get<std::string>() : "";
}

}  // namespace

const char* ownerStateName(OwnerState state) {
  switch (state) {
    case OwnerState::Unknown:
      return "unknown";
    case OwnerState::Present:
      return "present";
    case OwnerState::Deleting:
      return "being deleted";
    case OwnerState::Absent:
      return "gone";
  }
  return "unknown";
}

OwnerState ownerStateOf(const nlohmann::json& object) {
  if (object.is_object()) {
    const auto meta = object.find("metadata");
    if (meta != object.end() && meta->is_object()) {
      const auto deletion = meta->find("deletionTimestamp");
      if (deletion != meta->end() && !deletion->is_null()) {
        return OwnerState::Deleting;
      }
    }
  }
  return OwnerState::Present;
}

OwnerState ownerStateFromGet(const Result<ApiResponse>& response) {
  if (!response) {
    return OwnerState::Unknown;
  }
  if (response->status == 404) {
    return OwnerState::Absent;
  }
  if (response->status != 200) {
    return OwnerState::Unknown;
  }
  const auto object = nlohmann::json::parse(response->body, nullptr, false);
  if (object.is_discarded() || !object.is_object() || nameOf(object).empty()) {
    return OwnerState::Unknown;
  }
  return ownerStateOf(object);
}

ExitDecision decideOnExit(OwnerState watched, OwnerState fetched) {
  const OwnerState basis = fetched != OwnerState::Unknown ? fetched : watched;
  const char* source = fetched != OwnerState::Unknown ? "the API server says" : "last watched:";
  switch (basis) {
    case OwnerState::Absent:
    case OwnerState::Deleting:
      return {ExitAction::RemoveRules,
              fmt::format("daemonset {} {} (an uninstall): removing the iptables rules", source,
                          ownerStateName(basis))};
    case OwnerState::Present:
      return {ExitAction::KeepRules, fmt::format("daemonset {} present (a restart, an upgrade or a "
                                                 "drain): keeping the iptables rules",
                                                 source)};
    case OwnerState::Unknown:
      break;
  }
  return {ExitAction::KeepRules, "daemonset state unknown: keeping the iptables rules"};
}

std::string daemonSetsPath(std::string_view ns) {
  return "/apis/apps/v1/namespaces/" + pathSegment(ns) + "/daemonsets";
}

// ---- OwnerStore ----------------------------------------------------------------------------

void OwnerStore::beginReplace() {
  const std::lock_guard lock(mu_);
  staged_ = OwnerState::Absent;
}

Result<void> OwnerStore::stage(const nlohmann::json& object) {
  if (nameOf(object) != name_) {
    return {};
  }
  const std::lock_guard lock(mu_);
  staged_ = ownerStateOf(object);
  return {};
}

void OwnerStore::commitReplace() {
  const std::lock_guard lock(mu_);
  state_ = staged_;
}

void OwnerStore::abortReplace() {
  const std::lock_guard lock(mu_);
  staged_ = OwnerState::Absent;
}

Result<void> OwnerStore::apply(EventType type, const nlohmann::json& object) {
  if (nameOf(object) != name_) {
    return {};
  }
  const std::lock_guard lock(mu_);
  state_ = type == EventType::Deleted ? OwnerState::Absent : ownerStateOf(object);
  return {};
}

std::size_t OwnerStore::size() const {
  const std::lock_guard lock(mu_);
  return state_ == OwnerState::Present || state_ == OwnerState::Deleting ? 1 : 0;
}

OwnerState OwnerStore::state() const {
  const std::lock_guard lock(mu_);
  return state_;
}

// ---- OwnerWatch ----------------------------------------------------------------------------

struct OwnerWatch::State {
  State(ApiTransportPtr api, OwnerWatchOptions opts, const Clock& c,
        std::shared_ptr<spdlog::logger> log)
      : transport(std::move(api)),
        options(std::move(opts)),
        logger(log ? std::move(log) : nmi::logger("nmi.kube")),
        store(options.name) {
    ReflectorOptions r;
    r.resource = "daemonset " + options.ns + "/" + options.name;
    r.path = daemonSetsPath(options.ns);
    r.field_selector = "metadata.name=" + options.name;
    r.paginate = false;
    r.max_list_bytes = kMaxDaemonSetBytes;
    r.max_event_bytes = kMaxDaemonSetBytes;
    r.watch_timeouts.head = options.head_timeout;
    r.watch_timeouts.silence = options.watch_silence_timeout;
    ReflectorHooks hooks;
    hooks.changed = [this] { onChange(); };
    reflector = std::make_unique<Reflector>(*transport, store, std::move(r), c, sleeper,
                                            std::move(hooks), logger);
  }

  void onChange() {
    const OwnerState now = store.state();
    const std::lock_guard lock(mu);
    if (now != last_logged) {
      last_logged = now;
      logger->info("daemonset {}/{} {}", options.ns, options.name, ownerStateName(now));
    }
  }

  static Task<void> run(std::shared_ptr<State> state) {
    co_await state->reflector->run(state->stop);
  }

  const ApiTransportPtr transport;
  const OwnerWatchOptions options;
  const std::shared_ptr<spdlog::logger> logger;
  AsioSleeper sleeper;
  OwnerStore store;
  std::unique_ptr<Reflector> reflector;
  CancellationSignal stop;
  std::mutex mu;
  OwnerState last_logged = OwnerState::Unknown;
  bool started = false;
};

OwnerWatch::OwnerWatch(asio::any_io_executor executor, ApiTransportPtr transport,
                       OwnerWatchOptions options, const Clock& clock,
                       std::shared_ptr<spdlog::logger> logger)
    : state_(std::make_shared<State>(std::move(transport), std::move(options), clock,
                                     std::move(logger))),
      executor_(std::move(executor)) {}

OwnerWatch::~OwnerWatch() {
  stop();
}

void OwnerWatch::start() {
  {
    const std::lock_guard lock(state_->mu);
    if (state_->started) {
      return;
    }
    state_->started = true;
  }
  state_->logger->info("watching daemonset {}/{} (on SIGTERM: rules removed only if it is gone)",
                       state_->options.ns, state_->options.name);
  asio::co_spawn(asio::make_strand(executor_), State::run(state_), asio::detached);
}

void OwnerWatch::stop() {
  state_->stop.cancel();
}

OwnerState OwnerWatch::watched() const {
  return state_->store.state();
}

Task<ExitDecision> OwnerWatch::decide() {
  const std::shared_ptr<State> state = state_;  // alive while this runs
  const std::string target =
      daemonSetsPath(state->options.ns) + "/" + pathSegment(state->options.name);
  const auto response = co_await state->transport->get(target, kMaxDaemonSetBytes,
                                                       state->options.check_timeout, nullptr);
  const OwnerState fetched = ownerStateFromGet(response);
  if (fetched == OwnerState::Unknown) {
    state->logger->warn(
        "cannot read daemonset {}/{} on exit: {}", state->options.ns, state->options.name,
        response ? fmt::format("HTTP {}", response->status) : response.error().message);
  }
  co_return decideOnExit(state->store.state(), fetched);
}

}  // namespace nmi::kube
