#include "http/response_reader.h"

#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <fmt/format.h>

namespace nmi::http {

namespace bhttp = boost::beast::http;

namespace {

Error malformed(std::string_view what) {
  return makeError(ErrorCode::Unavailable, fmt::format("upstream answer: {}", what));
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
  // Not eager until the head is checked: Beast 1.74 forgets a Content-Length over the body limit
  // when it goes on to parse the body in the same call (and string_body reserves that length).
  parser_->eager(false);
  // A HEAD answer has no body, whatever its Content-Length says. (For an interim response the
  // flag changes nothing: 1xx never has a body.)
  parser_->skip(head_request_);
}

Result<std::size_t> ResponseReader::put(std::string_view bytes) {
  std::size_t used = 0;
  while (!done_ && used < bytes.size()) {
    boost::system::error_code ec;
    const std::size_t n =
        parser_->put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == bhttp::error::need_more) {
      return used;
    }
    if (ec == bhttp::error::body_limit) {
      return malformed("body too large");
    }
    if (ec == bhttp::error::header_limit) {
      return malformed("head too large");
    }
    if (ec) {
      return malformed(ec.message());
    }
    if (parser_->is_header_done() && !parser_->eager()) {
      const auto length = parser_->content_length();
      if (length && *length > limits_.max_body_bytes) {
        return malformed("body too large");
      }
      parser_->eager(true);
    }
    if (!parser_->is_done()) {
      if (n == 0) {
        return used;  // (the parser wants more and said so without need_more)
      }
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
    framed_ = !parser_->need_eof();
  }
  return used;
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
  return done_ && framed_ && leftover == 0 && parser_->get().keep_alive();
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
