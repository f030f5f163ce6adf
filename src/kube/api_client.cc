#include "kube/api_client.h"

#include <algorithm>
#include <functional>
#include <utility>

#include <fmt/format.h>

#include "kube/watch_decode.h"

namespace nmi::kube {

namespace {

constexpr std::size_t kHeaderLimit = std::size_t{64} << 10U;
// Enough for every connection nmi opens to the API server at once: a few GETs and one watch per
// kind.
constexpr int kMaxOpen = 64;

std::optional<std::chrono::seconds> retryAfterOf(const http::ClientResponse& response) {
  const auto value = response.header("Retry-After");
  if (!value) {
    return std::nullopt;
  }
  return parseRetryAfter(*value);
}

bool is2xx(unsigned status) {
  return status >= 200 && status < 300;
}

// Lines of a watch stream, to the WatchHandler, as the body arrives in chunks.
class WatchLines final : public http::BodyReceiver {
 public:
  WatchLines(WatchHandler& handler, std::size_t max_line)
      : handler_(handler), splitter_(max_line) {}

  void opened() override { handler_.opened(); }
  Result<bool> receive(std::string_view bytes) override {
    auto more = splitter_.feed(bytes, on_line_);
    if (more && !*more) {
      stopped_ = true;
    }
    return more;
  }

  // After the stream ended: a last line without its newline, unless the handler stopped.
  void finish() {
    if (!stopped_ && !splitter_.pending().empty()) {
      const std::string last(splitter_.pending());
      handler_.line(last);
    }
  }

 private:
  WatchHandler& handler_;
  LineSplitter splitter_;
  const std::function<bool(std::string_view)> on_line_ = [this](std::string_view line) {
    return handler_.line(line);
  };
  bool stopped_ = false;
};

}  // namespace

Result<std::shared_ptr<BeastApiTransport>> BeastApiTransport::create(
    boost::asio::any_io_executor executor, const RestConfig& config,
    const TransportOptions& options, const Clock& clock) {
  http::ClientOptions client_options;
  client_options.user_agent = options.user_agent;
  client_options.tls.ca_pem = config.ca_pem;
  client_options.tls.client_cert_pem = config.client_cert_pem;
  client_options.tls.client_key_pem = config.client_key_pem;
  client_options.tls_server_name = config.tls_server_name;
  client_options.max_idle_per_host = options.max_idle;
  client_options.idle_ttl = options.idle_ttl;
  client_options.max_open_per_host = kMaxOpen;
  client_options.connect_timeout = options.connect_timeout;
  client_options.tcp_keepalive = true;
  client_options.max_header_bytes = kHeaderLimit;
  auto client = http::BeastHttpClient::create(std::move(executor), std::move(client_options));
  if (!client) {
    return makeError(client.error().code, "API server TLS: " + client.error().message);
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
  return std::shared_ptr<BeastApiTransport>(
      new BeastApiTransport(config, std::move(*client), std::move(token), clock));
}

BeastApiTransport::BeastApiTransport(const RestConfig& config,
                                     std::unique_ptr<http::BeastHttpClient> client,
                                     BearerToken token, const Clock& clock)
    : base_url_("https://" + config.server.authority() + config.server.target),
      client_(std::move(client)),
      token_(std::move(token)),
      clock_(clock) {}

BeastApiTransport::~BeastApiTransport() = default;

Result<http::ClientRequest> BeastApiTransport::request(const std::string& target) {
  auto token = token_.current();
  if (!token) {
    return token.error();
  }
  http::ClientRequest r;
  r.url = base_url_ + target;
  r.headers.emplace_back("Accept", "application/json");
  if (!token->empty()) {
    r.headers.emplace_back("Authorization", "Bearer " + *token);
  }
  return r;
}

Task<Result<ApiResponse>> BeastApiTransport::getOnce(const std::string& target,
                                                     std::size_t max_body, MonotonicTime deadline,
                                                     CancellationSignal* cancel) {
  auto r = request(target);
  if (!r) {
    co_return r.error();
  }
  r->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::max(deadline - clock_.monotonicNow(), MonotonicTime::duration::zero()));
  // Room for an error's (Status) body even when the caller's cap is smaller.
  r->max_response_bytes = std::max(max_body, kMaxErrorBodyBytes);
  r->too_large = ErrorCode::ResourceExhausted;
  auto response = co_await client_->send(std::move(*r), cancel);
  if (!response) {
    co_return response.error();
  }
  ApiResponse out;
  out.status = response->status;
  out.retry_after = retryAfterOf(*response);
  out.body = std::move(response->body);
  if (is2xx(out.status) && out.body.size() > max_body) {
    co_return makeError(ErrorCode::ResourceExhausted,
                        fmt::format("GET: answer larger than {} bytes", max_body));
  }
  if (!is2xx(out.status)) {
    out.body.resize(std::min(out.body.size(), kMaxErrorBodyBytes));
  }
  co_return out;
}

Task<Result<ApiResponse>> BeastApiTransport::get(std::string target, std::size_t max_body,
                                                 std::chrono::milliseconds timeout,
                                                 CancellationSignal* cancel) {
  const MonotonicTime deadline = clock_.monotonicNow() + timeout;
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
                                                       CancellationSignal* cancel) {
  auto r = request(target);
  if (!r) {
    co_return r.error();
  }
  r->timeout = timeouts.head;
  r->max_response_bytes = kMaxErrorBodyBytes;
  WatchLines lines(handler, max_line);
  auto response = co_await client_->stream(std::move(*r), timeouts.silence, lines, cancel);
  if (!response) {
    co_return response.error();
  }
  if (response->status == 200) {
    lines.finish();
  }
  ApiResponse out;
  out.status = response->status;
  out.retry_after = retryAfterOf(*response);
  out.body = std::move(response->body);
  co_return out;
}

Task<Result<ApiResponse>> BeastApiTransport::watch(std::string target, std::size_t max_line,
                                                   WatchTimeouts timeouts, WatchHandler& handler,
                                                   CancellationSignal* cancel) {
  auto result = co_await watchOnce(target, max_line, timeouts, handler, cancel);
  if (result && result->status == 401 && token_.isFile()) {
    token_.invalidate();
    result = co_await watchOnce(target, max_line, timeouts, handler, cancel);
  }
  co_return result;
}

}  // namespace nmi::kube
