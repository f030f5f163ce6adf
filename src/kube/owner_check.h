#pragma once

// Uninstall detection: on SIGTERM, nmi removes its iptables rules only when it saw its own
// DaemonSet exist and then saw it being deleted or gone (an uninstall); it keeps them on a
// restart, an upgrade or a node drain (the DaemonSet is still there), and whenever it is in
// doubt: a DaemonSet never seen (a misspelt --daemonset-name, the wrong POD_NAMESPACE, no RBAC),
// an API server that cannot be asked, a DaemonSet of the same name that is another object. nmi
// fails closed.
//
// "Its own" DaemonSet: the controller named in nmi's own pod's ownerReferences when POD_NAME is
// given and the pod is in the pod cache (no extra request or permission: nmi already watches its
// node's pods), else the first DaemonSet of the name seen existing. Objects are told apart by
// metadata.uid: a DaemonSet deleted and created again under the name is another object.
//
// Two sources of answers feed the decision, because an uninstall deletes nmi's ServiceAccount and
// RBAC objects within milliseconds of the DaemonSet, before the garbage collector gets to the
// pods: a request made after SIGTERM is then refused (401/403). So nmi watches its DaemonSet from
// start-up (one object: fieldSelector metadata.name) and keeps the history of what it saw; on
// SIGTERM it also GETs the DaemonSet (bounded), whose answer, when there is one, is the latest.
// docs/operations.md ("Uninstall") describes what the API server shows for each propagation
// policy.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"
#include "identity/types.h"
#include "kube/api_client.h"
#include "kube/store.h"

namespace nmi::kube {

// What one answer says about the DaemonSet of the name.
enum class OwnerState : std::uint8_t {
  Unknown,   // no answer (not yet listed, or the request failed)
  Present,   // exists, no deletionTimestamp
  Deleting,  // exists with metadata.deletionTimestamp (foreground or orphan deletion)
  Absent,    // the API server said it does not exist (404, a list without it, DELETED)
};

const char* ownerStateName(OwnerState state);

// One answer: the state, and the object's metadata.uid (Present and Deleting; Absent from a
// DELETED event carries the deleted object's uid, from a 404 or a list none).
struct OwnerObservation {
  OwnerState state = OwnerState::Unknown;
  std::string uid;
  bool operator==(const OwnerObservation&) const = default;
};

// Pure. Present or Deleting (metadata.deletionTimestamp set and not null) for a DaemonSet object.
OwnerState ownerStateOf(const nlohmann::json& object);
// Pure. ownerStateOf() with the object's uid.
OwnerObservation observationOf(const nlohmann::json& object);

// Pure. What a GET of the DaemonSet shows: 200 with a body that decodes → Present or Deleting
// (with its uid); 404 → Absent; anything else (401, 403, 5xx, a transport error, a timeout, a body
// that is not an object) → Unknown.
OwnerObservation observationFromGet(const Result<ApiResponse>& response);

// What nmi has seen of DaemonSets of its name since it started. Bounded: kMaxOwnersSeen objects.
struct OwnerHistory {
  struct Seen {
    std::string uid;
    bool deleting = false;  // seen with a deletionTimestamp
    bool gone = false;      // seen deleted, absent, or replaced by an object with another uid
    bool operator==(const Seen&) const = default;
  };
  bool answered = false;   // the API server answered at least once
  std::vector<Seen> seen;  // objects seen existing, the first one first
  OwnerObservation last;   // the latest answer (Unknown until one)
  bool operator==(const OwnerHistory&) const = default;
};

inline constexpr std::size_t kMaxOwnersSeen = 8;

// Pure. `history` with one more answer. Unknown changes nothing. Present/Deleting records the
// object as existing (a name is held by one object at a time, so every other object seen is
// gone); Absent with a uid marks that object gone, without one every object. The latest answer
// about an object wins, except that "deleting" is never undone. Past kMaxOwnersSeen, the
// second-oldest entry is dropped (the first is the fallback for "its own").
OwnerHistory observe(OwnerHistory history, const OwnerObservation& observation);

// What nmi's own pod (POD_NAME, from the pod cache) names as its controller.
struct PodController {
  bool known = false;  // the pod was found with a controller reference
  std::string kind;
  std::string name;
  std::string uid;
  bool operator==(const PodController&) const = default;
};

// Pure. The controller reference (ownerReferences[].controller) of nmi's pod; not known when
// there is no pod or no controller reference.
PodController podControllerOf(const std::optional<identity::PodInfo>& pod);

// The DaemonSet nmi was told is its own: POD_NAMESPACE (or the service account's namespace) and
// --daemonset-name.
struct OwnerTarget {
  std::string ns;
  std::string name;
};

enum class ExitAction : std::uint8_t { KeepRules, RemoveRules };

struct ExitDecision {
  ExitAction action = ExitAction::KeepRules;
  std::string reason;  // one line for the log
};

// Pure. The decision on SIGTERM, from the watch's history and the GET made then (`fetched`,
// folded in as the latest answer). Rules are removed only when nmi's own DaemonSet (`pod`'s
// controller when known, else the first one seen) was seen existing and is now seen being deleted
// or gone, and no other DaemonSet of the name exists now (deleted and created again: its pods take
// the rules over). Everything else keeps them: own DaemonSet present, never seen (whatever the
// API server says now: a 404 for a name nmi never saw is a misconfiguration, not an uninstall),
// no answer at all, or nmi's pod controlled by something other than the DaemonSet named.
ExitDecision decideOnExit(const OwnerHistory& watched, const OwnerObservation& fetched,
                          const OwnerTarget& target, const PodController& pod);

// Pure. Why an uninstall could not be detected now, for the log and /readyz ("" when it could,
// and while the first answer is awaited without an error): nmi's pod is controlled by another
// object, the watch fails (`watch_error`) before any answer, or its own DaemonSet was never seen.
std::string ownerProblem(const OwnerHistory& history, const OwnerTarget& target,
                         const PodController& pod, std::string_view watch_error);

// /apis/apps/v1/namespaces/<ns>/daemonsets
std::string daemonSetsPath(std::string_view ns);

// An ObjectStore folding the answers about one named DaemonSet into an OwnerHistory (objects
// with another name are ignored). A list without it, or a DELETED event, is Absent. Thread-safe.
class OwnerStore final : public ObjectStore {
 public:
  explicit OwnerStore(std::string name) : name_(std::move(name)) {}

  void beginReplace() override;
  Result<void> stage(const nlohmann::json& object) override;
  void commitReplace() override;
  void abortReplace() override;
  Result<void> apply(EventType type, const nlohmann::json& object) override;
  std::size_t size() const override;

  // The latest answer's state.
  OwnerState state() const;
  OwnerHistory history() const;

 private:
  const std::string name_;
  mutable std::mutex mu_;
  OwnerHistory history_;
  OwnerObservation staged_{OwnerState::Absent, ""};
};

struct OwnerWatchOptions {
  std::string ns;    // the DaemonSet's namespace (POD_NAMESPACE)
  std::string name;  // --daemonset-name
  // The GET made on SIGTERM: the whole request, connection included.
  std::chrono::milliseconds check_timeout{2'000};
  std::chrono::milliseconds head_timeout{10'000};
  std::chrono::milliseconds watch_silence_timeout{90'000};
  // A problem (ownerProblem) is logged at warn when it appears, at the first check (this long
  // after start, when nmi's pod is in the pod cache) and again every reminder_interval while it
  // lasts.
  std::chrono::milliseconds first_check{5'000};
  std::chrono::milliseconds reminder_interval{600'000};
};

// Watches one DaemonSet (a Reflector over OwnerStore) and makes the exit decision. start() spawns
// the watch and the reminder on strands of `executor`; stop() (also the destructor) cancels them.
// decide() may be awaited on any strand of the executor, once or more. `pod_controller` (may be
// empty) reads nmi's own pod from the pod cache; it is called on the watch's strands and must be
// thread-safe; its last known answer is kept (an orphaned pod loses its ownerReferences). `clock`
// must outlive the executor's work. Thread-safe.
class OwnerWatch {
 public:
  OwnerWatch(boost::asio::any_io_executor executor, ApiTransportPtr transport,
             OwnerWatchOptions options, const Clock& clock, std::shared_ptr<spdlog::logger> logger,
             std::function<PodController()> pod_controller = {});
  ~OwnerWatch();
  OwnerWatch(const OwnerWatch&) = delete;
  OwnerWatch& operator=(const OwnerWatch&) = delete;
  OwnerWatch(OwnerWatch&&) = delete;
  OwnerWatch& operator=(OwnerWatch&&) = delete;

  void start();
  void stop();

  // The watch's latest state.
  OwnerState watched() const;
  // ownerProblem() now: why rules would stay on exit although asked for ("" if they would not).
  std::string problem() const;
  // nmi has seen its own DaemonSet exist: an uninstall can be detected.
  bool armed() const;

  // GETs the DaemonSet (options.check_timeout) and decides with decideOnExit.
  Task<ExitDecision> decide();

 private:
  struct State;
  std::shared_ptr<State> state_;
  boost::asio::any_io_executor executor_;
};

}  // namespace nmi::kube
