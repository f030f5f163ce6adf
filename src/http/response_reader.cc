#include "http/response_reader.h"

#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <fmt/format.h>

namespace nmi::http {

namespace bhttp = boost::beast::http;

namespace {

Error malformed(std::string_view what) {
  return makeError(ErrorCode::Unavailable, fmt::format("upstream answer: {}", what));
}

Error tooLarge(ErrorCode code, std::size_t max) {
  return makeError(code, fmt::format("upstream answer: body larger than {} bytes", max));
}

// Beast 1.74 asserts (in builds without NDEBUG) that a last chunk whose size line it has seen is
// presented again with at least 5 bytes, although it sees that line in 3 ("0" CRLF, then it waits
// for the trailers' end). Such a start of a last chunk, shorter than 5 bytes, is held until more
// bytes arrive. Beast would answer it with need_more in any case (the shortest end, "0" CRLF CRLF,
// is 5 bytes), so the hold changes no outcome; release builds would compute the same without it.
bool heldForBeast(std::string_view rest) {
  return rest.size() < 5 && !rest.empty() && rest.front() == '0' &&
         rest.find("\r\n") != std::string_view::npos;
}

// Whether the last element of the Transfer-Encoding fields (a comma-separated list) is chunked.
template <class Message>
bool endsInChunked(const Message& res) {
  std::string_view last;
  const auto fields = res.equal_range(bhttp::field::transfer_encoding);
  for (auto it = fields.first; it != fields.second; ++it) {
    const std::string_view value = it->value();
    const std::size_t comma = value.rfind(',');
    last = comma == std::string_view::npos ? value : value.substr(comma + 1);
  }
  while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) {
    last.remove_prefix(1);
  }
  while (!last.empty() && (last.back() == ' ' || last.back() == '\t')) {
    last.remove_suffix(1);
  }
  return boost::beast::iequals(last, "chunked");
}

// Keep-alive by every Connection field (RFC 9110 section 7.6.1: several fields are one list; a
// `close` anywhere ends the connection); Beast's message::keep_alive() reads the first only.
template <class Message>
bool keepAlive(const Message& res) {
  bool close = false;
  bool keep_alive = false;
  const auto fields = res.equal_range(bhttp::field::connection);
  for (auto it = fields.first; it != fields.second; ++it) {
    for (const auto& option : bhttp::token_list{it->value()}) {
      close = close || boost::beast::iequals(option, "close");
      keep_alive = keep_alive || boost::beast::iequals(option, "keep-alive");
    }
  }
  return !close && (res.version() >= 11 || keep_alive);
}

}  // namespace

ResponseReader::ResponseReader(bool head_request, Limits limits)
    : head_request_(head_request), limits_(limits) {
  startMessage();
}

void ResponseReader::startMessage() {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
  parser_->body_limit(limits_.max_body_bytes);
  // Never eager: each put() takes one step (the head, a chunk-size line, some body bytes), so
  // that the framing bytes between two body bytes can be counted (see put()). It also keeps
  // Beast 1.74 from forgetting a Content-Length over the body limit when it goes on to parse the
  // body in the same call (and string_body reserves that length).
  parser_->eager(false);
  // A HEAD answer has no body, whatever its Content-Length says. (For an interim response the
  // flag changes nothing: 1xx never has a body.)
  parser_->skip(head_request_);
  framing_bytes_ = 0;
}

Result<std::size_t> ResponseReader::put(std::string_view bytes) {
  std::size_t used = 0;
  while (!done_ && used < bytes.size()) {
    boost::system::error_code ec;
    const bool in_head = !parser_->is_header_done();
    if (!in_head && parser_->chunked() && heldForBeast(bytes.substr(used))) {
      return used;
    }
    const std::size_t body_before = parser_->get().body().size();
    const std::size_t n =
        parser_->put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    const bool stalled = ec == bhttp::error::need_more || (!ec && n == 0);
    if (ec == bhttp::error::body_limit) {
      return tooLarge(limits_.too_large, limits_.max_body_bytes);
    }
    if (ec == bhttp::error::header_limit) {
      return malformed("head too large");
    }
    if (ec && ec != bhttp::error::need_more) {
      return malformed(ec.message());
    }
    // Bytes that are not body: the head, then each chunk-size line (with the CRLF ending the
    // chunk before it) and the last chunk with the trailers. Each run of them must fit in
    // max_header_bytes, counted here because Beast 1.74 applies its header limit to the bytes of
    // one call only (after the status line, and after each field it already took), and to no
    // chunk line or trailer at all. While the parser waits, the bytes it left belong to the run.
    if (parser_->get().body().size() > body_before) {
      framing_bytes_ = 0;
    } else {
      framing_bytes_ += n;
    }
    const std::size_t waiting = stalled ? bytes.size() - used : 0;
    if (framing_bytes_ + waiting > limits_.max_header_bytes) {
      return malformed(in_head ? "head too large" : "chunk-size line or trailers too large");
    }
    if (in_head && parser_->is_header_done()) {
      framing_bytes_ = 0;
      if (parser_->get().result_int() < 100) {
        // Beast reads any three digits; "010" is neither interim nor an answer (RFC 9110 15).
        return malformed("status code below 100");
      }
      if (parser_->get().result_int() >= 200) {
        if (auto refused = checkFinalHead()) {
          return *refused;
        }
      }
    }
    if (stalled) {
      return used;
    }
    if (!parser_->is_done()) {
      continue;
    }
    const unsigned status = parser_->get().result_int();
    if (status == 101) {
      return malformed("101 Switching Protocols to a request that asked for no upgrade");
    }
    if (status >= 100 && status < 200) {
      if (++interim_ > limits_.max_interim) {
        return malformed("too many interim responses");
      }
      startMessage();
      continue;
    }
    done_ = true;
    const auto& res = parser_->get();
    // Framing RFC 9112 calls faulty (Transfer-Encoding in HTTP/1.0) is used once, never trusted
    // for another request.
    framed_ = !parser_->need_eof() &&
              !(res.version() < 11 && res.count(bhttp::field::transfer_encoding) > 0);
  }
  return used;
}

std::optional<Error> ResponseReader::checkFinalHead() const {
  const auto& res = parser_->get();
  // A body is coming (not HEAD, 1xx, 204 or 304, which have none whatever their headers say):
  // its announced length must fit.
  const auto length = parser_->content_length();
  if (!parser_->is_done() && length && *length > limits_.max_body_bytes) {
    return tooLarge(limits_.too_large, limits_.max_body_bytes);
  }
  // Beast frames a response with Content-Length after a Transfer-Encoding that does not end in
  // chunked by the length; RFC 9112 frames it by the end of the connection and calls it an
  // error (response splitting). Refused, as the server refuses such a request.
  if (res.count(bhttp::field::transfer_encoding) > 0 &&
      res.count(bhttp::field::content_length) > 0) {
    return malformed("Transfer-Encoding with Content-Length");
  }
  // Beast takes "chunked?x" for chunked and gives up on a list it cannot parse; the body is
  // framed only when its reading and the plain one (the last element is chunked) agree.
  if (res.count(bhttp::field::transfer_encoding) > 0 && endsInChunked(res) != parser_->chunked()) {
    return malformed("unreadable Transfer-Encoding");
  }
  return std::nullopt;
}

Result<void> ResponseReader::putEof() {
  if (done_) {
    return {};
  }
  if (parser_->got_some() && parser_->is_header_done() && parser_->need_eof()) {
    boost::system::error_code ec;
    parser_->put_eof(ec);
    if (!ec && parser_->is_done()) {
      done_ = true;
      framed_ = false;
      return {};
    }
  }
  return malformed("connection closed before the answer was complete");
}

bool ResponseReader::reusable(std::size_t leftover) const {
  return done_ && framed_ && leftover == 0 && keepAlive(parser_->get());
}

ClientResponse ResponseReader::take() {
  ClientResponse out;
  auto& res = parser_->get();
  out.status = res.result_int();
  for (const auto& field : res) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(res.body());
  return out;
}

}  // namespace nmi::http
