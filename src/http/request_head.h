#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>

#include "http/server.h"

namespace nmi::http {

// The server's rules for the bytes of a request, before any handler sees it. Pure functions:
// the server applies them as bytes arrive; inspectRequest() applies them to bytes already in
// hand (the fuzzer and the tests).

// Why a request is refused: the status and the fixed description of the JSON body.
struct Refusal {
  boost::beast::http::status status;
  std::string_view description;
};

// Where the head of the request in `buffered` stands. The head (request line and header fields,
// blank line included) must fit in limits.max_header_bytes; when it is complete, its raw bytes
// are checked with checkRawHead().
struct HeadScan {
  enum class Kind { NeedMore, Refused, Ready };
  Kind kind = Kind::NeedMore;
  std::optional<Refusal> refusal;  // when Refused
  std::size_t head_bytes = 0;      // when Ready: the head's length, blank line included
};
HeadScan scanHead(std::string_view buffered, const ServerLimits& limits);

// Raw checks of a complete head: no obs-fold continuation lines, no NUL, no bare CR or LF
// (Beast would silently unfold obs-fold lines, which a strict peer might read differently).
std::optional<Refusal> checkRawHead(std::string_view head);

// Message framing and Host rules of RFC 9112 on the parsed head: an HTTP/1.1 request has exactly
// one Host; no request has more than one; Transfer-Encoding must end in chunked and never comes
// with a Content-Length (ambiguous framing is how requests are smuggled).
std::optional<Refusal> checkHead(const Request& head);

// The decision on a whole head (scanHead() said Ready) once a parser was given it (`ec`: what
// that put() said). A parse error is refused as refusalForReadError() says, except that the head
// fits max_header_bytes, so header_limit is Malformed here; a parser that has not finished the
// head could not read it (Malformed too); otherwise checkHead().
std::optional<Refusal> checkParsedHead(
    const boost::beast::http::request_parser<boost::beast::http::string_body>& parser,
    const boost::system::error_code& ec);

// The refusal a parse error earns; nullopt when the connection just ended (EOF, timeout).
std::optional<Refusal> refusalForReadError(const boost::system::error_code& ec);

// The server's decision on a request whose bytes so far are `bytes`: a refusal, a complete
// request (and how many bytes it used), or "more bytes needed".
struct Inspection {
  std::optional<Refusal> refusal;
  std::optional<Request> request;  // complete and accepted
  std::size_t used = 0;            // bytes of `bytes` the request took
};
Inspection inspectRequest(std::string_view bytes, const ServerLimits& limits);

}  // namespace nmi::http
