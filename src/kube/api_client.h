#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"
#include "http/beast_http_client.h"
#include "kube/bearer_token.h"
#include "kube/rest_config.h"

namespace nmi::kube {

// Response caps (bytes).
inline constexpr std::size_t kMaxListPageBytes = std::size_t{32} << 20U;
inline constexpr std::size_t kMaxWatchEventBytes = std::size_t{4} << 20U;
inline constexpr std::size_t kMaxSecretBytes = std::size_t{2} << 20U;
inline constexpr std::size_t kMaxErrorBodyBytes = std::size_t{64} << 10U;

// An answer of the API server. For a status other than 2xx, body holds at most
// kMaxErrorBodyBytes of the (Status) body.
struct ApiResponse {
  unsigned status = 0;
  std::string body;
  std::optional<std::chrono::seconds> retry_after;  // Retry-After in seconds, when present
};

// Receives a watch stream.
class WatchHandler {
 public:
  virtual ~WatchHandler() = default;
  // The server accepted the watch (200); lines follow.
  virtual void opened() = 0;
  // One line of the stream (one JSON event, without its newline). Returning false ends the
  // watch (the transport closes the connection and returns the 200 response).
  virtual bool line(std::string_view line) = 0;
};

struct WatchTimeouts {
  // Connecting, the TLS handshake and the response head must complete within this.
  std::chrono::milliseconds head{10'000};
  // A watch that receives no byte for this long is closed (Timeout): the connection may be
  // black-holed. Bookmarks arrive about once a minute on a healthy watch.
  std::chrono::milliseconds silence{90'000};
};

// The API server as nmi uses it: GETs of paths (lists, secrets) and watch streams. Requests
// carry `Accept: application/json`, the User-Agent and the bearer token. Thread-safe; callers run
// on strands.
class ApiTransport {
 public:
  virtual ~ApiTransport() = default;

  // GET `target` (path and query) and read the whole answer within `timeout`. Any status is a
  // response. Errors: Unavailable (connect, TLS, I/O), ResourceExhausted (a 2xx body over
  // max_body bytes), Timeout, Cancelled (`cancel` fired; may be null).
  virtual Task<Result<ApiResponse>> get(std::string target, std::size_t max_body,
                                        std::chrono::milliseconds timeout,
                                        CancellationSignal* cancel) = 0;

  // GET `target` as a stream. On a 200 answer calls handler.opened(), then handler.line() for
  // every line as it arrives, and returns the 200 response when the server ends the stream or
  // the handler stops it. Another status returns at once with its (bounded) body. Errors as
  // get(), plus Timeout when the stream is silent for timeouts.silence and ResourceExhausted
  // when a line exceeds max_line bytes.
  virtual Task<Result<ApiResponse>> watch(std::string target, std::size_t max_line,
                                          WatchTimeouts timeouts, WatchHandler& handler,
                                          CancellationSignal* cancel) = 0;
};

using ApiTransportPtr = std::shared_ptr<ApiTransport>;

struct TransportOptions {
  std::string user_agent = "nmi";
  // TCP connect only: short, so that a black-holed API server is retried quickly.
  std::chrono::milliseconds connect_timeout{2'000};
  std::size_t max_idle = 4;  // idle keep-alive connections kept for GETs
  std::chrono::seconds idle_ttl{30};
};

// ApiTransport over nmi's one HTTP client (http::BeastHttpClient): HTTP/1.1 and TLS, the server's
// certificate always verified against the configured CA (or the system's) and the host name or
// IP address (or kubeconfig's tls-server-name); client certificates and bearer tokens (re-read
// when the token file changes; after a 401 the file is re-read at once and the request retried
// once). TCP keep-alive is on. GETs reuse a few idle connections; each watch is a stream on a
// connection of its own. Create it through create(); sockets run on `executor`, which must
// outlive every call.
class BeastApiTransport final : public ApiTransport {
 public:
  // Errors: InvalidArgument (a CA, certificate or key that does not load; the message names
  // which, never its content).
  static Result<std::shared_ptr<BeastApiTransport>> create(boost::asio::any_io_executor executor,
                                                           const RestConfig& config,
                                                           const TransportOptions& options,
                                                           const Clock& clock);
  ~BeastApiTransport() override;
  BeastApiTransport(const BeastApiTransport&) = delete;
  BeastApiTransport& operator=(const BeastApiTransport&) = delete;
  BeastApiTransport(BeastApiTransport&&) = delete;
  BeastApiTransport& operator=(BeastApiTransport&&) = delete;

  Task<Result<ApiResponse>> get(std::string target, std::size_t max_body,
                                std::chrono::milliseconds timeout,
                                CancellationSignal* cancel) override;
  Task<Result<ApiResponse>> watch(std::string target, std::size_t max_line, WatchTimeouts timeouts,
                                  WatchHandler& handler, CancellationSignal* cancel) override;

  // Times the token file was read, for tests.
  std::uint64_t tokenReadsForTest() const { return token_.reads(); }

 private:
  BeastApiTransport(const RestConfig& config, std::unique_ptr<http::BeastHttpClient> client,
                    BearerToken token, const Clock& clock);

  // A GET of `target` with the Accept and Authorization fields.
  Result<http::ClientRequest> request(const std::string& target);
  Task<Result<ApiResponse>> getOnce(const std::string& target, std::size_t max_body,
                                    MonotonicTime deadline, CancellationSignal* cancel);
  Task<Result<ApiResponse>> watchOnce(const std::string& target, std::size_t max_line,
                                      WatchTimeouts timeouts, WatchHandler& handler,
                                      CancellationSignal* cancel);

  const std::string base_url_;  // https://host:port[/path prefix]
  std::unique_ptr<http::BeastHttpClient> client_;
  BearerToken token_;
  const Clock& clock_;
};

}  // namespace nmi::kube
