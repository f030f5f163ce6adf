#include "kube/owner_check.h"

#include <algorithm>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <fmt/format.h>

#include "common/cancellation.h"
#include "common/log.h"
#include "kube/query.h"
#include "kube/reflector.h"

namespace nmi::kube {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kMaxDaemonSetBytes = std::size_t{1} << 20U;

// metadata[key] as a string, or "" when absent or not a string.
std::string metaString(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) {
    return "";
  }
  const auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) {
    return "";
  }
  const auto value = meta->find(key);
  return value != meta->end() && value->is_string() ? value->get<std::string>() : "";
}

std::string nameOf(const nlohmann::json& object) {
  return metaString(object, "name");
}

bool podMismatch(const PodController& pod, const OwnerTarget& target) {
  return pod.known && (pod.kind != "DaemonSet" || pod.name != target.name);
}

// nmi's own DaemonSet among those seen: the pod's controller when known, else the first one.
const OwnerHistory::Seen* ownEntry(const OwnerHistory& history, const PodController& pod) {
  if (pod.known) {
    const auto it = std::find_if(history.seen.begin(), history.seen.end(),
                                 [&pod](const auto& seen) { return seen.uid == pod.uid; });
    return it == history.seen.end() ? nullptr : &*it;
  }
  return history.seen.empty() ? nullptr : &history.seen.front();
}

std::string where(const OwnerTarget& target) {
  return target.ns + "/" + target.name;
}

// "DaemonSet nmi", as the pod's controller reference names it.
std::string controllerText(const PodController& pod) {
  return (pod.kind.empty() ? std::string("an object of no kind") : pod.kind) + " " + pod.name;
}

std::string uidText(std::string_view uid) {
  return uid.empty() ? std::string("no uid") : "uid " + std::string(uid);
}

ExitDecision keep(std::string reason) {
  return {ExitAction::KeepRules, std::move(reason) + ": keeping the iptables rules"};
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

OwnerObservation observationOf(const nlohmann::json& object) {
  return {ownerStateOf(object), metaString(object, "uid")};
}

OwnerObservation observationFromGet(const Result<ApiResponse>& response) {
  if (!response) {
    return {};
  }
  if (response->status == 404) {
    return {OwnerState::Absent, ""};
  }
  if (response->status != 200) {
    return {};
  }
  const auto object = nlohmann::json::parse(response->body, nullptr, false);
  if (object.is_discarded() || !object.is_object() || nameOf(object).empty()) {
    return {};
  }
  return observationOf(object);
}

PodController podControllerOf(const std::optional<identity::PodInfo>& pod) {
  if (!pod) {
    return {};
  }
  const auto it = std::find_if(pod->owners.begin(), pod->owners.end(),
                               [](const identity::OwnerReference& ref) { return ref.controller; });
  if (it == pod->owners.end()) {
    return {};
  }
  return {true, it->kind, it->name, it->uid};
}

OwnerHistory observe(OwnerHistory history, const OwnerObservation& observation) {
  switch (observation.state) {
    case OwnerState::Unknown:
      return history;
    case OwnerState::Present:
    case OwnerState::Deleting: {
      auto it = std::find_if(history.seen.begin(), history.seen.end(),
                             [&](const auto& seen) { return seen.uid == observation.uid; });
      if (it == history.seen.end()) {
        if (history.seen.size() >= kMaxOwnersSeen) {
          history.seen.erase(history.seen.begin() + 1);
        }
        history.seen.push_back(OwnerHistory::Seen{observation.uid});
        it = history.seen.end() - 1;
      }
      // The latest answer about an object wins (a relist served from a lagging watch cache may
      // contradict an earlier one; the doubt then keeps the rules), except that a deletion
      // once seen cannot be undone.
      it->gone = false;
      it->deleting = it->deleting || observation.state == OwnerState::Deleting;
      for (auto& seen : history.seen) {
        if (seen.uid != observation.uid) {
          seen.gone = true;  // the name is held by this object now
        }
      }
      break;
    }
    case OwnerState::Absent:
      for (auto& seen : history.seen) {
        if (observation.uid.empty() || seen.uid == observation.uid) {
          seen.gone = true;
        }
      }
      break;
  }
  history.answered = true;
  history.last = observation;
  return history;
}

ExitDecision decideOnExit(const OwnerHistory& watched, const OwnerObservation& fetched,
                          const OwnerTarget& target, const PodController& pod) {
  const OwnerHistory history = observe(watched, fetched);
  const std::string source =
      fetched.state != OwnerState::Unknown ? "the API server says" : "last watched:";
  if (podMismatch(pod, target)) {
    return keep(
        fmt::format("nmi's pod is controlled by {}, not daemonset {} (check "
                    "--daemonset-name)",
                    controllerText(pod), where(target)));
  }
  const OwnerHistory::Seen* own = ownEntry(history, pod);
  if (own == nullptr) {
    if (!history.answered) {
      return keep(
          fmt::format("daemonset {} state unknown (no answer from the API server)", where(target)));
    }
    return keep(fmt::format(
        "daemonset {}{} was never seen present since nmi started ({} {}; fail closed: check "
        "--daemonset-name and POD_NAMESPACE)",
        where(target), pod.known ? " (" + uidText(pod.uid) + ", nmi's pod's controller)" : "",
        source, ownerStateName(history.last.state)));
  }
  if (!own->deleting && !own->gone) {
    return keep(fmt::format("daemonset {} {} present (a restart, an upgrade or a drain)",
                            where(target), source));
  }
  if (history.last.state == OwnerState::Present && history.last.uid != own->uid) {
    return keep(fmt::format(
        "daemonset {} was deleted and created again ({} → {}): its new pods take the rules over",
        where(target), uidText(own->uid), uidText(history.last.uid)));
  }
  return {
      ExitAction::RemoveRules,
      fmt::format("daemonset {} {} {} ({}, seen present since nmi started: an uninstall): "
                  "removing the iptables rules",
                  where(target), source, own->gone ? "gone" : "being deleted", uidText(own->uid))};
}

std::string ownerProblem(const OwnerHistory& history, const OwnerTarget& target,
                         const PodController& pod, std::string_view watch_error) {
  const std::string outcome = "the iptables rules stay on exit, also on an uninstall";
  if (podMismatch(pod, target)) {
    return fmt::format(
        "nmi's pod is controlled by {}, not daemonset {}: {} (check "
        "--daemonset-name)",
        controllerText(pod), where(target), outcome);
  }
  if (!history.answered) {
    if (watch_error.empty()) {
      return "";
    }
    return fmt::format("daemonset {} cannot be read ({}): {}", where(target), watch_error, outcome);
  }
  if (ownEntry(history, pod) != nullptr) {
    return "";
  }
  if (pod.known) {
    return fmt::format("daemonset {} ({}, nmi's pod's controller) never seen since nmi started: {}",
                       where(target), uidText(pod.uid), outcome);
  }
  return fmt::format(
      "daemonset {} not found (never seen since nmi started): {} (check --daemonset-name and "
      "POD_NAMESPACE)",
      where(target), outcome);
}

std::string daemonSetsPath(std::string_view ns) {
  return "/apis/apps/v1/namespaces/" + pathSegment(ns) + "/daemonsets";
}

// ---- OwnerStore ----------------------------------------------------------------------------

void OwnerStore::beginReplace() {
  const std::lock_guard lock(mu_);
  staged_ = {OwnerState::Absent, ""};
}

Result<void> OwnerStore::stage(const nlohmann::json& object) {
  if (nameOf(object) != name_) {
    return {};
  }
  const std::lock_guard lock(mu_);
  staged_ = observationOf(object);
  return {};
}

void OwnerStore::commitReplace() {
  const std::lock_guard lock(mu_);
  history_ = observe(std::move(history_), staged_);
}

void OwnerStore::abortReplace() {
  const std::lock_guard lock(mu_);
  staged_ = {OwnerState::Absent, ""};
}

Result<void> OwnerStore::apply(EventType type, const nlohmann::json& object) {
  if (nameOf(object) != name_) {
    return {};
  }
  OwnerObservation observation = observationOf(object);
  if (type == EventType::Deleted) {
    observation.state = OwnerState::Absent;
  }
  const std::lock_guard lock(mu_);
  history_ = observe(std::move(history_), observation);
  return {};
}

std::size_t OwnerStore::size() const {
  const std::lock_guard lock(mu_);
  return history_.last.state == OwnerState::Present || history_.last.state == OwnerState::Deleting
             ? 1
             : 0;
}

OwnerState OwnerStore::state() const {
  const std::lock_guard lock(mu_);
  return history_.last.state;
}

OwnerHistory OwnerStore::history() const {
  const std::lock_guard lock(mu_);
  return history_;
}

// ---- OwnerWatch ----------------------------------------------------------------------------

struct OwnerWatch::State {
  State(ApiTransportPtr api, OwnerWatchOptions opts, const Clock& c,
        std::shared_ptr<spdlog::logger> log, std::function<PodController()> pod_lookup)
      : transport(std::move(api)),
        options(std::move(opts)),
        target{options.ns, options.name},
        clock(c),
        logger(log ? std::move(log) : nmi::logger("nmi.kube")),
        lookup(std::move(pod_lookup)),
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
    reflector =
        std::make_unique<Reflector>(*transport, store, std::move(r), c, std::move(hooks), logger);
  }

  // nmi's pod's controller: a fresh answer when there is one, else the last known.
  PodController podController() {
    PodController now = lookup ? lookup() : PodController{};
    const std::lock_guard lock(mu);
    if (now.known) {
      pod = std::move(now);
    }
    return pod;
  }

  std::string problem() {
    const PodController controller = podController();
    return ownerProblem(store.history(), target, controller, reflector->lastError());
  }

  void onChange() {
    const OwnerObservation now = store.history().last;
    {
      const std::lock_guard lock(mu);
      if (now != last_logged) {
        last_logged = now;
        logger->info("daemonset {} {} ({})", where(target), ownerStateName(now.state),
                     uidText(now.uid));
      }
    }
    check(false);
  }

  // Logs a problem at warn when it appears or changes, and when `remind` while it lasts; logs at
  // info when it clears.
  void check(bool remind) {
    const std::string now = problem();
    const std::lock_guard lock(mu);
    if (now.empty()) {
      if (!last_problem.empty()) {
        logger->info("daemonset {} seen: an uninstall will remove the iptables rules",
                     where(target));
      }
    } else if (now != last_problem || remind) {
      logger->warn("uninstall detection: {}", now);
    }
    last_problem = now;
  }

  static Task<void> run(std::shared_ptr<State> state) {
    co_await state->reflector->run(state->stop);
  }

  // The first check once nmi's pod is likely in the pod cache, then reminders.
  static Task<void> remind(std::shared_ptr<State> state) {
    std::chrono::milliseconds delay = state->options.first_check;
    for (bool first = true;; first = false) {
      if (!co_await sleepFor(state->clock, delay, &state->stop)) {
        co_return;
      }
      state->check(!first);
      delay = state->options.reminder_interval;
    }
  }

  const ApiTransportPtr transport;
  const OwnerWatchOptions options;
  const OwnerTarget target;
  const Clock& clock;
  const std::shared_ptr<spdlog::logger> logger;
  const std::function<PodController()> lookup;
  OwnerStore store;
  std::unique_ptr<Reflector> reflector;
  CancellationSignal stop;
  std::mutex mu;
  OwnerObservation last_logged;
  std::string last_problem;
  PodController pod;
  bool started = false;
};

OwnerWatch::OwnerWatch(asio::any_io_executor executor, ApiTransportPtr transport,
                       OwnerWatchOptions options, const Clock& clock,
                       std::shared_ptr<spdlog::logger> logger,
                       std::function<PodController()> pod_controller)
    : state_(std::make_shared<State>(std::move(transport), std::move(options), clock,
                                     std::move(logger), std::move(pod_controller))),
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
  state_->logger->info(
      "watching daemonset {} (on SIGTERM the rules are removed only if nmi saw it exist and then "
      "saw it being deleted or gone)",
      where(state_->target));
  asio::co_spawn(asio::make_strand(executor_), State::run(state_), asio::detached);
  asio::co_spawn(asio::make_strand(executor_), State::remind(state_), asio::detached);
}

void OwnerWatch::stop() {
  state_->stop.cancel();
}

OwnerState OwnerWatch::watched() const {
  return state_->store.state();
}

std::string OwnerWatch::problem() const {
  return state_->problem();
}

bool OwnerWatch::armed() const {
  const PodController pod = state_->podController();
  const OwnerHistory history = state_->store.history();
  return !podMismatch(pod, state_->target) && ownEntry(history, pod) != nullptr;
}

Task<ExitDecision> OwnerWatch::decide() {
  const std::shared_ptr<State> state = state_;  // alive while this runs
  const std::string target =
      daemonSetsPath(state->options.ns) + "/" + pathSegment(state->options.name);
  const auto response = co_await state->transport->get(target, kMaxDaemonSetBytes,
                                                       state->options.check_timeout, nullptr);
  const OwnerObservation fetched = observationFromGet(response);
  if (fetched.state == OwnerState::Unknown) {
    state->logger->warn(
        "cannot read daemonset {} on exit: {}", where(state->target),
        response ? fmt::format("HTTP {}", response->status) : response.error().message);
  }
  const PodController pod = state->podController();
  co_return decideOnExit(state->store.history(), fetched, state->target, pod);
}

}  // namespace nmi::kube
