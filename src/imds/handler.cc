#include "imds/handler.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

#include "common/identifier.h"
#include "common/log.h"
#include "identity/credential_secret.h"
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

std::string paramValue(const CanonicalTarget& target, std::string_view name) {
  const QueryParam* p = target.find(name);
  return p == nullptr ? std::string() : p->value;
}

identity::IdentityRequest identityRequest(const CanonicalTarget& target) {
  identity::IdentityRequest r;
  r.client_id = paramValue(target, "client_id");
  r.resource_id = paramValue(target, "msi_res_id");
  if (r.resource_id.empty()) {
    r.resource_id = paramValue(target, "mi_res_id");  // Azure.Identity .NET >= 1.8.2, adal
  }
  r.object_id = paramValue(target, "object_id");
  return r;
}

// The token request for a granted AzureIdentity, or why it cannot be used: PermissionDenied when
// --forceNamespaced (`force_namespaced`) forbids its Secret, InvalidArgument otherwise.
Result<token::TokenRequest> tokenRequestFor(const identity::AzureIdentity& id,
                                            const std::string& resource, bool force_namespaced) {
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
    case 2: {
      r.kind = id.type == 1 ? token::TokenRequest::Kind::ServicePrincipalSecret
                            : token::TokenRequest::Kind::ServicePrincipalCertificate;
      r.client_id = id.client_id;
      r.tenant_id = id.tenant_id;
      r.ad_endpoint = id.ad_endpoint;
      if (r.client_id.empty() || r.tenant_id.empty() || id.client_password.name.empty()) {
        return makeError(ErrorCode::InvalidArgument,
                         fmt::format("identity {}/{} lacks clientID, tenantID or clientPassword",
                                     id.ns, id.name));
      }
      auto secret = identity::credentialSecretFor(id, force_namespaced);
      if (!secret) {
        return std::move(secret).error();
      }
      r.credential = token::CredentialRef{secret->ns, secret->name};
      return r;
    }
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

// Where a service principal's credential would go must be an allowed Azure AD host (the Azure
// clouds, or --aad-allowed-hosts). Checked before its Secret is read. Nullopt when allowed, or
// for managed identities.
std::optional<token::AuthorityCheck> refusedAadHost(const token::TokenRequest& request,
                                                    const token::AuthorityAllowlist& allowlist) {
  if (request.kind == token::TokenRequest::Kind::ManagedIdentity) {
    return std::nullopt;
  }
  const std::string_view endpoint =
      request.ad_endpoint.empty() ? token::kDefaultAadEndpoint : request.ad_endpoint;
  token::AuthorityCheck check = token::checkAuthority(endpoint, allowlist);
  if (check.allowed) {
    return std::nullopt;
  }
  return check;
}

Reply replyForTokenError(const Error& e) {
  switch (e.code) {
    case ErrorCode::Upstream:
      return Reply::TokenRefused;  // IMDS or Azure AD said no (the original's 403)
    case ErrorCode::PermissionDenied:
      return Reply::AadHostRefused;  // the provider's own guard (refusedAadHost checks first)
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

// Whether `method` is one of the comma-separated methods in `allowed`.
bool methodListed(std::string_view allowed, std::string_view method) {
  return !method.empty() && listsToken(allowed, method);
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
      audit_(audit),
      proxy_slots_(options_.proxy_max_concurrent, options_.proxy_max_per_pod) {}

Task<http::Response> ImdsHandler::handle(http::Request& request,
                                         const http::RequestContext& context) {
  const unsigned version = request.version();
  auto target = canonicalizeTarget(request.target());
  std::string_view route_name = "invalid";
  http::Response response;
  Outcome outcome;
  if (!target) {
    outcome.detail = target.error().message;
    response = makeReply(Reply::BadRequestTarget, version);
  } else {
    const Route route = classifyRoute(*target);
    route_name = routeName(route);
    switch (route) {
      case Route::Token:
        response = co_await token(request, *target, context, outcome);
        break;
      case Route::HostToken:
        // (No co_await inside ?: — g++ 12 miscompiles it.)
        if (options_.disable_host_token) {
          response = makeReply(Reply::NotFound, version);
        } else {
          response = co_await hostToken(request, *target, context, outcome);
        }
        break;
      case Route::InvalidTokenPath:
        response = makeReply(Reply::InvalidTokenPath, version);
        break;
      case Route::HostNotFound:
        response = makeReply(Reply::NotFound, version);
        break;
      case Route::InstanceMetadata:
        if (options_.block_instance_metadata) {
          response = makeReply(Reply::InstanceBlocked, version);
        } else {
          response = co_await proxy(request, *target, route, context);
        }
        break;
      case Route::BlockedIdentityPath:
        response = makeReply(Reply::IdentityPathBlocked, version);
        break;
      case Route::Proxy:
        response = co_await proxy(request, *target, route, context);
        break;
      case Route::NotFound:
        // The proxy's header rules first (as before the allowlist), then nmi's own 404.
        if (const auto reply = options_.metadata_header_required || isMetadataPath(*target)
                                   ? metadataCheck(request, options_.metadata_header_required)
                                   : std::nullopt) {
          response = makeReply(*reply, version);
        } else {
          response = makeReply(Reply::NotFound, version);
        }
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

Task<http::Response> ImdsHandler::token(const http::Request& request, const CanonicalTarget& target,
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
                                            const CanonicalTarget& target,
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
    outcome.detail = fmt::format("pod {} doesn't exist", quoteLogValue(pod_ns + "/" + pod_name));
    co_return makeReply(Reply::IdentityNotFound, version);
  }
  // Only now, with the pod found in the cache, may its namespace become a metric label: the
  // header alone is whatever the caller wrote.
  outcome.pod_ns = pod->ns;
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
      const identity::AzureIdentity& id = decision.identity;
      auto r = tokenRequestFor(id, resource, options_.force_namespaced);
      if (!r) {
        outcome.detail = r.error().message;
        if (r.error().code == ErrorCode::PermissionDenied) {
          log()->warn(
              "service principal refused: its Secret is outside the identity's namespace "
              "(--forceNamespaced) identity={}/{} pod={}/{} secret_namespace={:?}",
              id.ns, id.name, pod.ns, pod.name, id.client_password.ns);
          co_return makeReply(Reply::CredentialSecretRefused, version);
        }
        co_return makeReply(Reply::TokenUnavailable, version);
      }
      if (const auto refused = refusedAadHost(*r, options_.aad_authorities)) {
        outcome.detail = "azure ad host refused: " + refused->reason;
        log()->warn(
            "service principal refused: Azure AD host not allowed identity={}/{} pod={}/{} "
            "host={} reason=\"{}\"",
            id.ns, id.name, pod.ns, pod.name,
            refused->authority.empty() ? "(unparsable)" : refused->authority, refused->reason);
        co_return makeReply(Reply::AadHostRefused, version);
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
  // IMDS answers with the client id of the identity as it knows it (a lower-case GUID), never
  // with the request's spelling: the upstream's report when there is one, else the identity's.
  if (!access.client_id.empty()) {
    client_id = access.client_id;
  }
  client_id = canonicalIdentifier(client_id);
  const SystemTime now = clock_.systemNow();
  audit_.record(AuditLog::Delivery{host_endpoint ? "host_token" : "token", pod.ns, pod.name,
                                   pod.uid, identity_name, client_id, resource,
                                   toUnixSeconds(access.expires_on)});
  co_return jsonResponse(200,
                         host_endpoint ? hostTokenJson(access, resource, client_id, now)
                                       : tokenJson(access, resource, client_id, now),
                         version);
}

Task<http::Response> ImdsHandler::proxy(const http::Request& request, const CanonicalTarget& target,
                                        Route route, const http::RequestContext& context) {
  const unsigned version = request.version();
  // Every forwarded path is a /metadata path: IMDS's header rules apply (unless turned off).
  if (const auto reply = metadataCheck(request, options_.metadata_header_required)) {
    co_return makeReply(*reply, version);
  }
  const std::string_view allowed = forwardMethods(target, route);
  if (!methodListed(allowed, request.method_string())) {
    http::Response refused = makeReply(Reply::MethodNotAllowed, version);
    refused.set(bhttp::field::allow, allowed);
    co_return refused;
  }
  // A budget of its own, shared fairly: one pod cannot hold every slot.
  const std::string peer = peerAddress(context.peer);
  const ConcurrencyLimiter::Permit slot = proxy_slots_.tryAcquire(peer);
  if (!slot.granted()) {
    const bool pod_limit = slot.refusal() == ConcurrencyLimiter::Refusal::KeyLimit;
    // Counted by nmi_requests_total{route,code}; a debug line only, so a looping pod cannot
    // flood the log.
    log()->debug("proxy to imds refused path={} remote={} reason={}", target.path, peer,
                 pod_limit ? "per-pod limit" : "proxy budget exhausted");
    co_return makeReply(pod_limit ? Reply::ProxyBusyForPod : Reply::ProxyOverloaded, version);
  }
  // Forward the canonical target, never the raw bytes: IMDS sees exactly what was classified.
  // Hop-by-hop headers, Expect (nmi has the whole body already; an interim answer is nmi's to
  // consume, never the pod's), Host and the framing headers are not forwarded.
  http::ClientRequest out;
  out.method = request.method();
  out.url = "http://" + options_.metadata_endpoint + target.target();
  out.timeout = options_.proxy_timeout;
  for (const auto& field : request) {
    const std::string_view name = field.name_string();
    if (isHopByHop(name, request) || boost::beast::iequals(name, "host") ||
        boost::beast::iequals(name, "content-length") || boost::beast::iequals(name, "expect")) {
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
  const bool head = request.method() == bhttp::verb::head;
  const std::string upstream_connection(result->header("Connection").value_or(""));
  for (const auto& [name, value] : result->headers) {
    const bool length = boost::beast::iequals(name, "content-length");
    if (listsToken(upstream_connection, name) || boost::beast::iequals(name, "connection") ||
        boost::beast::iequals(name, "keep-alive") ||
        boost::beast::iequals(name, "transfer-encoding") || (length && !head) ||
        boost::beast::iequals(name, "upgrade") || boost::beast::iequals(name, "proxy-connection") ||
        boost::beast::iequals(name, "te") || boost::beast::iequals(name, "trailer")) {
      continue;
    }
    response.insert(name, value);
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
