#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/verb.hpp>

#include "common/cancellation.h"
#include "common/result.h"
#include "common/task.h"

namespace nmi::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive header lookup (first match).
std::optional<std::string_view> findHeader(const Headers& headers, std::string_view name);

struct ClientRequest {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string url;  // http://host[:port]/path?query or https://...
  Headers headers;
  std::string body;
  // Deadline for the whole exchange (connect, TLS, write, read).
  std::chrono::milliseconds timeout{10'000};
  std::size_t max_response_bytes = 1U << 20U;
};

struct ClientResponse {
  unsigned status = 0;
  Headers headers;
  std::string body;
  std::optional<std::string_view> header(std::string_view name) const {
    return findHeader(headers, name);
  }
};

// An HTTP/1.1 client (role interface). Implementations: BeastHttpClient (pooled, TLS-verified,
// HTTPS_PROXY-aware), FakeHttpClient in tests.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Sends one request and reads the whole response. An HTTP error status is a response, not an
  // error. Errors: InvalidArgument (bad URL), Unavailable (DNS, connect, TLS or I/O failure, or a
  // response over max_response_bytes), Timeout, Cancelled (`cancel` fired; may be null).
  virtual Task<Result<ClientResponse>> send(ClientRequest request, CancellationSignal* cancel) = 0;
};

using HttpClientPtr = std::unique_ptr<HttpClient>;

}  // namespace nmi::http
