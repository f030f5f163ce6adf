#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nmi::http {

// An absolute http or https URL split for a client: the authority and the request target.
struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets for IPv6 literals
  std::uint16_t port = 0;
  std::string target;  // path and query, starting with '/'
  bool host_is_ip = false;
  // host:port as the Host header and CONNECT want it (brackets for IPv6).
  std::string authority() const;
};

// Parses `http[s]://host[:port][/path][?query]`. No userinfo, no fragment. Errors: InvalidArgument.
Result<Url> parseUrl(std::string_view url);

// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
std::string urlEncode(std::string_view value);

// Whether NO_PROXY (comma- or space-separated: "*", host names, ".domain" suffixes, IP
// addresses, CIDR ranges, each optionally with ":port") exempts host:port from the proxy.
bool bypassesProxy(std::string_view host, std::uint16_t port, std::string_view no_proxy);

// An HTTPS_PROXY value: "http://[user:pass@]host:port" or "host:port".
struct ProxyUrl {
  std::string host;
  std::uint16_t port = 0;
  std::string basic_credentials;  // "user:pass" (not encoded) or empty
};
Result<ProxyUrl> parseProxyUrl(std::string_view value);

}  // namespace nmi::http
