#include "http/url.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

namespace nmi::http {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::optional<std::uint16_t> parsePort(std::string_view s) {
  unsigned value = 0;
  if (s.empty() || s.size() > 5) {
    return std::nullopt;
  }
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

bool validHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

struct HostPort {
  std::string host;
  std::optional<std::uint16_t> port;
  bool ip = false;
};

// host, host:port, [v6], [v6]:port
Result<HostPort> splitHostPort(std::string_view authority) {
  HostPort out;
  std::string_view host;
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return makeError(ErrorCode::InvalidArgument, "unterminated IPv6 literal");
    }
    host = authority.substr(1, close - 1);
    const auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') {
        return makeError(ErrorCode::InvalidArgument, "junk after IPv6 literal");
      }
      port = rest.substr(1);
    }
    boost::system::error_code ec;
    boost::asio::ip::make_address_v6(std::string(host), ec);
    if (ec) {
      return makeError(ErrorCode::InvalidArgument, "invalid IPv6 literal");
    }
    out.ip = true;
  } else {
    const auto colon = authority.rfind(':');
    host = colon == std::string_view::npos ? authority : authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(), validHostChar)) {
      return makeError(ErrorCode::InvalidArgument, "invalid host");
    }
    boost::system::error_code ec;
    boost::asio::ip::make_address_v4(std::string(host), ec);
    out.ip = !ec;
  }
  if (host.empty()) {
    return makeError(ErrorCode::InvalidArgument, "empty host");
  }
  out.host = lower(host);
  if (!port.empty() || authority.ends_with(':')) {
    const auto p = parsePort(port);
    if (!p) {
      return makeError(ErrorCode::InvalidArgument, "invalid port");
    }
    out.port = p;
  }
  return out;
}

}  // namespace

std::string Url::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

Result<Url> parseUrl(std::string_view url) {
  Url out;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    return makeError(ErrorCode::InvalidArgument, "URL without scheme");
  }
  out.scheme = lower(url.substr(0, sep));
  if (out.scheme != "http" && out.scheme != "https") {
    return makeError(ErrorCode::InvalidArgument, "unsupported scheme " + out.scheme);
  }
  auto rest = url.substr(sep + 3);
  if (rest.find('#') != std::string_view::npos) {
    return makeError(ErrorCode::InvalidArgument, "URL with a fragment");
  }
  const auto path_start = rest.find_first_of("/?");
  const auto authority = rest.substr(0, path_start);
  if (authority.find('@') != std::string_view::npos) {
    return makeError(ErrorCode::InvalidArgument, "URL with userinfo");
  }
  auto hp = splitHostPort(authority);
  if (!hp) {
    return hp.error();
  }
  out.host = hp->host;
  out.host_is_ip = hp->ip;
  out.port = hp->port.value_or(out.scheme == "https" ? 443 : 80);
  if (path_start == std::string_view::npos) {
    out.target = "/";
  } else {
    const auto target = rest.substr(path_start);
    out.target = target.starts_with('?') ? "/" + std::string(target) : std::string(target);
  }
  for (const char c : out.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F) {
      return makeError(ErrorCode::InvalidArgument, "URL with a space, control or non-ASCII byte");
    }
  }
  return out;
}

std::string urlEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size() * 3);
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4U];
      out += kHex[c & 15U];
    }
  }
  return out;
}

bool bypassesProxy(std::string_view host, std::uint16_t port, std::string_view no_proxy) {
  const std::string h = lower(host);
  boost::system::error_code ec;
  const auto host_ip = boost::asio::ip::make_address(h, ec);
  const bool is_ip = !ec;
  std::size_t pos = 0;
  while (pos <= no_proxy.size()) {
    const auto end = no_proxy.find_first_of(", ", pos);
    std::string_view entry =
        no_proxy.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? no_proxy.size() + 1 : end + 1;
    if (entry.empty()) {
      continue;
    }
    if (entry == "*") {
      return true;
    }
    // CIDR ranges.
    if (entry.find('/') != std::string_view::npos) {
      if (!is_ip) {
        continue;
      }
      if (host_ip.is_v4()) {
        const auto net = boost::asio::ip::make_network_v4(std::string(entry), ec);
        if (!ec &&
            (host_ip.to_v4().to_uint() & net.netmask().to_uint()) == net.network().to_uint()) {
          return true;
        }
      } else {
        const auto net = boost::asio::ip::make_network_v6(std::string(entry), ec);
        if (!ec &&
            boost::asio::ip::make_network_v6(host_ip.to_v6(), net.prefix_length()).canonical() ==
                net.canonical()) {
          return true;
        }
      }
      continue;
    }
    auto hp = splitHostPort(entry.starts_with('.') ? entry.substr(1) : entry);
    if (!hp) {
      continue;
    }
    if (hp->port && *hp->port != port) {
      continue;
    }
    if (h == hp->host || (!is_ip && h.size() > hp->host.size() && h.ends_with(hp->host) &&
                          h[h.size() - hp->host.size() - 1] == '.')) {
      return true;
    }
  }
  return false;
}

Result<ProxyUrl> parseProxyUrl(std::string_view value) {
  ProxyUrl out;
  auto rest = value;
  if (const auto sep = rest.find("://"); sep != std::string_view::npos) {
    if (lower(rest.substr(0, sep)) != "http") {
      return makeError(ErrorCode::InvalidArgument, "only http:// proxies are supported");
    }
    rest = rest.substr(sep + 3);
  }
  while (rest.ends_with('/')) {
    rest.remove_suffix(1);
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    out.basic_credentials = std::string(rest.substr(0, at));
    rest = rest.substr(at + 1);
  }
  auto hp = splitHostPort(rest);
  if (!hp) {
    return makeError(ErrorCode::InvalidArgument, "invalid proxy address: " + hp.error().message);
  }
  out.host = hp->host;
  out.port = hp->port.value_or(80);
  return out;
}

}  // namespace nmi::http
