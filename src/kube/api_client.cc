#include "kube/api_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <functional>
#include <limits>
#include <utility>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>

#include "http/io_error.h"
#include "http/tls.h"
#include "http/transport_clock.h"
#include "kube/watch_decode.h"

namespace nmi::kube {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using boost::asio::ip::tcp;
using boost::system::error_code;

struct BeastApiTransport::Connection {
  Connection(const asio::any_io_executor& executor, asio::ssl::context& tls)
      : stream(executor, tls) {}
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream); }
  void close() {
    error_code ec;
    tcp().socket().close(ec);
  }

  beast::ssl_stream<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  MonotonicTime idle_since;
};

namespace {

constexpr std::size_t kHeaderLimit = std::size_t{64} << 10U;
constexpr std::size_t kStreamChunk = std::size_t{64} << 10U;
constexpr int kKeepAliveIdleSeconds = 30;
constexpr int kKeepAliveIntervalSeconds = 10;
constexpr int kKeepAliveProbes = 3;

Error cancelledError() {
  return makeError(ErrorCode::Cancelled, "API request cancelled");
}

// Cancellation runs `action` on `executor` (the coroutine's strand), so that it never races with
// the coroutine's own calls on the I/O object it touches.
CancellationSignal::Callback onStrand(const asio::any_io_executor& executor,
                                      std::function<void()> action) {
  return [executor, action = std::move(action)] { asio::post(executor, action); };
}

bool cancelled(const CancellationSignal* cancel) {
  return cancel != nullptr && cancel->cancelled();
}

void enableKeepAlive(tcp::socket& socket) {
  error_code ec;
  socket.set_option(asio::socket_base::keep_alive(true), ec);
  const int fd = socket.native_handle();
  const int idle = kKeepAliveIdleSeconds;
  const int interval = kKeepAliveIntervalSeconds;
  const int probes = kKeepAliveProbes;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
}

std::optional<std::chrono::seconds> retryAfterOf(const bhttp::fields& fields) {
  const auto it = fields.find(bhttp::field::retry_after);
  if (it == fields.end()) {
    return std::nullopt;
  }
  return parseRetryAfter(it->value());
}

bool isIpAddress(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

Result<std::shared_ptr<BeastApiTransport>> BeastApiTransport::create(asio::any_io_executor executor,
                                                                     const RestConfig& config,
                                                                     TransportOptions options,
                                                                     const Clock& clock) {
  http::TlsClientOptions tls_options;
  tls_options.ca_pem = config.ca_pem;
  tls_options.client_cert_pem = config.client_cert_pem;
  tls_options.client_key_pem = config.client_key_pem;
  auto tls = http::makeTlsClientContext(tls_options);
  if (!tls) {
    return makeError(tls.error().code, "API server TLS: " + tls.error().message);
  }
  BearerToken token;
  if (!config.token_file.empty()) {
    token = BearerToken::fromFile(config.token_file, clock);
    if (auto first = token.current(); !first) {
      return makeError(first.error().code, first.error().message);
    }
  } else if (!config.token.empty()) {
    token = BearerToken::fixed(config.token);
  }
  return std::shared_ptr<BeastApiTransport>(new BeastApiTransport(
      std::move(executor), config, std::move(options), std::move(*tls), std::move(token)));
}

BeastApiTransport::BeastApiTransport(asio::any_io_executor executor, const RestConfig& config,
                                     TransportOptions options,
                                     std::unique_ptr<asio::ssl::context> tls, BearerToken token)
    : executor_(std::move(executor)),
      server_(config.server),
      verify_name_(config.tls_server_name.empty() ? config.server.host : config.tls_server_name),
      options_(std::move(options)),
      tls_(std::move(tls)),
      token_(std::move(token)) {}

BeastApiTransport::~BeastApiTransport() {
  const std::lock_guard lock(mu_);
  for (auto& connection : idle_) {
    connection->close();
  }
}

Result<std::string> BeastApiTransport::authorization() {
  auto token = token_.current();
  if (!token) {
    return token.error();
  }
  return token->empty() ? std::string{} : "Bearer " + *token;
}

BeastApiTransport::ConnectionPtr BeastApiTransport::takeIdle() {
  const std::lock_guard lock(mu_);
  const auto now = http::transportClock().monotonicNow();
  while (!idle_.empty()) {
    ConnectionPtr connection = std::move(idle_.back());
    idle_.pop_back();
    if (now - connection->idle_since < options_.idle_ttl && connection->tcp().socket().is_open()) {
      return connection;
    }
    connection->close();
  }
  return nullptr;
}

void BeastApiTransport::putIdle(ConnectionPtr connection) {
  connection->idle_since = http::transportClock().monotonicNow();
  const std::lock_guard lock(mu_);
  if (idle_.size() >= options_.max_idle) {
    connection->close();
    return;
  }
  idle_.push_back(std::move(connection));
}

Task<Result<BeastApiTransport::ConnectionPtr>> BeastApiTransport::connect(
    MonotonicTime head_deadline, CancellationSignal* cancel) {
  auto executor = co_await asio::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(executor);
  DeadlineWatch resolve_deadline(http::transportClock(), executor, head_deadline,
                                 [resolver] { resolver->cancel(); });
  error_code ec;
  tcp::resolver::results_type endpoints;
  {
    const CancelRegistration hook(cancel, onStrand(executor, [resolver] { resolver->cancel(); }));
    const std::string port = std::to_string(server_.port);
    endpoints = co_await resolver->async_resolve(server_.host, port,
                                                 asio::redirect_error(asio::use_awaitable, ec));
  }
  resolve_deadline.disarm();
  if (cancelled(cancel)) {
    co_return cancelledError();
  }
  if (ec) {
    co_return http::ioError(ec, fmt::format("resolve {}", server_.host),
                            ErrorCode::ResourceExhausted);
  }
  auto connection = std::make_shared<Connection>(executor_, *tls_);
  const CancelRegistration hook(cancel, onStrand(executor, [connection] { connection->close(); }));
  connection->tcp().expires_at(
      std::min(head_deadline, http::transportClock().monotonicNow() + options_.connect_timeout));
  co_await connection->tcp().async_connect(endpoints,
                                           asio::redirect_error(asio::use_awaitable, ec));
  if (cancelled(cancel)) {
    co_return cancelledError();
  }
  if (ec) {
    co_return http::ioError(ec, fmt::format("connect {}", server_.authority()),
                            ErrorCode::ResourceExhausted);
  }
  enableKeepAlive(connection->tcp().socket());
  if (!isIpAddress(verify_name_)) {
    // SNI (SSL_set_tlsext_host_name is a macro with an old-style cast).
    SSL_ctrl(connection->stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME,
             TLSEXT_NAMETYPE_host_name, const_cast<char*>(verify_name_.c_str()));
  }
  connection->stream.set_verify_callback(asio::ssl::host_name_verification(verify_name_));
  connection->tcp().expires_at(head_deadline);
  co_await connection->stream.async_handshake(asio::ssl::stream_base::client,
                                              asio::redirect_error(asio::use_awaitable, ec));
  if (cancelled(cancel)) {
    co_return cancelledError();
  }
  if (ec) {
    co_return http::ioError(ec, fmt::format("TLS handshake with {}", server_.authority()),
                            ErrorCode::ResourceExhausted);
  }
  co_return connection;
}

Task<Result<ApiResponse>> BeastApiTransport::getOnce(const std::string& target,
                                                     std::size_t max_body, MonotonicTime deadline,
                                                     CancellationSignal* cancel) {
  auto auth = authorization();
  if (!auth) {
    co_return auth.error();
  }
  bhttp::request<bhttp::empty_body> request{bhttp::verb::get, server_.target + target, 11};
  request.set(bhttp::field::host, server_.authority());
  request.set(bhttp::field::user_agent, options_.user_agent);
  request.set(bhttp::field::accept, "application/json");
  if (!auth->empty()) {
    request.set(bhttp::field::authorization, *auth);
  }
  request.keep_alive(true);
  auto executor = co_await asio::this_coro::executor;

  for (int attempt = 0;; ++attempt) {
    // The retry after a failed pooled connection goes on a new one: the other pooled connections
    // are as old, and a server that went away closed them all.
    ConnectionPtr connection = attempt == 0 ? takeIdle() : nullptr;
    const bool reused = connection != nullptr;
    if (!reused) {
      auto fresh = co_await connect(deadline, cancel);
      if (!fresh) {
        co_return fresh.error();
      }
      connection = std::move(*fresh);
    }
    const CancelRegistration hook(cancel,
                                  onStrand(executor, [connection] { connection->close(); }));
    error_code ec;
    connection->tcp().expires_at(deadline);
    co_await bhttp::async_write(connection->stream, request,
                                asio::redirect_error(asio::use_awaitable, ec));
    bhttp::response_parser<bhttp::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(std::max(max_body, kMaxErrorBodyBytes));
    if (!ec) {
      // Head first: Beast 1.74 reading head and body in one go forgets a Content-Length over the
      // body limit (and string_body reserves that length).
      co_await bhttp::async_read_header(connection->stream, connection->buffer, parser,
                                        asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec) {
      const auto length = parser.content_length();
      if (length && *length > std::max(max_body, kMaxErrorBodyBytes)) {
        ec = bhttp::error::body_limit;
      } else if (!parser.is_done()) {
        co_await bhttp::async_read(connection->stream, connection->buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    if (cancelled(cancel)) {
      connection->close();
      co_return cancelledError();
    }
    if (ec) {
      connection->close();
      // A pooled connection the server closed meanwhile fails at once: retry on a new one.
      if (reused && attempt == 0 && ec != beast::error::timeout && ec != bhttp::error::body_limit) {
        continue;
      }
      co_return http::ioError(ec, fmt::format("GET {}", server_.authority()),
                              ErrorCode::ResourceExhausted);
    }
    auto& response = parser.get();
    ApiResponse out;
    out.status = response.result_int();
    out.retry_after = retryAfterOf(response.base());
    out.body = std::move(response.body());
    const bool keep = response.keep_alive();
    if (out.status >= 200 && out.status < 300 && out.body.size() > max_body) {
      connection->close();
      co_return makeError(ErrorCode::ResourceExhausted,
                          fmt::format("GET: answer larger than {} bytes", max_body));
    }
    if (out.status < 200 || out.status >= 300) {
      out.body.resize(std::min(out.body.size(), kMaxErrorBodyBytes));
    }
    if (keep) {
      putIdle(std::move(connection));
    } else {
      connection->close();
    }
    co_return out;
  }
}

Task<Result<ApiResponse>> BeastApiTransport::get(std::string target, std::size_t max_body,
                                                 std::chrono::milliseconds timeout,
                                                 CancellationSignal* cancel) {
  const MonotonicTime deadline = http::transportClock().monotonicNow() + timeout;
  auto result = co_await getOnce(target, max_body, deadline, cancel);
  if (result && result->status == 401 && token_.isFile()) {
    // The token may have been rotated since it was last read: re-read it and retry once.
    token_.invalidate();
    result = co_await getOnce(target, max_body, deadline, cancel);
  }
  co_return result;
}

Task<Result<ApiResponse>> BeastApiTransport::watchOnce(const std::string& target,
                                                       std::size_t max_line, WatchTimeouts timeouts,
                                                       WatchHandler& handler,
                                                       CancellationSignal* cancel,
                                                       bool& unauthorized) {
  unauthorized = false;
  auto auth = authorization();
  if (!auth) {
    co_return auth.error();
  }
  const MonotonicTime head_deadline = http::transportClock().monotonicNow() + timeouts.head;
  auto connected = co_await connect(head_deadline, cancel);
  if (!connected) {
    co_return connected.error();
  }
  const ConnectionPtr connection = std::move(*connected);
  auto executor = co_await asio::this_coro::executor;
  const CancelRegistration hook(cancel, onStrand(executor, [connection] { connection->close(); }));

  bhttp::request<bhttp::empty_body> request{bhttp::verb::get, server_.target + target, 11};
  request.set(bhttp::field::host, server_.authority());
  request.set(bhttp::field::user_agent, options_.user_agent);
  request.set(bhttp::field::accept, "application/json");
  if (!auth->empty()) {
    request.set(bhttp::field::authorization, *auth);
  }
  request.keep_alive(true);
  error_code ec;
  connection->tcp().expires_at(head_deadline);
  co_await bhttp::async_write(connection->stream, request,
                              asio::redirect_error(asio::use_awaitable, ec));
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.header_limit(kHeaderLimit);
  // Unlimited (the stream is read in chunks). Not boost::none: Boost 1.74 compares a
  // Content-Length with an empty optional as "too large".
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (!ec) {
    co_await bhttp::async_read_header(connection->stream, connection->buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
  }
  if (cancelled(cancel)) {
    connection->close();
    co_return cancelledError();
  }
  if (ec) {
    connection->close();
    co_return http::ioError(ec, fmt::format("watch {}", server_.authority()),
                            ErrorCode::ResourceExhausted);
  }
  std::vector<char> chunk(kStreamChunk);
  ApiResponse out;
  out.status = parser.get().result_int();
  out.retry_after = retryAfterOf(parser.get().base());
  if (out.status != 200) {
    // Read what fits of the (Status) body, then give up the connection.
    while (!parser.is_done() && out.body.size() < kMaxErrorBodyBytes) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      co_await bhttp::async_read_some(connection->stream, connection->buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
      const std::size_t n = chunk.size() - parser.get().body().size;
      out.body.append(chunk.data(), std::min(n, kMaxErrorBodyBytes - out.body.size()));
      if (ec && ec != bhttp::error::need_buffer) {
        break;
      }
    }
    connection->close();
    unauthorized = out.status == 401;
    co_return out;
  }

  handler.opened();
  LineSplitter splitter(max_line);
  const std::function<bool(std::string_view)> on_line = [&handler](std::string_view line) {
    return handler.line(line);
  };
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    connection->tcp().expires_after(timeouts.silence);
    co_await bhttp::async_read_some(connection->stream, connection->buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec == bhttp::error::need_buffer) {
      ec = {};
    }
    const std::size_t n = chunk.size() - parser.get().body().size;
    if (n > 0 && !cancelled(cancel)) {
      const std::string_view bytes(chunk.data(), n);
      auto fed = splitter.feed(bytes, on_line);
      if (!fed) {
        connection->close();
        co_return fed.error();
      }
      if (!*fed) {
        connection->close();
        co_return out;
      }
    }
    if (cancelled(cancel)) {
      connection->close();
      co_return cancelledError();
    }
    if (ec) {
      connection->close();
      if (ec == beast::error::timeout) {
        co_return makeError(ErrorCode::Timeout,
                            fmt::format("watch silent for {} ms", timeouts.silence.count()));
      }
      co_return http::ioError(ec, "watch stream", ErrorCode::ResourceExhausted);
    }
  }
  if (!splitter.pending().empty()) {
    const std::string last(splitter.pending());
    handler.line(last);
  }
  connection->close();
  co_return out;
}

Task<Result<ApiResponse>> BeastApiTransport::watch(std::string target, std::size_t max_line,
                                                   WatchTimeouts timeouts, WatchHandler& handler,
                                                   CancellationSignal* cancel) {
  bool unauthorized = false;
  auto result = co_await watchOnce(target, max_line, timeouts, handler, cancel, unauthorized);
  if (unauthorized && token_.isFile()) {
    token_.invalidate();
    result = co_await watchOnce(target, max_line, timeouts, handler, cancel, unauthorized);
  }
  co_return result;
}

}  // namespace nmi::kube
