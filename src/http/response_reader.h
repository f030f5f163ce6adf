#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "common/result.h"
#include "http/client.h"

namespace nmi::http {

// Reads the answer to one HTTP/1.1 request from the bytes of a connection, as they arrive. It
// decides which response is the answer and whether the connection may carry another request;
// it does no I/O (BeastHttpClient feeds it; the fuzzer and the unit tests feed it directly).
//
// - Interim responses (1xx other than 101) are consumed and counted, never taken as the answer:
//   a server may send `100 Continue` (or `103 Early Hints`) on its own, whatever the request.
// - 101 Switching Protocols is an error: nmi never asks for an upgrade.
// - The final response's body is framed by chunked coding, Content-Length or, failing both, the
//   end of the connection; the answer to a HEAD request (and 204, 304) has no body whatever its
//   headers say.
// - The connection is reusable only after a complete final response whose length was known
//   (chunked or Content-Length), with keep-alive, and with no byte after it: anything else may
//   leave an answer in the connection that the next request would read as its own.
class ResponseReader {
 public:
  struct Limits {
    std::size_t max_header_bytes = std::size_t{16} << 10U;  // per response head (1xx included)
    std::size_t max_body_bytes = std::size_t{1} << 20U;
    int max_interim = 8;  // interim responses before the final one, at most
    ErrorCode too_large = ErrorCode::Unavailable;  // the error of a body over max_body_bytes
  };

  ResponseReader(bool head_request, Limits limits);

  // Parses from `bytes` and returns how many were used; the caller drops those and calls again
  // with what is left plus new bytes. Uses nothing once done(). Errors: Unavailable (malformed,
  // a head too large, too many interim responses, 101), limits.too_large (a body too large).
  Result<std::size_t> put(std::string_view bytes);

  // The connection ended (EOF). Completes a body framed by the end of the connection; any
  // other unfinished response is an error (Unavailable).
  Result<void> putEof();

  // The final response is complete.
  bool done() const { return done_; }
  // Interim responses consumed so far.
  int interimCount() const { return interim_; }
  // Whether the connection may carry another request, given `leftover` bytes received after the
  // final response. False until done().
  bool reusable(std::size_t leftover) const;

  // The final response (call once, after done()).
  ClientResponse take();

 private:
  void startMessage();
  // The rules for a final response's head (the announced body fits, no Transfer-Encoding with
  // Content-Length); an error, or nullopt.
  std::optional<Error> checkFinalHead() const;

  const bool head_request_;
  const Limits limits_;
  std::optional<boost::beast::http::response_parser<boost::beast::http::string_body>> parser_;
  int interim_ = 0;
  bool done_ = false;
  bool framed_ = false;  // the final body's length was known (chunked or Content-Length or none)
  std::size_t framing_bytes_ = 0;  // bytes of the current run of non-body bytes (see put())
};

}  // namespace nmi::http
