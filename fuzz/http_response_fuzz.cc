// libFuzzer target for the upstream response reader (http/response_reader.h). The input is what an
// upstream sends on a connection after one request: interim responses, the answer, and perhaps
// bytes after it. It is read as the answer to GET and to HEAD, under the default limits, under
// small limits chosen from the input, and under limits exactly at the response's own sizes; each
// time delivered whole, in pieces chosen from the input and a byte at a time, then (by a choice
// from the input) the end of the connection. Aborts when one of these does not hold:
//   * chunking invariance: every delivery gives the same outcome (error or not, done, status,
//     headers, body, interim count, leftover, reusable), except that an unfinished answer may be
//     found broken before its end in one delivery and still be waiting in another;
//   * the reader never holds more than max_header_bytes of bytes it has not used before done;
//   * a done outcome agrees with a plain reading of the bytes (fuzz/http_support.h): the interim
//     responses are the leading 1xx heads (101 excepted, which is an error), at most max_interim;
//     the final status is that of the next head and never 1xx; every run of bytes that are not
//     body (a head, the bytes between two chunks' data) fits max_header_bytes; no Transfer-Encoding
//     with Content-Length; the body is framed by RFC 9112 section 6.3: none for HEAD, 204 and 304,
//     else chunked when Transfer-Encoding ends in chunked, else the end of the connection when
//     there is a Transfer-Encoding, else Content-Length, else the end of the connection; it is the
//     decoded bytes, at most max_body_bytes, and the leftover is exactly what follows it;
//   * reuse: reusable(0) only when the length was known (not framed by the end of the connection,
//     done before it), the framing was not faulty (Transfer-Encoding in HTTP/1.0), and keep-alive
//     holds (no `close` in any Connection field, and HTTP/1.1 or `keep-alive`); reusable(n) is
//     false for any n > 0; an unchunked answer of known length with keep-alive is reusable(0);
//   * limits at the edge: the outcome is the same with max_header_bytes the longest run of
//     non-body bytes, max_body_bytes the body and max_interim the interim count; one less of any
//     is an error;
//   * putEof() after done changes nothing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "http/response_reader.h"
#include "http_support.h"

namespace {

namespace plain = nmi::fuzz::http;
using nmi::fuzz::check;
using nmi::http::ResponseReader;

struct Outcome {
  bool failed = false;  // put() or putEof() returned an error
  bool done = false;
  bool at_eof = false;  // done only once the end of the connection was reported
  int interim = 0;
  std::size_t leftover = 0;
  bool reusable = false;        // reusable(leftover)
  bool reusable_empty = false;  // reusable(0)
  nmi::http::ClientResponse response;
  std::string error;  // the error's message (not compared: it may name where the bytes broke)

  bool operator==(const Outcome& o) const {
    return failed == o.failed && done == o.done && at_eof == o.at_eof && interim == o.interim &&
           leftover == o.leftover && reusable == o.reusable && reusable_empty == o.reusable_empty &&
           response.status == o.response.status && response.headers == o.response.headers &&
           response.body == o.response.body;
  }
};

// How the bytes arrive: all at once, one byte at a time, or pieces chosen from the input.
enum class Delivery { Whole, Bytes, Pieces };

struct Reading {
  bool head_request = false;
  bool eof = false;
  ResponseReader::Limits limits;
};

// Feeds `wire` as BeastHttpClient does: the bytes not used yet plus the next piece, until done.
Outcome readWire(std::string_view wire, const Reading& how, Delivery delivery,
                 nmi::fuzz::Choices& choices, std::string_view input) {
  ResponseReader reader(how.head_request, how.limits);
  Outcome out;
  std::string pending;
  std::size_t offset = 0;
  while (!reader.done() && offset < wire.size()) {
    std::size_t n = wire.size() - offset;
    if (delivery == Delivery::Bytes) {
      n = 1;
    } else if (delivery == Delivery::Pieces && choices.next() % 8 != 0) {
      n = std::min(n, choices.between(1, 40));
    }
    pending.append(wire.substr(offset, n));
    if (std::getenv("NMI_FUZZ_DEBUG2") != nullptr) {
      std::fprintf(stderr, "piece %zu pending %zu\n", n, pending.size());
    }
    offset += n;
    const auto used = reader.put(pending);
    if (!used) {
      check(used.error().code == nmi::ErrorCode::Unavailable && !used.error().message.empty(),
            "an error that is not Unavailable or has no message", input);
      out.failed = true;
      out.error = used.error().message;
      return out;
    }
    check(*used <= pending.size(), "put() used more bytes than it was given", input);
    pending.erase(0, *used);
    check(reader.done() || pending.size() <= how.limits.max_header_bytes,
          "the reader holds more than max_header_bytes of unused bytes", input);
  }
  if (!reader.done() && how.eof) {
    const auto ended = reader.putEof();
    if (!ended) {
      check(ended.error().code == nmi::ErrorCode::Unavailable && !ended.error().message.empty(),
            "an EOF error that is not Unavailable or has no message", input);
      out.failed = true;
      out.error = ended.error().message;
      return out;
    }
    check(reader.done(), "putEof() succeeded without completing the response", input);
    out.at_eof = true;
  }
  out.done = reader.done();
  out.interim = reader.interimCount();
  out.leftover = pending.size() + (wire.size() - offset);
  out.reusable = reader.reusable(out.leftover);
  out.reusable_empty = reader.reusable(0);
  check(!reader.reusable(out.leftover + 1), "reusable with bytes left after the response", input);
  if (out.done) {
    // The end of the connection after the answer changes nothing.
    check(static_cast<bool>(reader.putEof()) && reader.done() &&
              reader.interimCount() == out.interim && reader.reusable(0) == out.reusable_empty,
          "putEof() after done changed the outcome", input);
    out.response = reader.take();
  } else {
    check(!out.reusable_empty, "reusable before done", input);
  }
  return out;
}

int statusOf(const plain::Head& head) {
  const std::string& line = head.start_line;
  if (plain::versionOf(line) == 0 || line.size() < 12 || line[8] != ' ') {
    return -1;
  }
  int status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') {
      return -1;
    }
    status = status * 10 + (line[i] - '0');
  }
  return status;
}

// Keep-alive by RFC 9112 section 9.3: no `close` in any Connection field, and HTTP/1.1 or a
// `keep-alive` option.
bool keepAlive(const plain::Head& head, int version) {
  return !plain::listHas(head, "connection", "close") &&
         (version == 11 || plain::listHas(head, "connection", "keep-alive"));
}

// The plain reading of a done outcome. Returns the longest run of bytes that are not body: a head,
// or what lies between two chunks' data (a chunk-size line, the trailers).
std::size_t checkDone(const Outcome& out, std::string_view wire, const Reading& how,
                      std::string_view input) {
  std::size_t pos = 0;
  int interim = 0;
  std::size_t longest_run = 0;
  std::optional<plain::Head> head;
  int status = 0;
  while (true) {
    head = plain::readHead(wire.substr(pos));
    check(head.has_value(), "a done response has no head by a plain reading", input);
    longest_run = std::max(longest_run, head->size);
    status = statusOf(*head);
    check(status >= 100, "a done response's status line is not HTTP/1.x SP 3DIGIT", input);
    check(status != 101, "a 101 was taken", input);
    if (status >= 200) {
      break;
    }
    ++interim;
    pos += head->size;
  }
  check(out.interim == interim, "the interim count is not the number of leading 1xx heads", input);
  check(interim <= how.limits.max_interim, "more interim responses than max_interim", input);
  check(out.response.status == static_cast<unsigned>(status),
        "the final status is not the final head's", input);

  const int version = plain::versionOf(head->start_line);
  const bool has_te = !head->values("transfer-encoding").empty();
  const bool has_cl = !head->values("content-length").empty();
  check(!(has_te && has_cl), "a response with Transfer-Encoding and Content-Length was taken",
        input);
  const bool faulty = has_te && version == 10;
  const std::string_view rest = wire.substr(pos + head->size);
  std::string body;
  std::size_t framed = 0;
  bool known_length = true;
  if (how.head_request || status == 204 || status == 304) {
    framed = 0;
  } else if (has_te && plain::chunkedLast(*head)) {
    const plain::Chunked chunked = plain::readChunked(rest);
    check(chunked.state == plain::Chunked::State::Complete,
          "a done chunked body is not complete by a plain reading", input);
    body = chunked.payload;
    framed = chunked.size;
    for (const std::size_t gap : chunked.gaps) {
      longest_run = std::max(longest_run, gap);
    }
  } else if (!has_te && has_cl) {
    const auto length = plain::contentLength(*head);
    check(length.has_value() && *length <= rest.size(),
          "a done Content-Length body is not there by a plain reading", input);
    body = std::string(rest.substr(0, *length));
    framed = *length;
  } else {
    known_length = false;
    check(out.at_eof, "a response framed by the end of the connection was done before it", input);
    body = std::string(rest);
    framed = rest.size();
  }
  check(out.response.body == body, "the body is not the framed bytes", input);
  check(out.response.body.size() <= how.limits.max_body_bytes, "a body over max_body_bytes", input);
  check(!how.head_request || out.response.body.empty(), "an answer to HEAD has a body", input);
  check(out.leftover == wire.size() - (pos + head->size + framed),
        "the leftover is not what follows the framed body", input);

  check(longest_run <= how.limits.max_header_bytes,
        "a head, chunk-size line or trailers over max_header_bytes was taken", input);
  const bool keep_alive = keepAlive(*head, version);
  if (out.reusable_empty) {
    check(known_length && !out.at_eof, "reusable after a response framed by the close", input);
    check(!faulty, "reusable after faulty framing (Transfer-Encoding in HTTP/1.0)", input);
    check(keep_alive, "reusable without keep-alive", input);
  } else {
    // (Chunked answers aside: a trailer field may say close.)
    check(!(known_length && !faulty && keep_alive && !has_te),
          "a clean answer of known length is not reusable", input);
  }
  return longest_run;
}

std::string describe(const Outcome& o) {
  return std::string(o.failed ? "failed"
                     : o.done ? "done"
                              : "waiting") +
         (o.at_eof ? " at eof" : "") + " status " + std::to_string(o.response.status) + " body " +
         std::to_string(o.response.body.size()) + " interim " + std::to_string(o.interim) +
         " leftover " + std::to_string(o.leftover) + (o.reusable_empty ? " reusable" : "") +
         (o.failed ? " (" + o.error + ")" : "");
}

std::vector<Outcome> readAllWays(std::string_view wire, const Reading& how,
                                 nmi::fuzz::Choices& choices, std::string_view input) {
  std::vector<Outcome> outs;
  outs.push_back(readWire(wire, how, Delivery::Whole, choices, input));
  outs.push_back(readWire(wire, how, Delivery::Pieces, choices, input));
  if (wire.size() <= 1024) {
    outs.push_back(readWire(wire, how, Delivery::Bytes, choices, input));
  }
  for (const Outcome& o : outs) {
    // An unfinished answer may be found broken before its end arrives in one delivery and not
    // yet in another (Beast checks a field once the whole head is there, or as it goes).
    const bool unfinished = !o.done && !outs.front().done;
    if (!(o == outs.front()) && !unfinished) {
      nmi::fuzz::violated("the outcome depends on how the bytes were split (whole: " +
                              describe(outs.front()) + "; split: " + describe(o) + ")",
                          input);
    }
  }
  return outs;
}

void checkReading(std::string_view wire, const Reading& how, bool edges,
                  nmi::fuzz::Choices& choices, std::string_view input) {
  const Outcome out = readAllWays(wire, how, choices, input).front();
  if (std::getenv("NMI_FUZZ_DEBUG") != nullptr) {
    std::fprintf(stderr, "head=%d eof=%d limits %zu/%zu/%d: %s\n", how.head_request ? 1 : 0,
                 how.eof ? 1 : 0, how.limits.max_header_bytes, how.limits.max_body_bytes,
                 how.limits.max_interim, describe(out).c_str());
  }
  if (!out.done) {
    return;
  }
  const std::size_t longest_run = checkDone(out, wire, how, input);
  if (!edges) {
    return;
  }
  Reading exact = how;
  exact.limits.max_header_bytes = longest_run;
  exact.limits.max_body_bytes = out.response.body.size();
  exact.limits.max_interim = out.interim;
  check(readAllWays(wire, exact, choices, input).front() == out,
        "the outcome changes with limits exactly at the response's sizes", input);
  Reading less = exact;
  less.limits.max_header_bytes = longest_run - 1;
  check(readAllWays(wire, less, choices, input).front().failed,
        "a head or chunk line one byte over max_header_bytes is not an error", input);
  if (exact.limits.max_body_bytes > 0) {
    less = exact;
    less.limits.max_body_bytes = exact.limits.max_body_bytes - 1;
    check(readAllWays(wire, less, choices, input).front().failed,
          "a body one byte over max_body_bytes is not an error", input);
  }
  if (exact.limits.max_interim > 0) {
    less = exact;
    less.limits.max_interim = exact.limits.max_interim - 1;
    check(readAllWays(wire, less, choices, input).front().failed,
          "one interim response over max_interim is not an error", input);
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = nmi::fuzz::asText(data, size);
  nmi::fuzz::Choices choices(nmi::fuzz::hashOf(input));
  const bool eof = choices.next() % 2 == 0;
  for (const bool head_request : {false, true}) {
    Reading defaults;
    defaults.head_request = head_request;
    defaults.eof = eof;
    checkReading(input, defaults, true, choices, input);

    Reading small = defaults;
    small.limits.max_header_bytes = choices.between(8, 256);
    small.limits.max_body_bytes = choices.between(0, 64);
    small.limits.max_interim = static_cast<int>(choices.between(0, 3));
    checkReading(input, small, false, choices, input);
  }
  return 0;
}
