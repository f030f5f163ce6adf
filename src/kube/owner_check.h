#pragma once

// Uninstall detection: on SIGTERM, nmi removes its iptables rules only when its own DaemonSet is
// gone or being deleted (an uninstall), and keeps them on a restart, an upgrade or a node drain
// (the DaemonSet is still there). Any doubt keeps the rules: nmi fails closed.
//
// Two observations feed the decision, because an uninstall deletes nmi's ServiceAccount and RBAC
// objects within milliseconds of the DaemonSet, before the garbage collector gets to the pods: a
// request made after SIGTERM is then refused (401/403). So nmi watches its DaemonSet from start-up
// (one object: fieldSelector metadata.name) and remembers the last state the watch showed; on
// SIGTERM it also GETs the DaemonSet (bounded), whose answer, when there is one, wins.
// docs/operations.md ("Uninstall") describes what the API server shows for each propagation
// policy.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"
#include "kube/api_client.h"
#include "kube/store.h"

namespace nmi::kube {

// What is known about the DaemonSet.
enum class OwnerState : std::uint8_t {
  Unknown,   // nothing reliable (not yet listed, or the request failed)
  Present,   // exists, no deletionTimestamp
  Deleting,  // exists with metadata.deletionTimestamp (foreground or orphan deletion)
  Absent,    // the API server said it does not exist (404, a list without it, DELETED)
};

const char* ownerStateName(OwnerState state);

// Pure. Present or Deleting for a DaemonSet object (metadata.deletionTimestamp set and not null).
OwnerState ownerStateOf(const nlohmann::json& object);

// Pure. The state a GET of the DaemonSet shows: 200 with a body that decodes → Present or
// Deleting; 404 → Absent; anything else (401, 403, 5xx, a transport error, a timeout, a body that
// is not an object) → Unknown.
OwnerState ownerStateFromGet(const Result<ApiResponse>& response);

enum class ExitAction : std::uint8_t { KeepRules, RemoveRules };

struct ExitDecision {
  ExitAction action = ExitAction::KeepRules;
  std::string reason;  // one line for the log
};

// Pure. `fetched` (the GET made on SIGTERM) wins when it is known; otherwise the watch's last
// state decides. Rules are removed only on Absent or Deleting; Unknown and Present keep them.
ExitDecision decideOnExit(OwnerState watched, OwnerState fetched);

// /apis/apps/v1/namespaces/<ns>/daemonsets
std::string daemonSetsPath(std::string_view ns);

// An ObjectStore holding the state of one named DaemonSet (objects with another name are
// ignored). Unknown until the first list; a list without it, or a DELETED event, makes it
// Absent. Thread-safe.
class OwnerStore final : public ObjectStore {
 public:
  explicit OwnerStore(std::string name) : name_(std::move(name)) {}

  void beginReplace() override;
  Result<void> stage(const nlohmann::json& object) override;
  void commitReplace() override;
  void abortReplace() override;
  Result<void> apply(EventType type, const nlohmann::json& object) override;
  std::size_t size() const override;

  OwnerState state() const;

 private:
  const std::string name_;
  mutable std::mutex mu_;
  OwnerState state_ = OwnerState::Unknown;
  OwnerState staged_ = OwnerState::Absent;
};

struct OwnerWatchOptions {
  std::string ns;    // the DaemonSet's namespace (POD_NAMESPACE)
  std::string name;  // --daemonset-name
  // The GET made on SIGTERM: the whole request, connection included.
  std::chrono::milliseconds check_timeout{2'000};
  std::chrono::milliseconds head_timeout{10'000};
  std::chrono::milliseconds watch_silence_timeout{90'000};
};

// Watches one DaemonSet (a Reflector over OwnerStore) and makes the exit decision. start() spawns
// the watch on a strand of `executor`; stop() (also the destructor) cancels it. decide() may be
// awaited on any strand of the executor, once or more. `clock` must outlive the executor's work.
class OwnerWatch {
 public:
  OwnerWatch(boost::asio::any_io_executor executor, ApiTransportPtr transport,
             OwnerWatchOptions options, const Clock& clock, std::shared_ptr<spdlog::logger> logger);
  ~OwnerWatch();
  OwnerWatch(const OwnerWatch&) = delete;
  OwnerWatch& operator=(const OwnerWatch&) = delete;
  OwnerWatch(OwnerWatch&&) = delete;
  OwnerWatch& operator=(OwnerWatch&&) = delete;

  void start();
  void stop();

  // The watch's last state.
  OwnerState watched() const;

  // GETs the DaemonSet (options.check_timeout) and decides with decideOnExit.
  Task<ExitDecision> decide();

 private:
  struct State;
  std::shared_ptr<State> state_;
  boost::asio::any_io_executor executor_;
};

}  // namespace nmi::kube
