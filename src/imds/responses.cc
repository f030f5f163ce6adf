#include "imds/responses.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include <boost/beast/core/string.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace nmi::imds {

namespace bhttp = boost::beast::http;

namespace {

struct ReplySpec {
  unsigned status;
  std::string_view error;
  std::string_view description;
  std::string_view retry_after;
};

ReplySpec specFor(Reply reply) {
  switch (reply) {
    case Reply::MetadataHeaderMissing:
      return {400, "invalid_request", "Required metadata header not specified", ""};
    case Reply::ForwardedHeader:
      return {400, "invalid_request", "Forwarded requests are not accepted", ""};
    case Reply::BadRequestTarget:
      return {400, "invalid_request", "Invalid request target", ""};
    case Reply::InvalidTokenPath:
      return {400, "invalid_request", "Invalid request", ""};
    case Reply::ResourceMissing:
      return {400, "invalid_request", "Required query variable 'resource' is missing", ""};
    case Reply::ConflictingSelectors:
      return {400, "invalid_request",
              "Only one of client_id, msi_res_id and object_id may be specified", ""};
    case Reply::IdentityNotFoundObjectId:
      return {400, "invalid_request", "Identity not found", ""};
    case Reply::HostHeadersMissing:
      return {400, "invalid_request", "Missing 'podname' and 'podns' request headers", ""};
    case Reply::HostPeerNotLoopback:
      return {403, "forbidden", "Request is not from the host", ""};
    case Reply::InstanceBlocked:
      return {403, "forbidden", "Request blocked by nmi", ""};
    case Reply::IdentityPathBlocked:
      return {403, "forbidden", "Request blocked by nmi", ""};
    case Reply::TokenRefused:
      return {403, "forbidden", "The token request for this identity was refused", ""};
    // Permanent misconfigurations: 403, which no SDK retries (404, 429 and 5xx are retried for
    // up to two minutes; 400 reads as "no identity here" and sends credential chains onwards).
    case Reply::CredentialSecretRefused:
      return {403, "forbidden",
              "The identity's credential Secret is not in the identity's namespace", ""};
    case Reply::AadHostRefused:
      return {403, "forbidden", "The identity's Azure AD host is not allowed by nmi", ""};
    case Reply::NotFound:
      return {404, "not_found", "Not found", ""};
    case Reply::MethodNotAllowed:
      return {405, "method_not_allowed", "The method is not allowed on this path", ""};
    case Reply::IdentityNotFound:
      return {404, "not_found", "No identity is assigned to this pod for this request", ""};
    case Reply::TooManyRequests:
      return {429, "too_many_requests", "Too many token requests from this pod", "1"};
    case Reply::ProxyBusyForPod:
      return {429, "too_many_requests", "Too many concurrent requests from this pod", "1"};
    case Reply::PodNotFound:
      return {500, "server_error", "No pod on this node has the request's source address", ""};
    case Reply::PodConflict:
      return {500, "server_error", "Several pods claim the request's source address", ""};
    case Reply::NotReady:
      return {503, "service_unavailable", "Identity data is not available yet", "1"};
    case Reply::IdentityNotReady:
      return {503, "service_unavailable", "The identity is not assigned yet", "20"};
    case Reply::TokenUnavailable:
      return {503, "service_unavailable", "A token could not be obtained at this time", ""};
    case Reply::ProxyOverloaded:
      return {503, "service_unavailable", "Too many requests to the instance metadata service",
              "1"};
    case Reply::UpstreamUnreachable:
      return {502, "service_unavailable", "The instance metadata service is unavailable", ""};
    case Reply::UpstreamTimeout:
      return {504, "service_unavailable", "The instance metadata service did not answer", ""};
    case Reply::Internal:
      return {500, "server_error", "Internal error", ""};
  }
  return {500, "server_error", "Internal error", ""};
}

std::string str(std::int64_t v) {
  return std::to_string(v);
}

// Length of the valid UTF-8 sequence starting at s[i] (a byte >= 0x80), or 0 when invalid.
std::size_t utf8Length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t min = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) {
    return 0;
  }
  std::uint32_t cp = c & (0xFFU >> (n + 1));
  for (std::size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0U) != 0x80U) {
      return 0;
    }
    cp = (cp << 6U) | (cc & 0x3FU);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

// Bytes that can be copied into a JSON string as they are: printable ASCII but '"' and '\\'.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x7F; ++c) {
    t[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
  }
  return t;
}();

// Appends `s` as a JSON string. The common case (a JWT, a URL, a GUID: printable ASCII without
// quotes or backslashes) is one copy; controls are escaped, valid UTF-8 kept, and invalid bytes
// (the resource comes from the pod) become U+FFFD so that the answer is always valid JSON.
void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (kPlain[c]) {
      continue;
    }
    if (c >= 0x80) {
      if (const std::size_t n = utf8Length(s, i); n > 0) {
        i += n - 1;
        continue;
      }
      out.append(s.substr(start, i - start));
      out.append("\\ufffd");
      start = i + 1;
      continue;
    }
    out.append(s.substr(start, i - start));
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        out.append(fmt::format("\\u{:04x}", c));
    }
    start = i + 1;
  }
  out.append(s.substr(start));
  out.push_back('"');
}

void appendField(std::string& out, std::string_view name, std::string_view value, bool first) {
  if (!first) {
    out.push_back(',');
  }
  out.push_back('"');
  out.append(name);
  out.append("\":");
  appendJsonString(out, value);
}

// The eight string fields IMDS sends, in IMDS's order.
void appendTokenObject(std::string& out, const token::AccessToken& token, std::string_view resource,
                       std::string_view client_id, SystemTime now) {
  const std::int64_t expires_on = toUnixSeconds(token.expires_on);
  const std::int64_t expires_in = std::max<std::int64_t>(0, expires_on - toUnixSeconds(now));
  const std::int64_t ext = token.ext_expires_in > 0 ? token.ext_expires_in : expires_in;
  // IMDS says "Bearer"; ADFS answers "bearer".
  const std::string_view token_type =
      token.token_type.empty() || boost::beast::iequals(token.token_type, "bearer")
          ? std::string_view("Bearer")
          : std::string_view(token.token_type);
  out.push_back('{');
  appendField(out, "access_token", token.access_token, true);
  appendField(out, "client_id", client_id, false);
  appendField(out, "expires_in", str(expires_in), false);
  appendField(out, "expires_on", str(expires_on), false);
  appendField(out, "ext_expires_in", str(ext), false);
  appendField(out, "not_before", str(toUnixSeconds(token.not_before)), false);
  appendField(out, "resource", resource, false);
  appendField(out, "token_type", token_type, false);
  out.push_back('}');
}

std::string dump(const nlohmann::ordered_json& j) {
  // Replace invalid UTF-8 rather than throw: the resource comes from the pod.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

unsigned statusFor(Reply reply) {
  return specFor(reply).status;
}

http::Response jsonResponse(unsigned status, std::string body, unsigned http_version) {
  http::Response res{static_cast<bhttp::status>(status), http_version};
  res.set(bhttp::field::content_type, "application/json; charset=utf-8");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

http::Response makeReply(Reply reply, unsigned http_version) {
  const ReplySpec spec = specFor(reply);
  nlohmann::ordered_json j;
  j["error"] = std::string(spec.error);
  j["error_description"] = std::string(spec.description);
  http::Response res = jsonResponse(spec.status, dump(j) + "\n", http_version);
  if (!spec.retry_after.empty()) {
    res.set(bhttp::field::retry_after, spec.retry_after);
  }
  return res;
}

std::string tokenJson(const token::AccessToken& token, std::string_view resource,
                      std::string_view client_id, SystemTime now) {
  std::string out;
  out.reserve(token.access_token.size() + resource.size() + 256);
  appendTokenObject(out, token, resource, client_id, now);
  return out;
}

std::string hostTokenJson(const token::AccessToken& token, std::string_view resource,
                          std::string_view client_id, SystemTime now) {
  std::string out;
  out.reserve(token.access_token.size() + resource.size() + 300);
  out.append("{\"token\":");
  appendTokenObject(out, token, resource, client_id, now);
  out.append(",\"clientid\":");
  appendJsonString(out, client_id);
  out.push_back('}');
  return out;
}

}  // namespace nmi::imds
