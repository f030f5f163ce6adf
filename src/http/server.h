#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"

namespace nmi::metrics {
class NmiMetrics;
}

namespace nmi::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

// The path of a request's target: what comes before '?', undecoded. For fixed local endpoints
// (probes, metrics); the IMDS port canonicalises its targets (imds/request_target).
std::string_view targetPath(const Request& request);

// A text/plain answer with its length set.
Response plainText(boost::beast::http::status status, std::string body, unsigned version);

// Watches a request's connection for the client closing it. Armed on demand: only requests that
// wait (for identity data, a token, the proxy) pay for it.
class ClientWatch {
 public:
  virtual ~ClientWatch() = default;
  // The signal that fires when the client goes away. Watching starts when an operation first
  // listens to it (CancellationSignal::add, from the connection's strand): a request answered
  // without waiting costs nothing.
  virtual CancellationSignal* arm() = 0;
};

struct RequestContext {
  boost::asio::ip::address peer;
  std::uint16_t peer_port = 0;
  MonotonicTime received_at;
  ClientWatch* watch = nullptr;  // null when nothing watches the connection (tests)
  // The signal that fires when the client closes its connection while the handler runs (so a
  // waiting request stops waiting); null when there is no watch.
  CancellationSignal* clientGone() const { return watch != nullptr ? watch->arm() : nullptr; }
};

// Answers one request. Runs on the connection's strand; may suspend for a long time (a request
// may wait for its identity); must not block the thread.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual Task<Response> handle(Request& request, const RequestContext& context) = 0;
};

struct ServerLimits {
  std::size_t max_header_bytes = std::size_t{8} * 1024;  // request line + header fields
  std::size_t max_body_bytes = std::size_t{64} * 1024;
  std::chrono::milliseconds header_timeout{10'000};  // first byte to end of request
  std::chrono::milliseconds idle_timeout{60'000};    // between requests on a keep-alive connection
  std::chrono::milliseconds write_timeout{10'000};
  // Connections over these limits are answered at once (429 with Retry-After: 1 over the
  // per-peer limit, 503 over the total) and closed; they never wait.
  int max_connections = 4096;
  int max_connections_per_peer = 128;
  // Refusals being written and lingered at once at most (beyond, a connection is just closed),
  // and how long one may take.
  int max_refusals_in_flight = 256;
  std::chrono::milliseconds refusal_linger{1'000};
};

// An HTTP/1.1 server on Boost.Beast: one coroutine per connection on its own strand, keep-alive,
// the limits above, SO_REUSEPORT (a second nmi can bind the same port during an upgrade), and a
// graceful drain. Thread-safe: the io_context may be run by several threads. Time (request
// arrival, the drain's deadlines, the pause after a failed accept) comes from `clock`, which must
// outlive the server.
class Server {
 public:
  Server(boost::asio::io_context& io, std::string name, Handler& handler, ServerLimits limits,
         metrics::NmiMetrics* metrics, const Clock& clock = systemClock());
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens (port 0 = any free port). Errors: Unavailable (address in use, ...).
  Result<void> listen(const std::string& address, std::uint16_t port);
  // The bound endpoint (after listen).
  boost::asio::ip::tcp::endpoint localEndpoint() const;
  // Starts accepting.
  void start();
  // Hand-over (SO_REUSEPORT), for the next nmi while the previous one still listens on the same
  // port: new connections go to this listener only, so that none is queued on the one about to
  // close (closing a listener resets what is queued on it unless net.ipv4.tcp_migrate_req is 1).
  // A classic BPF program on the port's reuseport group picks the group's second socket, which
  // during a hand-over is this one (the kernel appends sockets to the group in bind order, the
  // previous nmi's first); with a single socket, or if the program picks none, the kernel falls
  // back to its hash. Errors: Unavailable (no listener, or the kernel refuses the program).
  Result<void> preferThisListener();
  // Removes that program from the group (the previous nmi has gone), so that the next hand-over
  // starts from the kernel's hash again. Asynchronous: runs on the listener's strand.
  void clearListenerPreference();
  // Stops accepting, closes idle connections, lets requests in flight finish (their responses
  // carry Connection: close), and after `grace` closes whatever is left. Completes when every
  // connection is gone (woken by each connection's end, no polling). Runs on a strand (or a
  // single-threaded executor); one drain at a time.
  Task<void> drain(std::chrono::milliseconds grace);

  std::size_t connectionCount() const;

 private:
  struct Connection;
  Task<void> acceptLoop();
  void startSession(boost::asio::ip::tcp::socket socket);
  // Answers a connection over a limit (429 per peer, 503 overall) and closes it.
  void refuse(boost::asio::ip::tcp::socket socket, bool per_peer);
  Task<void> refusal(boost::asio::ip::tcp::socket socket, bool per_peer);
  void acceptPendingAndClose();
  Task<void> session(std::shared_ptr<Connection> connection);
  Task<Response> runHandler(Request& request, const RequestContext& context);
  // Counts the connection in, or returns why it is refused.
  const char* admit(const boost::asio::ip::address& peer);
  // True once the listener is closed (queued connections taken) and no connection is left.
  bool drained() const;
  void release(const std::shared_ptr<Connection>& connection);

  boost::asio::io_context& io_;
  const std::string name_;
  Handler& handler_;
  const ServerLimits limits_;
  metrics::NmiMetrics* const metrics_;
  const Clock& clock_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;

  mutable std::mutex mu_;
  bool draining_ = false;
  bool listener_closed_ = false;  // set by acceptPendingAndClose(), once the queue is taken
  TimerPtr drain_timer_;          // the drain's, while one runs: woken when it may be done
  std::unordered_set<std::shared_ptr<Connection>> connections_;
  std::unordered_map<std::string, int> per_peer_;
  int refusing_ = 0;
};

}  // namespace nmi::http
