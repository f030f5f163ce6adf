#include "app/instance_lock.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <system_error>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "common/log.h"
#include "common/task.h"

namespace nmi::app {

namespace asio = boost::asio;
using boost::system::error_code;
using local = asio::local::stream_protocol;

namespace {

constexpr std::size_t kMaxLine = 4096;

// sockaddr_un of an abstract socket: sun_path = '\0' + name; the length counts the name only.
std::pair<sockaddr_un, socklen_t> abstractAddress(const std::string& name) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::size_t n = std::min(name.size(), sizeof(addr.sun_path) - 1);
  std::memcpy(addr.sun_path + 1, name.data(), n);
  return {addr, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n)};
}

// A bound, listening socket on the abstract name; -1 with errno when that fails.
int bindAbstract(const std::string& name) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  const auto [addr, len] = abstractAddress(name);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API.
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 || ::listen(fd, 16) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// What the holder of `name` says about itself (nullopt: no holder, or no readable answer).
// Blocking, bounded to about one second.
std::optional<InstanceIdentity> askHolder(const std::string& name, timeval tv = timeval{1, 0}) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return std::nullopt;
  }
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const auto [addr, len] = abstractAddress(name);
  std::string line;
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
    std::array<char, 512> buf{};
    while (line.size() < kMaxLine && line.find('\n') == std::string::npos) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) {
        break;
      }
      line.append(buf.data(), static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  if (line.empty()) {
    return std::nullopt;
  }
  return decodeIdentity(line.substr(0, line.find('\n')));
}

std::string describe(const InstanceIdentity& id) {
  return fmt::format("pid {}, daemonset {}, node {}, version {}", id.pid,
                     id.daemonset.empty() ? "(none)" : id.daemonset,
                     id.node.empty() ? "(none)" : id.node, id.version);
}

}  // namespace

std::string encodeIdentity(const InstanceIdentity& identity) {
  nlohmann::json j = {{"daemonset", identity.daemonset},
                      {"node", identity.node},
                      {"version", identity.version},
                      {"pid", identity.pid},
                      {"instance", identity.instance}};
  return j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) + "\n";
}

std::optional<InstanceIdentity> decodeIdentity(std::string_view line) {
  if (line.size() > kMaxLine) {
    return std::nullopt;
  }
  const auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return std::nullopt;
  }
  const auto str = [&j](const char* key) -> std::optional<std::string> {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return std::nullopt;
    }
    return it->get<std::string>();
  };
  const auto daemonset = str("daemonset");
  const auto node = str("node");
  const auto version = str("version");
  const auto pid = j.find("pid");
  if (!daemonset || !node || !version || pid == j.end() || !pid->is_number_integer()) {
    return std::nullopt;
  }
  // "instance" is absent from the lines of nmi versions before it existed.
  return InstanceIdentity{*daemonset, *node, *version, pid->get<std::int64_t>(),
                          str("instance").value_or("")};
}

LockDecision decideSecondInstance(const InstanceIdentity& mine,
                                  const std::optional<InstanceIdentity>& holder) {
  if (!holder) {
    return {LockVerdict::Refuse,
            "another process holds nmi's port lock and does not say who it is"};
  }
  if (mine.daemonset.empty() || holder->daemonset.empty()) {
    return {LockVerdict::Refuse,
            fmt::format("another nmi serves this port ({}); a hand-over needs both to run in the "
                        "same DaemonSet (--daemonset-name and POD_NAMESPACE)",
                        describe(*holder))};
  }
  if (mine.daemonset != holder->daemonset || mine.node != holder->node) {
    return {LockVerdict::Refuse,
            fmt::format("another nmi serves this port ({}); this one is daemonset {} on node {}",
                        describe(*holder), mine.daemonset, mine.node)};
  }
  return {LockVerdict::HandOver,
          fmt::format("hand-over from the nmi of the same daemonset ({}): serving beside it until "
                      "it exits",
                      describe(*holder))};
}

bool isSuccessor(const InstanceIdentity& mine, const std::optional<InstanceIdentity>& next) {
  return next && !mine.daemonset.empty() && next->daemonset == mine.daemonset &&
         next->node == mine.node && (next->pid != mine.pid || next->instance != mine.instance);
}

struct InstanceLock::State : std::enable_shared_from_this<State> {
  State(asio::io_context& context, std::uint16_t p, InstanceIdentity id, const Clock& clock)
      : io(context),
        port(p),
        mine(std::move(id)),
        acceptor(context),
        next_strand(asio::make_strand(context)),
        next_acceptor(next_strand),
        retry_strand(asio::make_strand(context)),
        timer(clock.makeTimer(retry_strand)) {}

  // Serves the holder line on the bound socket `fd`.
  void serve(int fd) {
    error_code ec;
    acceptor.assign(local(), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    held.store(true);
    // The successor's socket is for the next hand-over now.
    asio::post(next_strand, [self = shared_from_this()] {
      error_code ignored;
      self->next_acceptor.close(ignored);
    });
    asio::co_spawn(io, acceptLoop(shared_from_this(), acceptor), asio::detached);
  }

  // Serves this process's identity line to whoever connects to `on`.
  static Task<void> acceptLoop(std::shared_ptr<State> self, local::acceptor& on) {
    const std::string line = encodeIdentity(self->mine);
    for (;;) {
      error_code ec;
      local::socket peer = co_await on.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !on.is_open()) {
          co_return;
        }
        continue;
      }
      co_await asio::async_write(peer, asio::buffer(line),
                                 asio::redirect_error(asio::use_awaitable, ec));
      peer.close(ec);
    }
  }

  // Hand-over: take the lock when the holder has gone.
  static Task<void> retryLoop(std::shared_ptr<State> self, std::chrono::milliseconds every) {
    const std::string name = InstanceLock::name(self->port);
    for (;;) {
      if (co_await self->timer->waitFor(every)) {
        co_return;  // woken: the lock is being destroyed
      }
      const int fd = bindAbstract(name);
      if (fd >= 0) {
        logger("nmi")->info("the previous nmi on port {} has gone: port lock taken", self->port);
        self->serve(fd);
        if (self->on_taken) {
          self->on_taken();
        }
        co_return;
      }
    }
  }

  asio::io_context& io;
  const std::uint16_t port;
  const InstanceIdentity mine;
  local::acceptor acceptor;
  // "-next" while a successor that serves, until it holds the lock; used on next_strand only.
  asio::strand<asio::io_context::executor_type> next_strand;
  local::acceptor next_acceptor;
  // The hand-over's retries; used on retry_strand only, woken by the destructor.
  asio::strand<asio::io_context::executor_type> retry_strand;
  const TimerPtr timer;
  std::atomic<bool> held{false};
  std::atomic<bool> announced{false};
  std::function<void()> on_taken;
};

InstanceLock::InstanceLock(asio::io_context& io, std::uint16_t port, InstanceIdentity mine,
                           const Clock& clock)
    : state_(std::make_shared<State>(io, port, std::move(mine), clock)) {}

InstanceLock::~InstanceLock() {
  error_code ec;
  state_->timer->wake();
  state_->acceptor.close(ec);
  state_->next_acceptor.close(ec);
}

void InstanceLock::onTaken(std::function<void()> callback) {
  state_->on_taken = std::move(callback);
}

std::string InstanceLock::name(std::uint16_t port) {
  return fmt::format("nmi-port-{}", port);
}

std::string InstanceLock::successorName(std::uint16_t port) {
  return name(port) + "-next";
}

bool InstanceLock::held() const {
  return state_->held.load();
}

void InstanceLock::announceSuccessor() {
  if (state_->held.load() || state_->announced.exchange(true)) {
    return;
  }
  const int fd = bindAbstract(successorName(state_->port));
  if (fd < 0) {
    logger("nmi")->info("another successor announced itself on @{} ({}); not announcing",
                        successorName(state_->port),
                        std::error_code(errno, std::system_category()).message());
    return;
  }
  asio::post(state_->next_strand, [state = state_, fd] {
    error_code ec;
    if (state->held.load()) {  // took the lock meanwhile
      ::close(fd);
      return;
    }
    state->next_acceptor.assign(local(), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    logger("nmi")->info("serving: told the previous nmi on port {} it may drain", state->port);
    asio::co_spawn(state->next_strand, State::acceptLoop(state, state->next_acceptor),
                   asio::detached);
  });
}

bool InstanceLock::successorServing() const {
  return isSuccessor(state_->mine, askHolder(successorName(state_->port), timeval{0, 200'000}));
}

Result<void> InstanceLock::acquire(std::chrono::milliseconds retry) {
  const std::string lock_name = name(state_->port);
  // A holder that is exiting may vanish between a failed bind and the question: try again.
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int fd = bindAbstract(lock_name);
    if (fd >= 0) {
      state_->serve(fd);
      return {};
    }
    if (errno != EADDRINUSE) {
      return makeError(ErrorCode::Unavailable,
                       fmt::format("cannot create the port lock @{}: {}", lock_name,
                                   std::error_code(errno, std::system_category()).message()));
    }
    const std::optional<InstanceIdentity> holder = askHolder(lock_name);
    if (!holder && attempt < 2) {
      ::usleep(50'000);
      continue;
    }
    const LockDecision decision = decideSecondInstance(state_->mine, holder);
    if (decision.verdict == LockVerdict::Refuse) {
      return makeError(ErrorCode::PermissionDenied, decision.reason);
    }
    logger("nmi")->info("{}", decision.reason);
    asio::co_spawn(state_->retry_strand, State::retryLoop(state_, retry), asio::detached);
    return {};
  }
  return makeError(ErrorCode::PermissionDenied, "the port lock is held");
}

}  // namespace nmi::app
