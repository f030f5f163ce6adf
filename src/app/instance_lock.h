#pragma once

// One nmi per port on a node. nmi binds its ports with SO_REUSEPORT so that the next version can
// take over during a rolling update; without a check, a second nmi started by mistake (another
// release, a debugging run, a DaemonSet of another namespace) would silently take half of the
// pods' connections, whatever its node or configuration. So each nmi holds a lock named after
// its port: an abstract Unix socket ("\0nmi-port-<port>"), which exists in the node's network
// namespace, vanishes with the process (no stale files after a crash), and answers whoever
// connects with a line naming its holder. A second nmi reads that line and goes on only when it
// is a hand-over within the same DaemonSet on the same node; otherwise it refuses to start.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "common/clock.h"
#include "common/result.h"

namespace nmi::app {

// Who holds (or wants) a port.
struct InstanceIdentity {
  std::string daemonset;  // "<namespace>/<name>" of the DaemonSet nmi runs in; "" when unknown
  std::string node;
  std::string version;
  std::int64_t pid = 0;
  // Random, chosen at start: in containers every nmi is pid 1 of its own PID namespace.
  std::string instance;
  bool operator==(const InstanceIdentity&) const = default;
};

// One JSON line. Pure.
std::string encodeIdentity(const InstanceIdentity& identity);
// The holder's line, or nullopt when it is not one (bounded: the caller reads at most 4 KiB).
std::optional<InstanceIdentity> decodeIdentity(std::string_view line);

enum class LockVerdict {
  Refuse,    // someone else serves this port: do not start
  HandOver,  // the same DaemonSet on the same node (a rolling update): start; take the lock later
};

struct LockDecision {
  LockVerdict verdict = LockVerdict::Refuse;
  std::string reason;  // one line for the log
};

// Pure. `holder` is what the lock's holder said (nullopt: no answer that could be read). A
// hand-over needs both to name the same DaemonSet (not empty) and the same node.
LockDecision decideSecondInstance(const InstanceIdentity& mine,
                                  const std::optional<InstanceIdentity>& holder);

// Pure. Whether `next`, what the successor's socket said (nullopt: none), is an nmi that may take
// over from `mine`: the same DaemonSet (not empty), the same node, another process (pid or
// instance differ).
bool isSuccessor(const InstanceIdentity& mine, const std::optional<InstanceIdentity>& next);

// The lock of one port. acquire() runs once at start-up, before the event loop (it may block
// for a few milliseconds on the local socket). Thread-compatible.
class InstanceLock {
 public:
  // The hand-over's retries wait on `clock`, which must outlive the lock.
  InstanceLock(boost::asio::io_context& io, std::uint16_t port, InstanceIdentity mine,
               const Clock& clock);
  ~InstanceLock();
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;

  // Takes the lock, or decides with decideSecondInstance() when it is held. On HandOver the lock
  // is taken as soon as the holder exits (checked every `retry`). Errors: PermissionDenied
  // (refused: the message names the holder), Unavailable (the socket cannot be created).
  Result<void> acquire(std::chrono::milliseconds retry = std::chrono::milliseconds(500));

  // Whether this process holds the lock now.
  bool held() const;

  // Called once, on the event loop, when this process (a hand-over successor) takes the lock
  // because the previous nmi has gone. Set before the event loop runs.
  void onTaken(std::function<void()> callback);

  // A hand-over successor that serves (its rules in place, its caches synced) says so, so that
  // the holder, told to stop, drains only once someone else answers pods (a `kubectl delete pod`
  // of nmi: the DaemonSet's next pod starts after the SIGTERM). Binds a second abstract socket,
  // "\0nmi-port-<port>-next", until this process takes the lock itself. No-op when it holds the
  // lock, has announced already, or another successor holds that socket.
  void announceSuccessor();

  // The holder's question: does a successor serve now? Asks "-next" (a local socket; answers at
  // once or refuses at once; bounded to 200 ms).
  bool successorServing() const;

  // The successor socket's name of a port (without the leading NUL).
  static std::string successorName(std::uint16_t port);

  // The abstract socket name of a port (without the leading NUL), for logs and tests.
  static std::string name(std::uint16_t port);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace nmi::app
