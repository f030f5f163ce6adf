#include "http/server.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>

#include "http/request_head.h"
#include "metrics/nmi_metrics.h"

namespace nmi::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using boost::asio::ip::tcp;
using boost::system::error_code;

struct Server::Connection {
  explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  asio::ip::address peer;
  std::uint16_t peer_port = 0;
  std::string peer_key;
  // Between two requests of a keep-alive connection (a response was sent; the next request has
  // not started). A drain closes such connections at once; a new connection keeps its grace
  // period to send its first request. Guarded by Server::mu_.
  bool idle = false;
};

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

Response errorResponse(bhttp::status status, std::string_view description, unsigned version,
                       std::string_view error = "invalid_request") {
  Response res{status, version};
  res.set(bhttp::field::content_type, "application/json; charset=utf-8");
  res.body() = std::string(R"({"error":")") + std::string(error) + R"(","error_description":")" +
               std::string(description) + "\"}\n";
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

// True when the peer has closed its side (recv would return 0) or reset the connection.
bool peerClosed(int fd) {
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) {
    return true;
  }
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// The ClientWatch of one request: a readiness wait on the connection's socket, started when an
// operation first listens to the signal arm() returned (a cache hit never does, so it never
// touches the socket); a readable socket whose peek says EOF (or an error) means the client went
// away. Lives in the session coroutine's frame; runs on the connection's strand, where the
// handler's operations listen.
class SocketWatch final : public ClientWatch {
 public:
  SocketWatch(tcp::socket& socket, bool allowed)
      : socket_(socket), allowed_(allowed), signal_(std::make_shared<CancellationSignal>()) {}
  SocketWatch(const SocketWatch&) = delete;
  SocketWatch& operator=(const SocketWatch&) = delete;
  ~SocketWatch() override { disarm(); }

  CancellationSignal* arm() override {
    if (allowed_ && !hooked_) {
      hooked_ = true;
      signal_->onFirstListener([this] { watch(); });
    }
    return signal_.get();
  }
  // Ends the readiness wait (its handler then sees operation_aborted).
  void disarm() {
    signal_->onFirstListener(nullptr);
    if (armed_) {
      armed_ = false;
      error_code ec;
      socket_.cancel(ec);
    }
  }
  bool fired() const { return signal_->cancelled(); }

 private:
  void watch() {
    if (armed_) {
      return;
    }
    armed_ = true;
    socket_.async_wait(tcp::socket::wait_read,
                       [fd = socket_.native_handle(), gone = signal_](error_code ec) {
                         if (!ec && peerClosed(fd)) {
                           gone->cancel();
                         }
                       });
  }

  tcp::socket& socket_;
  const bool allowed_;
  bool hooked_ = false;
  bool armed_ = false;
  std::shared_ptr<CancellationSignal> signal_;
};

}  // namespace

std::string_view targetPath(const Request& request) {
  const std::string_view target = request.target();
  return target.substr(0, target.find('?'));
}

Response plainText(bhttp::status status, std::string body, unsigned version) {
  Response res{status, version};
  res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Server::Server(asio::io_context& io, std::string name, Handler& handler, ServerLimits limits,
               metrics::NmiMetrics* metrics, const Clock& clock)
    : io_(io),
      name_(std::move(name)),
      handler_(handler),
      limits_(limits),
      metrics_(metrics),
      clock_(clock) {}

Server::~Server() = default;

Result<void> Server::listen(const std::string& address, std::uint16_t port) {
  error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  if (ec) {
    return makeError(ErrorCode::InvalidArgument, "invalid listen address " + address);
  }
  const tcp::endpoint endpoint{ip, port};
  auto acceptor = std::make_unique<tcp::acceptor>(asio::make_strand(io_));
  const auto fail = [&](std::string_view what) {
    return makeError(ErrorCode::Unavailable, fmt::format("{}: cannot {} {}:{}: {}", name_, what,
                                                         address, port, ec.message()));
  };
  if (acceptor->open(endpoint.protocol(), ec); ec) {
    return fail("open");
  }
  acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  // A second nmi (the next version during a rolling update) can bind the same port; the kernel
  // spreads new connections between both until the old one drains and exits.
  acceptor->set_option(ReusePort(true), ec);
  if (acceptor->bind(endpoint, ec); ec) {
    return fail("bind");
  }
  if (acceptor->listen(asio::socket_base::max_listen_connections, ec); ec) {
    return fail("listen on");
  }
  acceptor_ = std::move(acceptor);
  return {};
}

tcp::endpoint Server::localEndpoint() const {
  error_code ec;
  return acceptor_ ? acceptor_->local_endpoint(ec) : tcp::endpoint{};
}

void Server::start() {
  asio::co_spawn(acceptor_->get_executor(), acceptLoop(), asio::detached);
}

Result<void> Server::preferThisListener() {
  if (!acceptor_) {
    return makeError(ErrorCode::Unavailable, name_ + ": not listening");
  }
  // One instruction: return 1, the index of the group's second socket.
  std::array<sock_filter, 1> code{{BPF_STMT(BPF_RET | BPF_K, 1)}};  // NOLINT(hicpp-signed-bitwise)
  const sock_fprog program{static_cast<std::uint16_t>(code.size()), code.data()};
  if (::setsockopt(acceptor_->native_handle(), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program,
                   sizeof program) != 0) {
    return makeError(ErrorCode::Unavailable,
                     fmt::format("{}: cannot steer new connections to this listener: {}", name_,
                                 error_code(errno, boost::system::system_category()).message()));
  }
  return {};
}

void Server::clearListenerPreference() {
  if (!acceptor_) {
    return;
  }
  // On the acceptor's strand: a drain may be closing the listener (its descriptor must not be
  // used after that, nor one that reused its number).
  asio::post(acceptor_->get_executor(), [this] {
    if (acceptor_->is_open()) {
      const int unused = 0;
      // Fails with ENOENT when no program is attached: nothing to undo.
      (void)::setsockopt(acceptor_->native_handle(), SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused,
                         sizeof unused);
    }
  });
}

std::size_t Server::connectionCount() const {
  const std::lock_guard lock(mu_);
  return connections_.size();
}

const char* Server::admit(const asio::ip::address& peer) {
  const std::lock_guard lock(mu_);
  if (static_cast<int>(connections_.size()) >= limits_.max_connections) {
    return "max_connections";
  }
  int& count = per_peer_[peer.to_string()];
  if (count >= limits_.max_connections_per_peer) {
    return "max_connections_per_peer";
  }
  ++count;
  return nullptr;
}

void Server::release(const std::shared_ptr<Connection>& connection) {
  const std::lock_guard lock(mu_);
  if (connections_.erase(connection) == 0) {
    return;
  }
  if (auto it = per_peer_.find(connection->peer_key); it != per_peer_.end() && --it->second <= 0) {
    per_peer_.erase(it);
  }
  if (metrics_ != nullptr) {
    metrics_->connections_active.Decrement();
  }
  if (drain_timer_ && connections_.empty()) {
    drain_timer_->wake();
  }
}

Task<void> Server::acceptLoop() {
  for (;;) {
    error_code ec;
    const asio::any_io_executor strand = asio::make_strand(io_);
    tcp::socket socket =
        co_await acceptor_->async_accept(strand, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) {
        co_return;
      }
      // Out of file descriptors or a transient error: back off briefly instead of spinning.
      spdlog::warn("{}: accept failed: {}", name_, ec.message());
      const std::chrono::milliseconds pause(50);
      co_await sleepFor(clock_, pause, nullptr);
      continue;
    }
    startSession(std::move(socket));
  }
}

void Server::startSession(tcp::socket socket) {
  error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) {
    return;
  }
  if (const char* reason = admit(remote.address()); reason != nullptr) {
    if (metrics_ != nullptr) {
      metrics_->connections_rejected.Add({{"reason", reason}}).Increment();
    }
    refuse(std::move(socket), std::string_view(reason) == "max_connections_per_peer");
    return;
  }
  socket.set_option(tcp::no_delay(true), ec);
  auto connection = std::make_shared<Connection>(std::move(socket));
  connection->peer = remote.address();
  connection->peer_port = remote.port();
  connection->peer_key = remote.address().to_string();
  {
    const std::lock_guard lock(mu_);
    connections_.insert(connection);
  }
  if (metrics_ != nullptr) {
    metrics_->connections_active.Increment();
  }
  asio::co_spawn(connection->stream.get_executor(), session(connection), asio::detached);
}

void Server::refuse(tcp::socket socket, bool per_peer) {
  {
    const std::lock_guard lock(mu_);
    if (refusing_ >= limits_.max_refusals_in_flight) {
      error_code ec;
      socket.close(ec);  // a flood: no answer can be afforded
      return;
    }
    ++refusing_;
  }
  const auto executor = socket.get_executor();
  asio::co_spawn(executor, refusal(std::move(socket), per_peer), asio::detached);
}

Task<void> Server::refusal(tcp::socket socket, bool per_peer) {
  beast::tcp_stream stream(std::move(socket));
  Response res =
      per_peer ? errorResponse(bhttp::status::too_many_requests,
                               "Too many connections from this address", 11, "too_many_requests")
               : errorResponse(bhttp::status::service_unavailable, "Too many connections", 11,
                               "service_unavailable");
  res.set(bhttp::field::retry_after, "1");
  error_code ec;
  stream.expires_after(limits_.refusal_linger);
  co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    // A lingering close: the client's request is still unread, and closing a socket with unread
    // data resets the connection, which can destroy the answer before the client reads it. Read
    // and drop what comes (bounded in bytes and time) until the client closes.
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 4096> sink{};
    std::size_t drained = 0;
    while (!ec && drained < (std::size_t{64} << 10U)) {
      drained += co_await stream.async_read_some(asio::buffer(sink),
                                                 asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  stream.socket().close(ec);
  const std::lock_guard lock(mu_);
  --refusing_;
}

void Server::acceptPendingAndClose() {
  // Runs on the acceptor's strand. Connections already in the kernel's accept queue would be
  // reset by close(); with SO_REUSEPORT new ones go to the other listener (the next nmi), so
  // take what is queued, serve it (one request each), then close.
  error_code ec;
  acceptor_->cancel(ec);
  acceptor_->non_blocking(true, ec);
  for (;;) {
    tcp::socket socket(asio::make_strand(io_));
    acceptor_->accept(socket, ec);
    if (ec) {
      break;
    }
    startSession(std::move(socket));
  }
  acceptor_->close(ec);
  const std::lock_guard lock(mu_);
  listener_closed_ = true;
  if (drain_timer_) {
    drain_timer_->wake();
  }
}

bool Server::drained() const {
  const std::lock_guard lock(mu_);
  return (listener_closed_ || !acceptor_) && connections_.empty();
}

Task<void> Server::session(std::shared_ptr<Connection> connection) {
  auto& stream = connection->stream;
  beast::flat_buffer buffer(limits_.max_header_bytes + limits_.max_body_bytes + 4096);
  error_code ec;
  for (bool first = true;; first = false) {
    {
      const std::lock_guard lock(mu_);
      connection->idle = !first;
      if (draining_ && !first) {
        break;
      }
    }
    // Idle: wait (up to the idle timeout) for the first bytes of the next request.
    if (buffer.size() == 0) {
      stream.expires_after(limits_.idle_timeout);
      const std::size_t n = co_await stream.async_read_some(
          buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        break;
      }
      buffer.commit(n);
    }
    {
      const std::lock_guard lock(mu_);
      connection->idle = false;
    }
    // The rest of the request must arrive within the header timeout (slow clients lose). The
    // whole head is buffered first so that its raw bytes can be checked: Beast would silently
    // unfold obs-fold lines, which a strict peer (IMDS) might read differently.
    stream.expires_after(limits_.header_timeout);
    std::optional<Refusal> refusal;
    for (;;) {
      const auto data = buffer.data();
      const HeadScan scan =
          scanHead(std::string_view(static_cast<const char*>(data.data()), data.size()), limits_);
      if (scan.kind != HeadScan::Kind::NeedMore) {
        refusal = scan.refusal;
        break;
      }
      const std::size_t n = co_await stream.async_read_some(
          buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        break;
      }
      buffer.commit(n);
    }
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    parser.body_limit(limits_.max_body_bytes);
    // The head alone first (not eager: the parser stops after it), so that its rules decide
    // before any body byte does, however the bytes arrived (request_head.h, inspectRequest).
    parser.eager(false);
    if (!ec && !refusal) {
      // The head is buffered: parse it (and whatever body arrived) without another round trip
      // through the executor; read the rest of a body only when there is one.
      std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      refusal = checkParsedHead(parser, ec);
      ec = {};
      if (!refusal && !parser.is_done()) {
        parser.eager(true);
        if (buffer.size() > 0) {
          used = parser.put(buffer.data(), ec);
          buffer.consume(used);
          if (ec == bhttp::error::need_more) {
            ec = {};
          }
        }
        if (!ec && !parser.is_done()) {
          co_await bhttp::async_read(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
      }
    }
    if (ec && !refusal) {
      refusal = refusalForReadError(ec);
    }
    if (ec || refusal) {
      if (refusal) {
        Response res = errorResponse(refusal->status, refusal->description, 11);
        stream.expires_after(limits_.write_timeout);
        co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      }
      break;
    }
    Request request = parser.release();
    // While the handler waits (for identity data, a token), notice the client leaving. Not when
    // further pipelined bytes are buffered: those are the next request, not a close.
    SocketWatch watch(stream.socket(), buffer.size() == 0);
    const RequestContext context{connection->peer, connection->peer_port, clock_.monotonicNow(),
                                 &watch};
    stream.expires_never();
    Response response = co_await runHandler(request, context);
    watch.disarm();
    bool draining = false;
    {
      const std::lock_guard lock(mu_);
      draining = draining_;
    }
    const bool keep_alive =
        response.keep_alive() && request.keep_alive() && !draining && !watch.fired();
    response.keep_alive(keep_alive);
    const bool head = request.method() == bhttp::verb::head;
    // The answer to HEAD is the head only. A handler that knows the length of the body it is not
    // sending (a proxied HEAD) sets Content-Length and leaves the body empty.
    if (!head || !response.body().empty() || !response.has_content_length()) {
      response.prepare_payload();
    }
    stream.expires_after(limits_.write_timeout);
    if (head) {
      bhttp::response_serializer<bhttp::string_body> serializer{response};
      co_await bhttp::async_write_header(stream, serializer,
                                         asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await bhttp::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec || !keep_alive) {
      break;
    }
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.socket().close(ec);
  release(connection);
}

Task<Response> Server::runHandler(Request& request, const RequestContext& context) {
  std::optional<Response> response;
  try {
    response.emplace(co_await handler_.handle(request, context));
  } catch (const std::exception& e) {
    spdlog::error("{}: handler failed for {} {}: {}", name_, std::string(request.method_string()),
                  std::string(request.target().substr(0, 200)), e.what());
  }
  if (!response) {
    co_return errorResponse(bhttp::status::internal_server_error, "Internal error",
                            request.version());
  }
  co_return std::move(*response);
}

Task<void> Server::drain(std::chrono::milliseconds grace) {
  auto executor = co_await asio::this_coro::executor;
  // Woken by release() when the last connection goes and by acceptPendingAndClose(); a wake that
  // comes between a check and the wait is kept for the wait (Timer), so none is lost.
  const TimerPtr timer = clock_.makeTimer(executor);
  std::vector<std::shared_ptr<Connection>> idle;
  {
    const std::lock_guard lock(mu_);
    draining_ = true;
    drain_timer_ = timer;
    for (const auto& c : connections_) {
      if (c->idle) {
        idle.push_back(c);
      }
    }
  }
  if (acceptor_) {
    asio::post(acceptor_->get_executor(), [this] { acceptPendingAndClose(); });
  }
  for (const auto& c : idle) {
    asio::post(c->stream.get_executor(), [c] { c->stream.cancel(); });
  }
  const MonotonicTime deadline = clock_.monotonicNow() + grace;
  // Also waits for acceptPendingAndClose(): the connections it takes from the queue are served
  // before the drain ends (the caller stops the event loop right after).
  while (!drained()) {
    if (!co_await timer->waitUntil(deadline)) {
      break;
    }
  }
  std::vector<std::shared_ptr<Connection>> left;
  {
    const std::lock_guard lock(mu_);
    left.assign(connections_.begin(), connections_.end());
  }
  for (const auto& c : left) {
    asio::post(c->stream.get_executor(), [c] {
      error_code ignored;
      c->stream.socket().close(ignored);
    });
  }
  const MonotonicTime hard_deadline = clock_.monotonicNow() + std::chrono::seconds(2);
  while (!drained()) {
    if (!co_await timer->waitUntil(hard_deadline)) {
      break;
    }
  }
  const std::lock_guard lock(mu_);
  drain_timer_.reset();
}

}  // namespace nmi::http
