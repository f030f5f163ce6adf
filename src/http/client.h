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
  // What a response over max_response_bytes is: Unavailable (an upstream misbehaving, worth
  // another attempt), or ResourceExhausted for callers that tell "too large" apart.
  ErrorCode too_large = ErrorCode::Unavailable;
};

struct ClientResponse {
  unsigned status = 0;
  Headers headers;
  std::string body;
  std::optional<std::string_view> header(std::string_view name) const {
    return findHeader(headers, name);
  }
};

// Receives the body of a streamed answer (HttpClient::stream) as it arrives.
class BodyReceiver {
 public:
  virtual ~BodyReceiver() = default;
  // The answer is 200; its body follows.
  virtual void opened() = 0;
  // The next bytes of the body. False stops reading (the connection is closed); an error ends
  // the stream with that error.
  virtual Result<bool> receive(std::string_view bytes) = 0;
};

// An HTTP/1.1 client (role interface): one-shot exchanges and streams. Implementations:
// BeastHttpClient (pooled, TLS-verified, HTTPS_PROXY-aware), FakeHttpClient in tests.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Sends one request and reads the whole response. An HTTP error status is a response, not an
  // error. Errors: InvalidArgument (bad URL), Unavailable (DNS, connect, TLS or I/O failure),
  // request.too_large (a response over max_response_bytes), Timeout, Cancelled (`cancel` fired;
  // may be null).
  virtual Task<Result<ClientResponse>> send(ClientRequest request, CancellationSignal* cancel) = 0;

  // Sends one request on a connection of its own and streams the answer: for a 200, `receiver`
  // gets opened() and then the body as it arrives, and the head is returned (empty body) when the
  // body ends or the receiver stops; any other status is returned with at most
  // max_response_bytes of its body. request.timeout bounds connecting and the head; the body may
  // flow for ever but not pause: `silence` without a byte ends it (Timeout). Errors as send(),
  // and the receiver's.
  virtual Task<Result<ClientResponse>> stream(ClientRequest request,
                                              std::chrono::milliseconds silence,
                                              BodyReceiver& receiver,
                                              CancellationSignal* cancel) = 0;
};

using HttpClientPtr = std::unique_ptr<HttpClient>;

}  // namespace nmi::http
