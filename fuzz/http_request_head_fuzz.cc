// libFuzzer target for the server's rules for the bytes of a request (http/request_head.h), applied
// by inspectRequest() as Server::session applies them. The input is what a client sends on one
// connection, possibly several pipelined requests. Each request found is inspected under the
// default ServerLimits and under tiny limits taken from the input's first two bytes. Aborts when
// one of these does not hold:
//   * a refusal is a 4xx with a description; a 431 means no head ends within max_header_bytes, a
//     413 on a Content-Length request means that length is over max_body_bytes;
//   * an accepted request, read again by the plain reader of fuzz/http_support.h: its head is the
//     bytes up to the first empty line and fits max_header_bytes; it has no NUL, no bare CR or LF,
//     no line starting with SP or HTAB (obs-fold); the request line's method, target and version
//     are the request's; no Host twice, exactly one in HTTP/1.1; never Transfer-Encoding with
//     Content-Length, and a Transfer-Encoding ends in chunked; the body is the Content-Length
//     bytes after the head or the chunked body decoded, at most max_body_bytes; `used` is the head
//     plus that framing, so the next request starts right after it;
//   * "need more" only while, by that reading, no head has ended (and fewer than max_header_bytes
//     are buffered) or the body is not complete: a complete message is never left waiting;
//   * split invariance: every prefix chosen from the input is "need more" or has the verdict of
//     the whole: the same refusal status, or the same request with the same `used`;
//   * limits at the edge: an accepted request is accepted again, identically, with
//     max_header_bytes = its head and max_body_bytes = its body; one byte less of head is 431, one
//     byte less of body 413;
//   * the target of an accepted request goes through canonicalizeTarget and classifyRoute;
//   * checkRawHead(input) refuses (400) exactly when the input has a NUL, a CR not followed by LF,
//     an LF not preceded by CR, or a CR LF followed by SP or HTAB;
//   * refusalForReadError: a refusal is 4xx; the end of a connection (EOF, timeout, a partial
//     message) is no refusal; header_limit is 431, body_limit 413.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/beast/http/error.hpp>

#include "fuzz_support.h"
#include "http/request_head.h"
#include "http_support.h"
#include "imds/request_target.h"
#include "imds/route.h"

namespace {

namespace bhttp = boost::beast::http;
namespace plain = nmi::fuzz::http;
using nmi::fuzz::check;
using nmi::http::Inspection;
using nmi::http::ServerLimits;

constexpr std::size_t kMaxPipelined = 8;
constexpr std::size_t kPrefixesPerRequest = 3;

unsigned statusOf(const nmi::http::Refusal& refusal) {
  return static_cast<unsigned>(refusal.status);
}

// The message framing of a request head by RFC 9112 section 6.3, without its errors: chunked when
// the last transfer coding is chunked, else Content-Length, else no body.
struct Framing {
  enum class Kind { NoBody, Length, Chunked, Faulty };
  Kind kind = Kind::NoBody;
  std::uint64_t length = 0;
};

Framing framingOf(const plain::Head& head) {
  if (!head.values("transfer-encoding").empty()) {
    return {plain::chunkedLast(head) ? Framing::Kind::Chunked : Framing::Kind::Faulty, 0};
  }
  if (!head.values("content-length").empty()) {
    const auto length = plain::contentLength(head);
    return length ? Framing{Framing::Kind::Length, *length} : Framing{Framing::Kind::Faulty, 0};
  }
  return {};
}

// The plain rules for the raw bytes of a head, counted rather than scanned: every CR starts a
// CR LF and every LF ends one, no NUL, no CR LF followed by SP or HTAB.
bool rawHeadIsClean(std::string_view head) {
  std::size_t cr = 0;
  std::size_t lf = 0;
  std::size_t crlf = 0;
  for (const char c : head) {
    cr += c == '\r' ? 1 : 0;
    lf += c == '\n' ? 1 : 0;
    if (c == '\0') {
      return false;
    }
  }
  for (std::size_t at = head.find("\r\n"); at != std::string_view::npos;
       at = head.find("\r\n", at + 2)) {
    ++crlf;
    if (at + 2 < head.size() && (head[at + 2] == ' ' || head[at + 2] == '\t')) {
      return false;
    }
  }
  return cr == crlf && lf == crlf;
}

// Whether the plain reading lets a server wait for more of `bytes`.
bool mayWait(std::string_view bytes, const ServerLimits& limits) {
  if (bytes.find("\r\n\r\n") == std::string_view::npos) {
    return bytes.size() < limits.max_header_bytes;
  }
  const auto head = plain::readHead(bytes);
  if (!head) {
    return false;
  }
  const std::string_view rest = bytes.substr(head->size);
  const Framing framing = framingOf(*head);
  switch (framing.kind) {
    case Framing::Kind::NoBody:
    case Framing::Kind::Faulty:
      return false;
    case Framing::Kind::Length:
      return rest.size() < framing.length;
    case Framing::Kind::Chunked:
      // (Beast may wait for a few more bytes before it sees a broken chunk: only a complete
      // chunked body must not wait.)
      return plain::readChunked(rest).state != plain::Chunked::State::Complete;
  }
  return false;
}

// An accepted request read again from its bytes.
void checkAccepted(const Inspection& got, std::string_view bytes, const ServerLimits& limits,
                   std::string_view input) {
  const nmi::http::Request& request = *got.request;
  check(got.used <= bytes.size(), "an accepted request used more bytes than it was given", input);
  const auto head = plain::readHead(bytes);
  check(head.has_value(), "an accepted request has no head by a plain reading", input);
  check(head->size <= limits.max_header_bytes, "an accepted head is over max_header_bytes", input);
  check(rawHeadIsClean(bytes.substr(0, head->size)),
        "an accepted head has a NUL, a bare CR or LF, or obs-fold", input);

  // The request line: method SP target SP version.
  const std::string& line = head->start_line;
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
  check(sp2 != std::string::npos, "an accepted request line has no two spaces", input);
  const std::string_view method = std::string_view(line).substr(0, sp1);
  const std::string_view target = std::string_view(line).substr(sp1 + 1, sp2 - sp1 - 1);
  const int version = plain::versionOf(std::string_view(line).substr(sp2 + 1));
  check(request.method_string() == method, "the accepted method is not the request line's", input);
  check(request.target() == target, "the accepted target is not the request line's", input);
  check(
      version != 0 && static_cast<int>(request.version()) == version && line.size() == sp2 + 1 + 8,
      "the accepted version is not the request line's", input);

  const std::size_t hosts = head->values("host").size();
  check(hosts <= 1, "an accepted request has more than one Host", input);
  check(version != 11 || hosts == 1, "an accepted HTTP/1.1 request has no Host", input);
  const bool has_te = !head->values("transfer-encoding").empty();
  const bool has_cl = !head->values("content-length").empty();
  check(!(has_te && has_cl), "an accepted request has Transfer-Encoding and Content-Length", input);

  const std::string_view rest = bytes.substr(head->size);
  const Framing framing = framingOf(*head);
  std::string body;
  std::size_t framed = 0;
  switch (framing.kind) {
    case Framing::Kind::Faulty:
      nmi::fuzz::violated("an accepted request has faulty framing by a plain reading", input);
    case Framing::Kind::NoBody:
      break;
    case Framing::Kind::Length:
      check(framing.length <= rest.size(),
            "an accepted request has fewer body bytes than its Content-Length", input);
      body = std::string(rest.substr(0, framing.length));
      framed = framing.length;
      break;
    case Framing::Kind::Chunked: {
      const plain::Chunked chunked = plain::readChunked(rest);
      check(chunked.state == plain::Chunked::State::Complete,
            "an accepted chunked body is not complete by a plain reading", input);
      body = chunked.payload;
      framed = chunked.size;
      break;
    }
  }
  check(request.body() == body, "the accepted body is not the framed bytes", input);
  check(request.body().size() <= limits.max_body_bytes, "an accepted body is over max_body_bytes",
        input);
  check(got.used == head->size + framed, "used is not the head plus the framed body", input);

  // What the handlers do first with the target: no crash, whatever it is.
  const auto canonical = nmi::imds::canonicalizeTarget(request.target());
  if (canonical) {
    check(!nmi::imds::routeName(nmi::imds::classifyRoute(*canonical)).empty(),
          "a route without a name", input);
  }
}

void checkRefused(const nmi::http::Refusal& refusal, std::string_view bytes,
                  const ServerLimits& limits, std::string_view input) {
  const unsigned status = statusOf(refusal);
  check(status >= 400 && status < 500 && !refusal.description.empty(),
        "a refusal is not a 4xx with a description", input);
  if (status == 431) {
    const std::size_t end = bytes.find("\r\n\r\n");
    check(end == std::string_view::npos || end + 4 > limits.max_header_bytes,
          "431 for a head that fits max_header_bytes", input);
  }
  if (status == 413) {
    const auto head = plain::readHead(bytes);
    if (head && head->values("transfer-encoding").empty()) {
      const auto length = plain::contentLength(*head);
      check(!length || *length > limits.max_body_bytes,
            "413 for a Content-Length within max_body_bytes", input);
    }
  }
}

bool sameVerdict(const Inspection& a, const Inspection& b) {
  if (a.refusal || b.refusal) {
    return a.refusal && b.refusal && a.refusal->status == b.refusal->status;
  }
  if (a.request || b.request) {
    return a.request && b.request && a.used == b.used &&
           a.request->method_string() == b.request->method_string() &&
           a.request->target() == b.request->target() && a.request->body() == b.request->body();
  }
  return true;
}

// Inspects the request at the start of `bytes`; returns it.
Inspection inspectOne(std::string_view bytes, const ServerLimits& limits,
                      nmi::fuzz::Choices& choices, std::string_view input) {
  Inspection got = nmi::http::inspectRequest(bytes, limits);
  check(!(got.refusal && got.request), "a request both refused and accepted", input);
  if (got.refusal) {
    checkRefused(*got.refusal, bytes, limits, input);
  } else if (got.request) {
    checkAccepted(got, bytes, limits, input);
  } else {
    check(mayWait(bytes, limits), "a complete message is left waiting for more bytes", input);
  }

  // Split invariance: the bytes so far are a prefix; the server decides again when more arrive.
  for (std::size_t i = 0; i < kPrefixesPerRequest && !bytes.empty(); ++i) {
    const std::size_t cut = choices.between(0, bytes.size() - 1);
    const Inspection early = nmi::http::inspectRequest(bytes.substr(0, cut), limits);
    const bool waiting = !early.refusal && !early.request;
    check(waiting || sameVerdict(early, got),
          "a prefix of the bytes has another verdict than the whole", input);
  }
  return got;
}

void checkEdges(const Inspection& got, std::string_view bytes, nmi::fuzz::Choices& choices,
                std::string_view input) {
  const auto head = plain::readHead(bytes);
  ServerLimits exact;
  exact.max_header_bytes = head->size;
  exact.max_body_bytes = got.request->body().size();
  const Inspection again = inspectOne(bytes, exact, choices, input);
  check(again.request && sameVerdict(again, got),
        "a request is not accepted with limits exactly its head and body", input);

  ServerLimits short_head = exact;
  short_head.max_header_bytes = head->size - 1;
  const Inspection over_head = inspectOne(bytes, short_head, choices, input);
  check(over_head.refusal && statusOf(*over_head.refusal) == 431,
        "a head one byte over max_header_bytes is not 431", input);

  if (exact.max_body_bytes > 0) {
    ServerLimits short_body = exact;
    short_body.max_body_bytes = exact.max_body_bytes - 1;
    const Inspection over_body = inspectOne(bytes, short_body, choices, input);
    check(over_body.refusal && statusOf(*over_body.refusal) == 413,
          "a body one byte over max_body_bytes is not 413", input);
  }
}

// The pipelined requests of `input` under `limits`, in turn.
void inspectConnection(std::string_view input, const ServerLimits& limits, bool edges,
                       nmi::fuzz::Choices& choices) {
  std::string_view rest = input;
  for (std::size_t n = 0; n < kMaxPipelined; ++n) {
    const Inspection got = inspectOne(rest, limits, choices, input);
    if (!got.request) {
      return;
    }
    if (edges) {
      checkEdges(got, rest, choices, input);
    }
    check(got.used > 0, "an accepted request used no bytes", input);
    rest.remove_prefix(got.used);
  }
}

void checkRawHeadAgreement(std::string_view input) {
  const auto refused = nmi::http::checkRawHead(input);
  check(refused.has_value() == !rawHeadIsClean(input),
        "checkRawHead disagrees with the counted raw rules", input);
  check(!refused || statusOf(*refused) == 400, "a raw refusal is not 400", input);
}

void checkReadErrors(std::string_view input) {
  using nmi::http::refusalForReadError;
  constexpr int kBeastErrors = 26;  // boost::beast::http::error, end_of_stream .. short_read
  for (int e = 1; e <= kBeastErrors; ++e) {
    const auto refusal = refusalForReadError(bhttp::make_error_code(static_cast<bhttp::error>(e)));
    check(!refusal || (statusOf(*refusal) >= 400 && statusOf(*refusal) < 500),
          "a read error refused with a status that is not 4xx", input);
  }
  for (const auto ended : {bhttp::make_error_code(bhttp::error::end_of_stream),
                           bhttp::make_error_code(bhttp::error::partial_message),
                           boost::system::error_code(boost::asio::error::eof),
                           boost::system::error_code(boost::asio::error::timed_out),
                           boost::system::error_code(boost::asio::error::operation_aborted),
                           boost::system::error_code(boost::asio::error::connection_reset)}) {
    check(!refusalForReadError(ended), "the end of a connection earns a refusal", input);
  }
  const auto header = refusalForReadError(bhttp::error::header_limit);
  const auto body = refusalForReadError(bhttp::error::body_limit);
  check(header && statusOf(*header) == 431 && body && statusOf(*body) == 413,
        "header_limit is not 431 or body_limit not 413", input);
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = nmi::fuzz::asText(data, size);
  nmi::fuzz::Choices choices(nmi::fuzz::hashOf(input));

  inspectConnection(input, ServerLimits{}, true, choices);

  // Tiny limits from the first two bytes: a head of 1 to 256 bytes, a body of 0 to 63.
  ServerLimits tiny;
  const auto first = size > 0 ? data[0] : 0U;
  const auto second = size > 1 ? data[1] : 0U;
  tiny.max_header_bytes = 1 + ((first * 7U + second) % 256U);
  tiny.max_body_bytes = second % 64U;
  inspectConnection(input, tiny, false, choices);

  checkRawHeadAgreement(input);
  static const bool read_errors_checked = (checkReadErrors(input), true);
  (void)read_errors_checked;
  return 0;
}
