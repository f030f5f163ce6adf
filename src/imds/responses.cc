#include "imds/responses.h"

#include <algorithm>

#include <boost/beast/core/string.hpp>
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
    case Reply::NotFound:
      return {404, "not_found", "Not found", ""};
    case Reply::IdentityNotFound:
      return {404, "not_found", "No identity is assigned to this pod for this request", ""};
    case Reply::TooManyRequests:
      return {429, "too_many_requests", "Too many token requests from this pod", "1"};
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

nlohmann::ordered_json tokenObject(const token::AccessToken& token, std::string_view resource,
                                   std::string_view client_id, SystemTime now) {
  const std::int64_t expires_on = toUnixSeconds(token.expires_on);
  const std::int64_t expires_in = std::max<std::int64_t>(0, expires_on - toUnixSeconds(now));
  const std::int64_t ext = token.ext_expires_in > 0 ? token.ext_expires_in : expires_in;
  nlohmann::ordered_json j;
  j["access_token"] = token.access_token;
  j["client_id"] = std::string(client_id);
  j["expires_in"] = str(expires_in);
  j["expires_on"] = str(expires_on);
  j["ext_expires_in"] = str(ext);
  j["not_before"] = str(toUnixSeconds(token.not_before));
  j["resource"] = std::string(resource);
  // IMDS says "Bearer"; ADFS answers "bearer".
  j["token_type"] = token.token_type.empty() || boost::beast::iequals(token.token_type, "bearer")
                        ? std::string("Bearer")
                        : token.token_type;
  return j;
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
  return dump(tokenObject(token, resource, client_id, now));
}

std::string hostTokenJson(const token::AccessToken& token, std::string_view resource,
                          std::string_view client_id, SystemTime now) {
  nlohmann::ordered_json j;
  j["token"] = tokenObject(token, resource, client_id, now);
  j["clientid"] = std::string(client_id);
  return dump(j);
}

}  // namespace nmi::imds
