#include "imds/proxy.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include "common/log.h"
#include "imds/request_rules.h"
#include "imds/responses.h"
#include "metrics/nmi_metrics.h"

namespace nmi::imds {

namespace bhttp = boost::beast::http;

namespace {

const std::shared_ptr<spdlog::logger>& log() {
  static const auto instance = logger("nmi.imds");
  return instance;
}

constexpr std::array<std::string_view, 9> kHopByHop = {"connection",
                                                       "keep-alive",
                                                       "proxy-authenticate",
                                                       "proxy-authorization",
                                                       "proxy-connection",
                                                       "te",
                                                       "trailer",
                                                       "transfer-encoding",
                                                       "upgrade"};

}  // namespace

bool isHopByHop(std::string_view name) {
  for (const auto h : kHopByHop) {
    if (boost::beast::iequals(name, h)) {
      return true;
    }
  }
  return false;
}

bool listsToken(std::string_view list, std::string_view token) {
  std::size_t pos = 0;
  while (pos < list.size()) {
    auto end = list.find(',', pos);
    if (end == std::string_view::npos) {
      end = list.size();
    }
    auto item = list.substr(pos, end - pos);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
      item.remove_prefix(1);
    }
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
      item.remove_suffix(1);
    }
    if (!item.empty() && boost::beast::iequals(item, token)) {
      return true;
    }
    pos = end + 1;
  }
  return false;
}

http::Headers forwardedRequestFields(const http::Request& request) {
  // The Connection fields, read once (a request may repeat the field).
  std::vector<std::string_view> connection;
  for (const auto& field : request) {
    if (field.name() == bhttp::field::connection) {
      connection.push_back(field.value());
    }
  }
  const auto named_by_connection = [&connection](std::string_view name) {
    return std::any_of(connection.begin(), connection.end(),
                       [name](std::string_view list) { return listsToken(list, name); });
  };
  http::Headers out;
  for (const auto& field : request) {
    const std::string_view name = field.name_string();
    if (isHopByHop(name) || boost::beast::iequals(name, "host") ||
        boost::beast::iequals(name, "content-length") || boost::beast::iequals(name, "expect") ||
        named_by_connection(name)) {
      continue;
    }
    out.emplace_back(std::string(name), std::string(field.value()));
  }
  return out;
}

bool forwardsResponseField(std::string_view name, std::string_view upstream_connection, bool head) {
  if (isHopByHop(name) || listsToken(upstream_connection, name)) {
    return false;
  }
  return head || !boost::beast::iequals(name, "content-length");
}

ImdsProxy::ImdsProxy(ProxyOptions options, http::HttpClient& client, const Clock& clock,
                     metrics::NmiMetrics& metrics)
    : options_(std::move(options)),
      client_(client),
      clock_(clock),
      metrics_(metrics),
      slots_(options_.max_concurrent, options_.max_per_pod) {}

Task<http::Response> ImdsProxy::forward(const http::Request& request, const CanonicalTarget& target,
                                        Route route, const http::RequestContext& context) {
  const unsigned version = request.version();
  // Every forwarded path is a /metadata path: IMDS's header rules apply (unless turned off).
  if (const auto reply = metadataCheck(request, options_.metadata_header_required)) {
    co_return makeReply(*reply, version);
  }
  const std::string_view allowed = forwardMethods(target, route);
  if (request.method_string().empty() || !listsToken(allowed, request.method_string())) {
    http::Response refused = makeReply(Reply::MethodNotAllowed, version);
    refused.set(bhttp::field::allow, allowed);
    co_return refused;
  }
  const std::string peer = peerAddress(context.peer);
  const ConcurrencyLimiter::Permit slot = slots_.tryAcquire(peer);
  if (!slot.granted()) {
    const bool pod_limit = slot.refusal() == ConcurrencyLimiter::Refusal::KeyLimit;
    // Counted by nmi_requests_total{route,code}; a debug line only, so a looping pod cannot
    // flood the log.
    log()->debug("proxy to imds refused path={} remote={} reason={}", target.path, peer,
                 pod_limit ? "per-pod limit" : "proxy budget exhausted");
    co_return makeReply(pod_limit ? Reply::ProxyBusyForPod : Reply::ProxyOverloaded, version);
  }
  http::ClientRequest out;
  out.method = request.method();
  out.url = "http://" + options_.metadata_endpoint + target.target();
  out.timeout = options_.timeout;
  out.headers = forwardedRequestFields(request);
  out.body = request.body();
  const MonotonicTime started = clock_.monotonicNow();
  auto result = co_await client_.send(std::move(out), context.clientGone());
  metrics_.observeUpstream("proxy",
                           std::chrono::duration<double>(clock_.monotonicNow() - started).count());
  if (!result) {
    metrics_.countUpstream("proxy", -1);
    log()->warn("proxy to imds failed path={} error={}", target.path, result.error().message);
    co_return makeReply(result.error().code == ErrorCode::Timeout ? Reply::UpstreamTimeout
                                                                  : Reply::UpstreamUnreachable,
                        version);
  }
  metrics_.countUpstream("proxy", static_cast<int>(result->status));
  http::Response response{static_cast<bhttp::status>(result->status), version};
  const bool head = request.method() == bhttp::verb::head;
  const std::string upstream_connection(result->header("Connection").value_or(""));
  for (const auto& [name, value] : result->headers) {
    if (forwardsResponseField(name, upstream_connection, head)) {
      response.insert(name, value);
    }
  }
  if (head) {
    // The answer to HEAD keeps IMDS's Content-Length and has no body; the server sends the head
    // only.
    co_return response;
  }
  response.body() = std::move(result->body);
  response.prepare_payload();
  co_return response;
}

}  // namespace nmi::imds
