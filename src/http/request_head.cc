#include "http/request_head.h"

#include <iterator>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

namespace nmi::http {

namespace bhttp = boost::beast::http;
using boost::system::error_code;

HeadScan scanHead(std::string_view buffered, const ServerLimits& limits) {
  HeadScan scan;
  const std::size_t end = buffered.find("\r\n\r\n");
  if (end != std::string_view::npos && end + 4 <= limits.max_header_bytes) {
    scan.head_bytes = end + 4;
    scan.refusal = checkRawHead(buffered.substr(0, scan.head_bytes));
    scan.kind = scan.refusal ? HeadScan::Kind::Refused : HeadScan::Kind::Ready;
    return scan;
  }
  if (buffered.size() >= limits.max_header_bytes) {
    scan.kind = HeadScan::Kind::Refused;
    scan.refusal =
        Refusal{bhttp::status::request_header_fields_too_large, "Request header too large"};
  }
  return scan;
}

std::optional<Refusal> checkRawHead(std::string_view head) {
  for (std::size_t i = 0; i < head.size(); ++i) {
    const char c = head[i];
    if (c == '\0') {
      return Refusal{bhttp::status::bad_request, "Malformed request"};
    }
    if (c == '\r' && (i + 1 >= head.size() || head[i + 1] != '\n')) {
      return Refusal{bhttp::status::bad_request, "Malformed request"};
    }
    if (c == '\n') {
      if (i == 0 || head[i - 1] != '\r') {
        return Refusal{bhttp::status::bad_request, "Malformed request"};
      }
      if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) {
        return Refusal{bhttp::status::bad_request, "Obsolete line folding is not accepted"};
      }
    }
  }
  return std::nullopt;
}

std::optional<Refusal> checkHead(const Request& head) {
  const auto hosts = head.equal_range(bhttp::field::host);
  const auto host_count = std::distance(hosts.first, hosts.second);
  if (host_count > 1 || (head.version() >= 11 && host_count != 1)) {
    return Refusal{bhttp::status::bad_request, "Exactly one Host header is required"};
  }
  const auto te = head.equal_range(bhttp::field::transfer_encoding);
  if (te.first != te.second) {
    if (head.count(bhttp::field::content_length) > 0) {
      return Refusal{bhttp::status::bad_request, "Conflicting message framing"};
    }
    std::string_view last;
    for (auto it = te.first; it != te.second; ++it) {
      const std::string_view v = it->value();
      const auto comma = v.rfind(',');
      last = comma == std::string_view::npos ? v : v.substr(comma + 1);
    }
    while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) {
      last.remove_prefix(1);
    }
    while (!last.empty() && (last.back() == ' ' || last.back() == '\t')) {
      last.remove_suffix(1);
    }
    if (!boost::beast::iequals(last, "chunked")) {
      return Refusal{bhttp::status::bad_request, "Unsupported transfer coding"};
    }
  }
  return std::nullopt;
}

std::optional<Refusal> checkParsedHead(const bhttp::request_parser<bhttp::string_body>& parser,
                                       const error_code& ec) {
  if (ec && ec != bhttp::error::need_more) {
    // header_limit although the head fits max_header_bytes: Beast looked past the head's end
    // (a version takes 8 bytes) and stopped at its window. Malformed, not too large.
    if (ec != bhttp::error::header_limit) {
      if (auto refused = refusalForReadError(ec)) {
        return refused;
      }
    }
    return Refusal{bhttp::status::bad_request, "Malformed request"};
  }
  if (!parser.is_header_done()) {
    // The whole head was buffered, so Beast stopping inside it means it cannot read it (a
    // request line ending within the 8 bytes a version takes): more bytes would not help.
    return Refusal{bhttp::status::bad_request, "Malformed request"};
  }
  if (auto refused = checkHead(parser.get())) {
    return refused;
  }
  // checkHead() read the codings as a list ending in chunked; Beast frames the body by its own
  // reading, which gives up on a list it cannot parse ("chun:, chunked") and then reads no body
  // at all, leaving the chunks to be taken as the next request. Both must agree.
  if (parser.get().count(bhttp::field::transfer_encoding) > 0 && !parser.chunked()) {
    return Refusal{bhttp::status::bad_request, "Unsupported transfer coding"};
  }
  return std::nullopt;
}

std::optional<Refusal> refusalForReadError(const error_code& ec) {
  if (ec == bhttp::error::header_limit) {
    return Refusal{bhttp::status::request_header_fields_too_large, "Request header too large"};
  }
  if (ec == bhttp::error::body_limit) {
    return Refusal{bhttp::status::payload_too_large, "Request body too large"};
  }
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
      ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
      ec != bhttp::error::need_more && ec != bhttp::error::need_buffer) {
    return Refusal{bhttp::status::bad_request, "Malformed request"};
  }
  return std::nullopt;
}

Inspection inspectRequest(std::string_view bytes, const ServerLimits& limits) {
  Inspection out;
  const HeadScan scan = scanHead(bytes, limits);
  if (scan.kind != HeadScan::Kind::Ready) {
    out.refusal = scan.refusal;
    return out;
  }
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);
  // As the server: the head alone first (not eager: the parser stops after it), so that the
  // head's rules decide before any body byte, however the bytes arrived.
  parser.eager(false);
  error_code ec;
  std::size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  if (auto refused = checkParsedHead(parser, ec)) {
    out.refusal = refused;
    return out;
  }
  ec = {};
  // Then as much body as is there, as the server's async_read would take it.
  parser.eager(true);
  while (!ec && !parser.is_done() && used < bytes.size()) {
    const std::size_t n =
        parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == bhttp::error::need_more) {
      ec = {};
      break;
    }
    if (n == 0) {
      break;
    }
  }
  if (ec) {
    out.refusal = refusalForReadError(ec);
    return out;
  }
  if (parser.is_done()) {
    out.request = parser.release();
    out.used = used;
  }
  return out;
}

}  // namespace nmi::http
