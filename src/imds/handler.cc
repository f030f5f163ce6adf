#include "imds/handler.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

#include "common/log.h"
#include "identity/gather.h"
#include "identity/redact.h"
#include "metrics/nmi_metrics.h"

namespace nmi::imds {

namespace bhttp = boost::beast::http;
using identity::DecisionKind;
using identity::PodMatch;

// What the request turned out to be, for the log line and the original's metric.
struct ImdsHandler::Outcome {
  std::string pod_ns;
  std::string resource;
  std::string detail;  // the reason, for the log (no secrets)
};

namespace {

const std::shared_ptr<spdlog::logger>& log() {
  static const auto instance = logger("nmi.imds");
  return instance;
}

// Header values of `name` (case-insensitive), counted.
std::size_t headerCount(const http::Request& request, std::string_view name) {
  const auto range = request.equal_range(name);
  return static_cast<std::size_t>(std::distance(range.first, range.second));
}

// IMDS's rules for every /metadata request: exactly one Metadata header whose value is exactly
// "true" (unless --metadata-header-required=false), and never X-Forwarded-For (IMDS refuses
// requests that went through a proxy).
std::optional<Reply> metadataCheck(const http::Request& request, bool header_required) {
  if (header_required) {
    const auto range = request.equal_range("Metadata");
    const auto count = std::distance(range.first, range.second);
    if (count != 1 || range.first->value() != "true") {
      return Reply::MetadataHeaderMissing;
    }
  }
  if (headerCount(request, "X-Forwarded-For") > 0) {
    return Reply::ForwardedHeader;
  }
  return std::nullopt;
}

// The caller's address as the pod cache indexes it (IPv4-mapped IPv6 as IPv4).
std::string peerAddress(const boost::asio::ip::address& peer) {
  if (peer.is_v6() && peer.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, peer.to_v6()).to_string();
  }
  return peer.to_string();
}

bool isLoopback(const boost::asio::ip::address& peer) {
  if (peer.is_v6() && peer.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, peer.to_v6()).is_loopback();
  }
  return peer.is_loopback();
}

std::string paramValue(const http::CanonicalTarget& target, std::string_view name) {
  const http::QueryParam* p = target.find(name);
  return p == nullptr ? std::string() : p->value;
}

identity::IdentityRequest identityRequest(const http::CanonicalTarget& target) {
  identity::IdentityRequest r;
  r.client_id = paramValue(target, "client_id");
  r.resource_id = paramValue(target, "msi_res_id");
  if (r.resource_id.empty()) {
    r.resource_id = paramValue(target, "mi_res_id");  // Azure.Identity .NET >= 1.8.2, adal
  }
  r.object_id = paramValue(target, "object_id");
  return r;
}

// The token request for a granted AzureIdentity, or the reply when it cannot be used.
Result<token::TokenRequest> tokenRequestFor(const identity::AzureIdentity& id,
                                            const std::string& resource) {
  token::TokenRequest r;
  r.resource = resource;
  switch (id.type) {
    case 0:
      r.kind = token::TokenRequest::Kind::ManagedIdentity;
      // The original sent only client_id (an identity with just a resourceID got the node's
      // default identity); nmi asks for exactly the identity named.
      if (!id.client_id.empty()) {
        r.selector = token::Selector::ClientId;
        r.selector_value = id.client_id;
      } else if (!id.resource_id.empty()) {
        r.selector = token::Selector::ResourceId;
        r.selector_value = id.resource_id;
      } else {
        return makeError(
            ErrorCode::InvalidArgument,
            fmt::format("identity {}/{} has neither clientID nor resourceID", id.ns, id.name));
      }
      return r;
    case 1:
    case 2:
      r.kind = id.type == 1 ? token::TokenRequest::Kind::ServicePrincipalSecret
                            : token::TokenRequest::Kind::ServicePrincipalCertificate;
      r.client_id = id.client_id;
      r.tenant_id = id.tenant_id;
      r.ad_endpoint = id.ad_endpoint;
      r.credential = token::CredentialRef{id.client_password.ns, id.client_password.name};
      if (r.client_id.empty() || r.tenant_id.empty() || r.credential.name.empty()) {
        return makeError(ErrorCode::InvalidArgument,
                         fmt::format("identity {}/{} lacks clientID, tenantID or clientPassword",
                                     id.ns, id.name));
      }
      return r;
    default:
      return makeError(ErrorCode::InvalidArgument,
                       fmt::format("unsupported identity type {}", id.type));
  }
}

token::TokenRequest exceptionRequest(const identity::IdentityRequest& forward,
                                     const std::string& resource) {
  token::TokenRequest r;
  r.kind = token::TokenRequest::Kind::ManagedIdentity;
  r.resource = resource;
  if (!forward.client_id.empty()) {
    r.selector = token::Selector::ClientId;
    r.selector_value = forward.client_id;
  } else if (!forward.resource_id.empty()) {
    r.selector = token::Selector::ResourceId;
    r.selector_value = forward.resource_id;
  } else if (!forward.object_id.empty()) {
    r.selector = token::Selector::ObjectId;
    r.selector_value = forward.object_id;
  }
  return r;
}

Reply replyForTokenError(const Error& e) {
  switch (e.code) {
    case ErrorCode::Upstream:
      return Reply::TokenRefused;  // IMDS or Azure AD said no (the original's 403)
    case ErrorCode::ResourceExhausted:
      return Reply::TooManyRequests;
    default:
      return Reply::TokenUnavailable;  // the original's 503 for everything else
  }
}

// Whether the comma-separated header value `list` names `token` (case-insensitive).
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

bool isHopByHop(std::string_view name, const http::Request& request) {
  static constexpr std::string_view kHop[] = {"connection",
                                              "keep-alive",
                                              "proxy-authenticate",
                                              "proxy-authorization",
                                              "proxy-connection",
                                              "te",
                                              "trailer",
                                              "transfer-encoding",
                                              "upgrade"};
  for (const auto h : kHop) {
    if (boost::beast::iequals(name, h)) {
      return true;
    }
  }
  // Headers the client named in Connection are hop-by-hop too.
  for (const auto& field : request) {
    if (field.name() == bhttp::field::connection && listsToken(field.value(), name)) {
      return true;
    }
  }
  return false;
}

}  // namespace

ImdsHandler::ImdsHandler(HandlerOptions options, identity::IdentitySource& source,
                         token::CachingTokenProvider& tokens, http::HttpClient& proxy_client,
                         const Clock& clock, metrics::NmiMetrics& metrics, AuditLog& audit)
    : options_(std::move(options)),
      source_(source),
      tokens_(tokens),
      proxy_client_(proxy_client),
      clock_(clock),
      metrics_(metrics),
      audit_(audit) {}

Task<http::Response> ImdsHandler::handle(http::Request& request,
                                         const http::RequestContext& context) {
  const unsigned version = request.version();
  auto target = http::canonicalizeTarget(request.target());
  std::string_view route_name = "invalid";
  http::Response response;
  Outcome outcome;
  if (!target) {
    outcome.detail = target.error().message;
    response = makeReply(Reply::BadRequestTarget, version);
  } else {
    const http::Route route = http::classifyRoute(*target);
    route_name = http::routeName(route);
    switch (route) {
      case http::Route::Token:
        response = co_await token(request, *target, context, outcome);
        break;
      case http::Route::HostToken:
        // (No co_await inside ?: — g++ 12 miscompiles it.)
        if (options_.disable_host_token) {
          response = makeReply(Reply::NotFound, version);
        } else {
          response = co_await hostToken(request, *target, context, outcome);
        }
        break;
      case http::Route::InvalidTokenPath:
        response = makeReply(Reply::InvalidTokenPath, version);
        break;
      case http::Route::HostNotFound:
        response = makeReply(Reply::NotFound, version);
        break;
      case http::Route::InstanceMetadata:
        if (options_.block_instance_metadata) {
          response = makeReply(Reply::InstanceBlocked, version);
        } else {
          response = co_await proxy(request, *target, context);
        }
        break;
      case http::Route::BlockedIdentityPath:
        response = makeReply(Reply::IdentityPathBlocked, version);
        break;
      case http::Route::Proxy:
        response = co_await proxy(request, *target, context);
        break;
    }
  }
  const unsigned status = response.result_int();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - context.received_at).count();
  metrics_.countRequest(route_name, status);
  if (route_name == "token" || route_name == "host_token") {
    metrics_.observeOperation(route_name, status, outcome.pod_ns, outcome.resource, seconds);
  }
  log()->debug("status={} took_ms={:.3f} method={} route={} remote={}{}{}", status, seconds * 1000,
               std::string_view(request.method_string()), route_name, peerAddress(context.peer),
               outcome.detail.empty() ? "" : " detail=", outcome.detail);
  co_return response;
}

Task<http::Response> ImdsHandler::token(const http::Request& request,
                                        const http::CanonicalTarget& target,
                                        const http::RequestContext& context, Outcome& outcome) {
  const unsigned version = request.version();
  // The original's order: Metadata header, peer, resource, pod, exception, identity, token.
  // Probes (no header, no resource) are answered at once and never wait.
  if (const auto reply = metadataCheck(request, options_.metadata_header_required)) {
    co_return makeReply(*reply, version);
  }
  const std::string ip = peerAddress(context.peer);
  outcome.resource = paramValue(target, "resource");
  if (outcome.resource.empty()) {
    co_return makeReply(Reply::ResourceMissing, version);
  }
  // Find the calling pod by its address. An address nobody claims yet (a pod just started, or
  // caches not synced) waits for events up to pod_wait; it never falls back to a former owner.
  const MonotonicTime pod_deadline = context.received_at + options_.pod_wait;
  PodMatch match;
  for (;;) {
    const auto generation = source_.changes().generation();
    if (source_.hasSynced()) {
      match = identity::matchPodByIp(source_.ipClaims(ip), clock_.systemNow());
      if (match.kind != PodMatch::Kind::Unknown) {
        break;
      }
    }
    metrics_.requests_waiting.Increment();
    const auto waited =
        co_await source_.changes().waitForChange(generation, pod_deadline, context.clientGone());
    metrics_.requests_waiting.Decrement();
    if (waited == ChangeNotifier::WaitResult::Cancelled) {
      outcome.detail = "client went away while waiting for its pod";
      co_return makeReply(Reply::PodNotFound, version);
    }
    if (waited == ChangeNotifier::WaitResult::DeadlinePassed) {
      if (!source_.hasSynced()) {
        outcome.detail = "identity data not synced: " + source_.notReadyReason();
        co_return makeReply(Reply::NotReady, version);
      }
      match = identity::matchPodByIp(source_.ipClaims(ip), clock_.systemNow());
      break;
    }
  }
  if (match.kind == PodMatch::Kind::Unknown) {
    outcome.detail = match.refused.empty() ? fmt::format("no pod with ip {}", ip)
                                           : fmt::format("no pod with ip {} may be served: {}", ip,
                                                         fmt::join(match.refused, ", "));
    co_return makeReply(Reply::PodNotFound, version);
  }
  if (match.kind == PodMatch::Kind::Conflict) {
    outcome.detail = fmt::format("pods claiming ip {}: {}", ip, fmt::join(match.conflicting, ","));
    log()->warn("several pods claim one address ip={} pods={}", ip,
                fmt::join(match.conflicting, ","));
    co_return makeReply(Reply::PodConflict, version);
  }
  outcome.pod_ns = match.pod.ns;
  // Arguments of awaited calls are named locals: g++ 12 mishandles temporaries there.
  const identity::IdentityRequest wanted = identityRequest(target);
  const std::string resource = outcome.resource;
  co_return co_await decideAndFetch(request, match.pod, wanted, resource, false, context, outcome);
}

Task<http::Response> ImdsHandler::hostToken(const http::Request& request,
                                            const http::CanonicalTarget& target,
                                            const http::RequestContext& context, Outcome& outcome) {
  const unsigned version = request.version();
  const std::string pod_ns(request["podns"]);
  const std::string pod_name(request["podname"]);
  if (pod_ns.empty() || pod_name.empty()) {
    co_return makeReply(Reply::HostHeadersMissing, version);
  }
  if (!isLoopback(context.peer)) {
    outcome.detail = "host token request from " + peerAddress(context.peer);
    co_return makeReply(Reply::HostPeerNotLoopback, version);
  }
  outcome.resource = paramValue(target, "resource");
  if (outcome.resource.empty()) {
    co_return makeReply(Reply::ResourceMissing, version);
  }
  outcome.pod_ns = pod_ns;
  const MonotonicTime pod_deadline = context.received_at + options_.pod_wait;
  std::optional<identity::PodInfo> pod;
  for (;;) {
    const auto generation = source_.changes().generation();
    if (source_.hasSynced()) {
      pod = source_.podByName(pod_ns, pod_name);
      if (pod) {
        break;
      }
    }
    const auto waited =
        co_await source_.changes().waitForChange(generation, pod_deadline, context.clientGone());
    if (waited != ChangeNotifier::WaitResult::Changed) {
      if (!source_.hasSynced()) {
        outcome.detail = "identity data not synced: " + source_.notReadyReason();
        co_return makeReply(Reply::NotReady, version);
      }
      pod = source_.podByName(pod_ns, pod_name);
      break;
    }
  }
  if (!pod) {
    outcome.detail = fmt::format("pod {}/{} doesn't exist", pod_ns, pod_name);
    co_return makeReply(Reply::IdentityNotFound, version);
  }
  const identity::IdentityRequest wanted = identityRequest(target);
  const std::string resource = outcome.resource;
  co_return co_await decideAndFetch(request, *pod, wanted, resource, true, context, outcome);
}

Task<http::Response> ImdsHandler::decideAndFetch(const http::Request& request,
                                                 const identity::PodInfo& pod,
                                                 const identity::IdentityRequest& wanted,
                                                 const std::string& resource, bool host_endpoint,
                                                 const http::RequestContext& context,
                                                 Outcome& outcome) {
  const unsigned version = request.version();
  const identity::ResolverOptions resolver_options{options_.mode, options_.force_namespaced,
                                                   !host_endpoint};
  // Re-decide on every change until the data allows an answer or the budget is spent.
  std::optional<MonotonicTime> deadline;
  identity::Decision decision;
  for (;;) {
    const auto generation = source_.changes().generation();
    decision = identity::resolve(identity::gatherInput(source_, pod, options_.mode), wanted,
                                 resolver_options);
    if (decision.kind != DecisionKind::Wait) {
      break;
    }
    if (!deadline) {
      deadline = context.received_at + identity::waitBudget(decision.wait_reason, options_.wait);
    }
    metrics_.requests_waiting.Increment();
    const auto waited =
        co_await source_.changes().waitForChange(generation, *deadline, context.clientGone());
    metrics_.requests_waiting.Decrement();
    if (waited == ChangeNotifier::WaitResult::Cancelled) {
      outcome.detail = fmt::format("pod {}/{}: client went away while waiting ({})", pod.ns,
                                   pod.name, identity::waitReasonName(decision.wait_reason));
      co_return makeReply(Reply::IdentityNotFound, version);
    }
    if (waited == ChangeNotifier::WaitResult::DeadlinePassed) {
      decision = identity::resolve(identity::gatherInput(source_, pod, options_.mode), wanted,
                                   resolver_options);
      if (decision.kind == DecisionKind::Wait) {
        outcome.detail =
            fmt::format("pod {}/{}: identity not ready after {} s ({})", pod.ns, pod.name,
                        std::chrono::duration_cast<std::chrono::seconds>(
                            identity::waitBudget(decision.wait_reason, options_.wait))
                            .count(),
                        identity::waitReasonName(decision.wait_reason));
        co_return makeReply(options_.set_retry_after_header && !host_endpoint
                                ? Reply::IdentityNotReady
                                : Reply::IdentityNotFound,
                            version);
      }
      break;
    }
  }
  outcome.detail = decision.reason;
  token::TokenRequest token_request;
  std::string identity_name;
  std::string client_id;
  switch (decision.kind) {
    case DecisionKind::InvalidRequest:
      co_return makeReply(
          wanted.object_id.empty() || !wanted.client_id.empty() || !wanted.resource_id.empty()
              ? Reply::ConflictingSelectors
              : Reply::IdentityNotFoundObjectId,
          version);
    case DecisionKind::NotFound:
      co_return makeReply(Reply::IdentityNotFound, version);
    case DecisionKind::Wait:
      co_return makeReply(Reply::Internal, version);  // unreachable: the loop above ends waits
    case DecisionKind::Exception:
      token_request = exceptionRequest(decision.forward, resource);
      identity_name = "exception";
      client_id = decision.forward.client_id;
      break;
    case DecisionKind::Grant: {
      auto r = tokenRequestFor(decision.identity, resource);
      if (!r) {
        outcome.detail = r.error().message;
        co_return makeReply(Reply::TokenUnavailable, version);
      }
      token_request = std::move(*r);
      identity_name = decision.identity.ns + "/" + decision.identity.name;
      client_id = decision.identity.client_id;
      break;
    }
  }
  const std::string requester = pod.uid.empty() ? pod.ns + "/" + pod.name : pod.uid;
  // A cache hit is answered without suspending (and without watching the connection).
  const auto executor = co_await boost::asio::this_coro::executor;
  std::optional<Result<token::AccessToken>> token;
  if (auto hit = tokens_.lookup(token_request, requester, executor)) {
    token.emplace(std::move(*hit));
  } else {
    token.emplace(co_await tokens_.get(token_request, requester, context.clientGone()));
  }
  if (!*token) {
    outcome.detail = fmt::format("{}; token: {}: {}", decision.reason,
                                 errorCodeName(token->error().code), token->error().message);
    co_return makeReply(replyForTokenError(token->error()), version);
  }
  const token::AccessToken& access = token->value();
  if (client_id.empty()) {
    client_id = access.client_id;
  }
  const SystemTime now = clock_.systemNow();
  audit_.record(AuditLog::Delivery{host_endpoint ? "host_token" : "token", pod.ns, pod.name,
                                   pod.uid, identity_name, client_id, resource,
                                   toUnixSeconds(access.expires_on)});
  co_return jsonResponse(200,
                         host_endpoint ? hostTokenJson(access, resource, client_id, now)
                                       : tokenJson(access, resource, client_id, now),
                         version);
}

Task<http::Response> ImdsHandler::proxy(const http::Request& request,
                                        const http::CanonicalTarget& target,
                                        const http::RequestContext& context) {
  const unsigned version = request.version();
  if (options_.metadata_header_required || http::isMetadataPath(target)) {
    if (const auto reply = metadataCheck(request, options_.metadata_header_required)) {
      co_return makeReply(*reply, version);
    }
  }
  // Forward the canonical target, never the raw bytes: IMDS sees exactly what was classified.
  http::ClientRequest out;
  out.method = request.method();
  out.url = "http://" + options_.metadata_endpoint + target.target();
  out.timeout = options_.proxy_timeout;
  for (const auto& field : request) {
    const std::string_view name = field.name_string();
    if (isHopByHop(name, request) || boost::beast::iequals(name, "host") ||
        boost::beast::iequals(name, "content-length")) {
      continue;
    }
    out.headers.emplace_back(std::string(name), std::string(field.value()));
  }
  out.body = request.body();
  const auto started = std::chrono::steady_clock::now();
  auto result = co_await proxy_client_.send(std::move(out), context.clientGone());
  metrics_.observeUpstream(
      "proxy", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (!result) {
    metrics_.countUpstream("proxy", -1);
    log()->warn("proxy to imds failed path={} error={}", target.path, result.error().message);
    co_return makeReply(result.error().code == ErrorCode::Timeout ? Reply::UpstreamTimeout
                                                                  : Reply::UpstreamUnreachable,
                        version);
  }
  metrics_.countUpstream("proxy", static_cast<int>(result->status));
  http::Response response{static_cast<bhttp::status>(result->status), version};
  const std::string upstream_connection(result->header("Connection").value_or(""));
  for (const auto& [name, value] : result->headers) {
    if (listsToken(upstream_connection, name) || boost::beast::iequals(name, "connection") ||
        boost::beast::iequals(name, "keep-alive") ||
        boost::beast::iequals(name, "transfer-encoding") ||
        boost::beast::iequals(name, "content-length") || boost::beast::iequals(name, "upgrade") ||
        boost::beast::iequals(name, "proxy-connection") || boost::beast::iequals(name, "te") ||
        boost::beast::iequals(name, "trailer")) {
      continue;
    }
    response.insert(name, value);
  }
  response.body() = std::move(result->body);
  response.prepare_payload();
  co_return response;
}

}  // namespace nmi::imds
