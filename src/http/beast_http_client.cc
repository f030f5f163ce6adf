#include "http/beast_http_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
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

#include "common/base64.h"
#include "http/io_error.h"
#include "http/response_reader.h"
#include "http/tls.h"
#include "http/transport_clock.h"

namespace nmi::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using boost::asio::ip::tcp;
using boost::system::error_code;

struct BeastHttpClient::Connection {
  explicit Connection(const asio::any_io_executor& ex)
      : plain(std::make_unique<beast::tcp_stream>(ex)) {}

  beast::tcp_stream& lowest() const { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void close() const {
    error_code ec;
    lowest().socket().close(ec);
  }

  std::unique_ptr<beast::tcp_stream> plain;  // moved into `tls` after the TLS handshake starts
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  MonotonicTime idle_since;
  bool reusable = false;
};

namespace {

// Whether an idle plain connection has anything to read: the server closed it (EOF, reset) or
// sent bytes nobody asked for, which the next request would read as its answer. Either way it
// must not be reused. (Not for TLS: a TLS 1.3 server may send session tickets after its answer.)
bool hasPendingInput(int fd) {
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n >= 0) {
    return true;
  }
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// TCP keep-alive: probes after 30 s idle, every 10 s, 3 at most (a peer gone without a word is
// noticed within about a minute, even on a silent stream).
void enableKeepAlive(tcp::socket& socket) {
  constexpr int kIdleSeconds = 30;
  constexpr int kIntervalSeconds = 10;
  constexpr int kProbes = 3;
  error_code ec;
  socket.set_option(asio::socket_base::keep_alive(true), ec);
  const int fd = socket.native_handle();
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &kIdleSeconds, sizeof(kIdleSeconds));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &kIntervalSeconds, sizeof(kIntervalSeconds));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &kProbes, sizeof(kProbes));
}

}  // namespace

Result<std::unique_ptr<BeastHttpClient>> BeastHttpClient::create(asio::any_io_executor executor,
                                                                 ClientOptions options) {
  auto tls = makeTlsClientContext(options.tls);
  if (!tls) {
    return tls.error();
  }
  std::optional<ProxyUrl> proxy;
  if (!options.https_proxy.empty()) {
    auto parsed = parseProxyUrl(options.https_proxy);
    if (!parsed) {
      return makeError(ErrorCode::InvalidArgument, "HTTPS_PROXY: " + parsed.error().message);
    }
    proxy = *parsed;
  }
  return std::unique_ptr<BeastHttpClient>(new BeastHttpClient(
      std::move(executor), std::move(options), std::move(*tls), std::move(proxy)));
}

BeastHttpClient::BeastHttpClient(asio::any_io_executor executor, ClientOptions options,
                                 std::unique_ptr<asio::ssl::context> tls,
                                 std::optional<ProxyUrl> proxy)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      tls_(std::move(tls)),
      proxy_(std::move(proxy)) {}

BeastHttpClient::~BeastHttpClient() {
  const std::lock_guard lock(mu_);
  for (auto& [key, list] : idle_) {
    for (auto& c : list) {
      c->close();
    }
  }
}

std::size_t BeastHttpClient::idleConnections() const {
  const std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [key, list] : idle_) {
    n += list.size();
  }
  return n;
}

BeastHttpClient::ConnectionPtr BeastHttpClient::takeIdle(const std::string& key) {
  const std::lock_guard lock(mu_);
  auto it = idle_.find(key);
  if (it == idle_.end()) {
    return nullptr;
  }
  const auto now = transportClock().monotonicNow();
  while (!it->second.empty()) {
    ConnectionPtr c = std::move(it->second.back());
    it->second.pop_back();
    if (now - c->idle_since < options_.idle_ttl && c->lowest().socket().is_open() &&
        (c->tls || !hasPendingInput(c->plain->socket().native_handle()))) {
      return c;
    }
    c->close();
  }
  return nullptr;
}

void BeastHttpClient::putIdle(const std::string& key, ConnectionPtr connection) {
  connection->idle_since = transportClock().monotonicNow();
  const std::lock_guard lock(mu_);
  auto& list = idle_[key];
  if (list.size() >= options_.max_idle_per_host) {
    connection->close();
    return;
  }
  list.push_back(std::move(connection));
}

bool BeastHttpClient::reserve(const std::string& key) {
  const std::lock_guard lock(mu_);
  int& n = open_[key];
  if (n >= options_.max_open_per_host) {
    return false;
  }
  ++n;
  return true;
}

void BeastHttpClient::unreserve(const std::string& key) {
  const std::lock_guard lock(mu_);
  if (auto it = open_.find(key); it != open_.end() && --it->second <= 0) {
    open_.erase(it);
  }
}

namespace {

// Connects `connection` (plain stream, not yet open) to url, through the proxy when one applies,
// and performs the TLS handshake for https.
Task<Result<void>> establish(beast::tcp_stream& plain, const Url& url,
                             const std::optional<ProxyUrl>& proxy, const ClientOptions& options,
                             MonotonicTime deadline) {
  const std::string_view no_proxy = options.no_proxy;
  const bool via_proxy =
      url.scheme == "https" && proxy && !bypassesProxy(url.host, url.port, no_proxy);
  const std::string host = via_proxy ? proxy->host : url.host;
  const std::uint16_t port = via_proxy ? proxy->port : url.port;
  error_code ec;
  auto executor = co_await asio::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(executor);
  DeadlineWatch resolve_deadline(transportClock(), executor, deadline,
                                 [resolver] { resolver->cancel(); });
  const auto endpoints = co_await resolver->async_resolve(
      host, std::to_string(port), asio::redirect_error(asio::use_awaitable, ec));
  resolve_deadline.disarm();
  if (ec) {
    co_return ioError(ec, fmt::format("resolve {}", host));
  }
  plain.expires_at(options.connect_timeout ? std::min(deadline, transportClock().monotonicNow() +
                                                                    *options.connect_timeout)
                                           : deadline);
  co_await plain.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return ioError(ec, fmt::format("connect {}:{}", host, port));
  }
  plain.expires_at(deadline);
  if (options.tcp_keepalive) {
    enableKeepAlive(plain.socket());
  }
  if (via_proxy) {
    bhttp::request<bhttp::empty_body> connect{bhttp::verb::connect, url.authority(), 11};
    connect.set(bhttp::field::host, url.authority());
    if (!proxy->basic_credentials.empty()) {
      connect.set(bhttp::field::proxy_authorization,
                  "Basic " + base64Encode(proxy->basic_credentials));
    }
    co_await bhttp::async_write(plain, connect, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return ioError(ec, "proxy CONNECT");
    }
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::empty_body> parser;
    parser.skip(true);  // a CONNECT response has no body
    co_await bhttp::async_read_header(plain, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return ioError(ec, "proxy CONNECT response");
    }
    if (parser.get().result_int() != 200) {
      co_return makeError(
          ErrorCode::Unavailable,
          fmt::format("proxy refused CONNECT {}: {}", url.authority(), parser.get().result_int()));
    }
  }
  co_return Result<void>{};
}

}  // namespace

namespace {

// Writes `req`, then reads until `reader` has the final answer (interim responses consumed).
template <class Stream>
Task<Result<void>> writeAndRead(Stream& stream, beast::flat_buffer& buffer,
                                bhttp::request<bhttp::string_body>& req, ResponseReader& reader,
                                std::string_view what) {
  error_code ec;
  co_await bhttp::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return ioError(ec, what);
  }
  for (;;) {
    if (buffer.size() > 0) {
      const auto data = buffer.data();
      auto used = reader.put(std::string_view(static_cast<const char*>(data.data()), data.size()));
      if (!used) {
        co_return makeError(used.error().code, fmt::format("{}: {}", what, used.error().message));
      }
      buffer.consume(*used);
      if (reader.done()) {
        co_return Result<void>{};
      }
    }
    const std::size_t n = co_await stream.async_read_some(
        buffer.prepare(std::size_t{16} << 10U), asio::redirect_error(asio::use_awaitable, ec));
    buffer.commit(n);
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      if (n > 0) {
        continue;  // parse what came with the end first
      }
      // Bytes the reader left in the buffer cannot become more of the answer now: reading again
      // would only meet the end again, at once, until the deadline.
      auto finished = reader.putEof();
      if (!finished) {
        co_return makeError(finished.error().code,
                            fmt::format("{}: {}", what, finished.error().message));
      }
      co_return Result<void>{};
    }
    if (ec) {
      co_return ioError(ec, what);
    }
  }
}

}  // namespace

namespace {

// The request as it goes on the wire: Host (without the scheme's default port), the User-Agent
// unless the caller set one, the caller's fields, the body with its length, keep-alive.
bhttp::request<bhttp::string_body> wireRequest(const Url& url, const ClientRequest& request,
                                               const std::string& user_agent) {
  bhttp::request<bhttp::string_body> req{request.method, url.target, 11};
  const bool default_port =
      (url.scheme == "https" && url.port == 443) || (url.scheme == "http" && url.port == 80);
  req.set(bhttp::field::host,
          default_port ? (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host)
                       : url.authority());
  if (!findHeader(request.headers, "User-Agent")) {
    req.set(bhttp::field::user_agent, user_agent);
  }
  for (const auto& [name, value] : request.headers) {
    req.insert(name, value);
  }
  req.body() = request.body;
  req.prepare_payload();
  req.keep_alive(true);
  return req;
}

constexpr std::size_t kStreamChunk = std::size_t{64} << 10U;
constexpr int kMaxInterim = 8;

bool fired(const CancellationSignal* cancel) {
  return cancel != nullptr && cancel->cancelled();
}

// Writes `req` and reads a streamed answer: the head (interim 1xx answers skipped), then, for a
// 200, the body to `receiver`, each read bounded by `silence` on `lowest`; for another status at
// most `max_error_body` bytes of its body.
template <class Stream>
Task<Result<ClientResponse>> writeAndStream(
    Stream& stream, beast::tcp_stream& lowest, beast::flat_buffer& buffer,
    bhttp::request<bhttp::string_body>& req, std::size_t max_header, std::size_t max_error_body,
    std::chrono::milliseconds silence, BodyReceiver& receiver, const CancellationSignal* cancel,
    std::string_view what) {
  error_code ec;
  co_await bhttp::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return ioError(ec, what);
  }
  std::optional<bhttp::response_parser<bhttp::buffer_body>> parser;
  for (int interim = 0;; ++interim) {
    parser.emplace();
    parser->header_limit(static_cast<std::uint32_t>(max_header));
    // Unlimited (the body is read in chunks). Not boost::none: Boost 1.74 compares a
    // Content-Length with an empty optional as "too large".
    parser->body_limit(std::numeric_limits<std::uint64_t>::max());
    co_await bhttp::async_read_header(stream, buffer, *parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return ioError(ec, what);
    }
    const unsigned status = parser->get().result_int();
    if (status == 101) {
      co_return makeError(ErrorCode::Unavailable, fmt::format("{}: unasked-for upgrade", what));
    }
    if (status >= 200) {
      break;
    }
    if (interim >= kMaxInterim) {
      co_return makeError(ErrorCode::Unavailable,
                          fmt::format("{}: too many interim answers", what));
    }
  }
  ClientResponse head;
  head.status = parser->get().result_int();
  for (const auto& field : parser->get()) {
    head.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  std::vector<char> chunk(kStreamChunk);
  if (head.status != 200) {
    // What fits of the (error) body, then the connection is given up.
    while (!parser->is_done() && head.body.size() < max_error_body) {
      parser->get().body().data = chunk.data();
      parser->get().body().size = chunk.size();
      co_await bhttp::async_read_some(stream, buffer, *parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
      const std::size_t n = chunk.size() - parser->get().body().size;
      head.body.append(chunk.data(), std::min(n, max_error_body - head.body.size()));
      if (ec && ec != bhttp::error::need_buffer) {
        break;
      }
    }
    co_return head;
  }
  receiver.opened();
  while (!parser->is_done()) {
    parser->get().body().data = chunk.data();
    parser->get().body().size = chunk.size();
    lowest.expires_after(silence);
    co_await bhttp::async_read_some(stream, buffer, *parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec == bhttp::error::need_buffer) {
      ec = {};
    }
    const std::size_t n = chunk.size() - parser->get().body().size;
    if (n > 0 && !fired(cancel)) {
      auto more = receiver.receive(std::string_view(chunk.data(), n));
      if (!more) {
        co_return more.error();
      }
      if (!*more) {
        co_return head;
      }
    }
    if (fired(cancel)) {
      co_return makeError(ErrorCode::Cancelled, "request cancelled");
    }
    if (ec == beast::error::timeout) {
      co_return makeError(ErrorCode::Timeout,
                          fmt::format("{}: stream silent for {} ms", what, silence.count()));
    }
    if (ec) {
      co_return ioError(ec, what);
    }
  }
  co_return head;
}

}  // namespace

Task<Result<void>> BeastHttpClient::open(const ConnectionPtr& connection, const Url& url,
                                         MonotonicTime deadline) {
  auto up = co_await establish(*connection->plain, url, proxy_, options_, deadline);
  if (!up || url.scheme != "https") {
    co_return up;
  }
  connection->tls =
      std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*connection->plain), *tls_);
  connection->plain.reset();
  const std::string& name = options_.tls_server_name.empty() ? url.host : options_.tls_server_name;
  error_code ec;
  asio::ip::make_address(name, ec);
  if (ec) {
    // SNI for a host name (SSL_set_tlsext_host_name is a macro with an old-style cast).
    SSL_ctrl(connection->tls->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME,
             TLSEXT_NAMETYPE_host_name, const_cast<char*>(name.c_str()));
  }
  connection->tls->set_verify_callback(asio::ssl::host_name_verification(name));
  co_await connection->tls->async_handshake(asio::ssl::stream_base::client,
                                            asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return ioError(ec, fmt::format("TLS handshake with {}", url.authority()));
  }
  co_return Result<void>{};
}

Task<Result<ClientResponse>> BeastHttpClient::exchange(const ConnectionPtr& connection,
                                                       const Url& url, const ClientRequest& request,
                                                       MonotonicTime deadline) {
  bhttp::request<bhttp::string_body> req = wireRequest(url, request, options_.user_agent);

  connection->lowest().expires_at(deadline);
  ResponseReader::Limits limits;
  limits.max_body_bytes = request.max_response_bytes;
  limits.max_header_bytes = options_.max_header_bytes;
  limits.too_large = request.too_large;
  ResponseReader reader(request.method == bhttp::verb::head, limits);
  const std::string what = fmt::format("{} {}", std::string(req.method_string()), url.authority());
  Result<void> read;
  // (No co_await inside ?: — g++ 12 miscompiles it.)
  if (connection->tls) {
    read = co_await writeAndRead(*connection->tls, connection->buffer, req, reader, what);
  } else {
    read = co_await writeAndRead(*connection->plain, connection->buffer, req, reader, what);
  }
  if (!read) {
    connection->reusable = false;
    co_return read.error();
  }
  // Reused only after a complete answer of known length with nothing after it.
  connection->reusable = reader.reusable(connection->buffer.size());
  co_return reader.take();
}

BeastHttpClient::Slot::~Slot() {
  if (client_ != nullptr) {
    client_->unreserve(key);
  }
}

Result<BeastHttpClient::Slot> BeastHttpClient::admit(const ClientRequest& request) {
  auto url = parseUrl(request.url);
  if (!url) {
    return url.error();
  }
  std::string key = url->scheme + "://" + url->authority();
  if (!reserve(key)) {
    return makeError(ErrorCode::Unavailable,
                     fmt::format("too many open connections to {}", url->authority()));
  }
  return Slot(this, std::move(*url), std::move(key),
              transportClock().monotonicNow() + request.timeout);
}

Task<Result<ClientResponse>> BeastHttpClient::send(ClientRequest request,
                                                   CancellationSignal* cancel) {
  auto slot = admit(request);
  if (!slot) {
    co_return slot.error();
  }
  auto executor = co_await asio::this_coro::executor;

  for (int attempt = 0;; ++attempt) {
    // The retry after a failed pooled connection goes on a new one: the other pooled connections
    // are as old, and a server that went away closed them all.
    ConnectionPtr connection = attempt == 0 ? takeIdle(slot->key) : nullptr;
    const bool reused = connection != nullptr;
    if (!connection) {
      connection = std::make_shared<Connection>(executor_);
    }
    // Cancellation closes the connection's socket on this coroutine's executor, so it never
    // races with the coroutine's own calls on the socket.
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    CancelRegistration on_cancel(cancel, [executor, connection, cancelled] {
      asio::post(executor, [connection, cancelled] {
        cancelled->store(true);
        connection->lowest().cancel();
      });
    });
    Result<ClientResponse> result = makeError(ErrorCode::Internal, "not sent");
    bool established = reused;
    if (!reused) {
      auto up = co_await open(connection, slot->url, slot->deadline);
      if (up) {
        established = true;
      } else {
        result = up.error();
      }
    }
    if (established) {
      result = co_await exchange(connection, slot->url, request, slot->deadline);
    }
    if (cancel != nullptr) {
      on_cancel.reset();
      // A cancellation posted before reset() runs before this continuation.
      co_await asio::post(executor, asio::use_awaitable);
    }
    if (cancelled->load() || (cancel != nullptr && cancel->cancelled())) {
      connection->close();
      co_return makeError(ErrorCode::Cancelled, "request cancelled");
    }
    if (!result) {
      connection->close();
      // A pooled connection the server closed meanwhile fails at once: retry once on a new one.
      if (reused && attempt == 0 && result.error().code == ErrorCode::Unavailable &&
          transportClock().monotonicNow() < slot->deadline) {
        continue;
      }
      co_return result;
    }
    if (connection->reusable) {
      putIdle(slot->key, connection);
    } else {
      connection->close();
    }
    co_return result;
  }
}

Task<Result<ClientResponse>> BeastHttpClient::stream(ClientRequest request,
                                                     std::chrono::milliseconds silence,
                                                     BodyReceiver& receiver,
                                                     CancellationSignal* cancel) {
  auto slot = admit(request);
  if (!slot) {
    co_return slot.error();
  }
  auto executor = co_await asio::this_coro::executor;
  const auto connection = std::make_shared<Connection>(executor_);
  // Cancellation closes the socket on this coroutine's executor: whatever the stream does then
  // (waiting for the head, or between two reads) ends at once.
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  CancelRegistration on_cancel(cancel, [executor, connection, cancelled] {
    asio::post(executor, [connection, cancelled] {
      cancelled->store(true);
      connection->close();
    });
  });
  Result<ClientResponse> result = makeError(ErrorCode::Internal, "not sent");
  if (auto up = co_await open(connection, slot->url, slot->deadline); !up) {
    result = up.error();
  } else {
    bhttp::request<bhttp::string_body> req = wireRequest(slot->url, request, options_.user_agent);
    const std::string what =
        fmt::format("{} {}", std::string(req.method_string()), slot->url.authority());
    connection->lowest().expires_at(slot->deadline);
    // (No co_await inside ?: — g++ 12 miscompiles it.)
    if (connection->tls) {
      result = co_await writeAndStream(*connection->tls, connection->lowest(), connection->buffer,
                                       req, options_.max_header_bytes, request.max_response_bytes,
                                       silence, receiver, cancel, what);
    } else {
      result = co_await writeAndStream(*connection->plain, connection->lowest(), connection->buffer,
                                       req, options_.max_header_bytes, request.max_response_bytes,
                                       silence, receiver, cancel, what);
    }
  }
  if (cancel != nullptr) {
    on_cancel.reset();
    // A cancellation posted before reset() runs before this continuation.
    co_await asio::post(executor, asio::use_awaitable);
  }
  connection->close();
  if (cancelled->load() || fired(cancel)) {
    co_return makeError(ErrorCode::Cancelled, "request cancelled");
  }
  co_return result;
}

}  // namespace nmi::http
