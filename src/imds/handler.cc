#include "imds/handler.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <variant>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

#include "common/identifier.h"
#include "common/log.h"
#include "identity/gather.h"
#include "identity/redact.h"
#include "imds/data_wait.h"
#include "imds/request_rules.h"
#include "imds/token_request.h"
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

std::string resourceParam(const CanonicalTarget& target) {
  const QueryParam* p = target.find("resource");
  return p == nullptr ? std::string() : p->value;
}

}  // namespace

ImdsHandler::ImdsHandler(HandlerOptions options, identity::IdentitySource& source,
                         token::TokenCache& tokens, http::HttpClient& proxy_client,
                         const Clock& clock, metrics::NmiMetrics& metrics, AuditLog& audit)
    : options_(std::move(options)),
      source_(source),
      tokens_(tokens),
      clock_(clock),
      metrics_(metrics),
      audit_(audit),
      proxy_(ProxyOptions{options_.metadata_header_required, options_.metadata_endpoint,
                          options_.proxy_timeout, options_.proxy_max_concurrent,
                          options_.proxy_max_per_pod},
             proxy_client, clock_, metrics) {}

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
          response = co_await proxy_.forward(request, *target, route, context);
        }
        break;
      case Route::BlockedIdentityPath:
        response = makeReply(Reply::IdentityPathBlocked, version);
        break;
      case Route::Proxy:
        response = co_await proxy_.forward(request, *target, route, context);
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
      std::chrono::duration<double>(clock_.monotonicNow() - context.received_at).count();
  metrics_.countRequest(route_name, status);
  if (route_name == "token" || route_name == "host_token") {
    metrics_.observeOperation(route_name, status, outcome.pod_ns, outcome.resource, seconds);
  }
  log()->debug("status={} took_ms={:.3f} method={} route={} remote={}{}{}", status, seconds * 1000,
               request.method_string(), route_name, peerAddress(context.peer),
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
  outcome.resource = resourceParam(target);
  if (outcome.resource.empty()) {
    co_return makeReply(Reply::ResourceMissing, version);
  }
  // Find the calling pod by its address. An address nobody claims yet (a pod just started, or
  // caches not synced) waits for events up to pod_wait; it never falls back to a former owner.
  PodMatch match;
  const auto claimed = [&] {
    match = identity::matchPodByIp(source_.ipClaims(ip), clock_.systemNow());
    return match.kind != PodMatch::Kind::Unknown;
  };
  // Most requests find their pod at once; only the others enter the wait (and pay for it).
  if (!source_.hasSynced() || !claimed()) {
    const std::function<bool()> found = claimed;
    const std::optional<Reply> no_pod =
        co_await waitForPod(found, Reply::PodNotFound, context, outcome);
    if (no_pod) {
      co_return makeReply(*no_pod, version);
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
  outcome.resource = resourceParam(target);
  if (outcome.resource.empty()) {
    co_return makeReply(Reply::ResourceMissing, version);
  }
  std::optional<identity::PodInfo> pod;
  const auto exists = [&] {
    pod = source_.podByName(pod_ns, pod_name);
    return pod.has_value();
  };
  if (!source_.hasSynced() || !exists()) {
    const std::function<bool()> found = exists;
    const std::optional<Reply> no_pod =
        co_await waitForPod(found, Reply::IdentityNotFound, context, outcome);
    if (no_pod) {
      co_return makeReply(*no_pod, version);
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

Task<std::optional<Reply>> ImdsHandler::waitForPod(const std::function<bool()>& found, Reply gone,
                                                   const http::RequestContext& context,
                                                   Outcome& outcome) {
  const MonotonicTime deadline = context.received_at + options_.pod_wait;
  const PendingCheck pod_unknown = [&]() -> std::optional<MonotonicTime> {
    if (source_.hasSynced() && found()) {
      return std::nullopt;
    }
    return deadline;
  };
  const WaitEnd waited = co_await waitForData(source_.changes(), pod_unknown, context.clientGone(),
                                              metrics_.requests_waiting);
  if (waited == WaitEnd::ClientGone) {
    outcome.detail = "client went away while waiting for its pod";
    co_return gone;
  }
  if (waited == WaitEnd::DeadlinePassed && !source_.hasSynced()) {
    outcome.detail = "identity data not synced: " + source_.notReadyReason();
    co_return Reply::NotReady;
  }
  co_return std::nullopt;
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
  identity::Decision decision;
  const auto undecided = [&]() -> std::optional<MonotonicTime> {
    decision = identity::resolve(identity::gatherInput(source_, pod, options_.mode), wanted,
                                 resolver_options);
    if (decision.kind != DecisionKind::Wait) {
      return std::nullopt;
    }
    return context.received_at + identity::waitBudget(decision.wait_reason, options_.wait);
  };
  // Most requests are decided at once; only undecided ones enter the wait.
  WaitEnd waited = WaitEnd::Ready;
  if (undecided()) {
    const PendingCheck check = undecided;
    waited = co_await waitForData(source_.changes(), check, context.clientGone(),
                                  metrics_.requests_waiting);
  }
  if (waited == WaitEnd::ClientGone) {
    outcome.detail = fmt::format("pod {}/{}: client went away while waiting ({})", pod.ns, pod.name,
                                 identity::waitReasonName(decision.wait_reason));
    co_return makeReply(Reply::IdentityNotFound, version);
  }
  if (waited == WaitEnd::DeadlinePassed) {
    outcome.detail = fmt::format("pod {}/{}: identity not ready after {} s ({})", pod.ns, pod.name,
                                 std::chrono::duration_cast<std::chrono::seconds>(
                                     identity::waitBudget(decision.wait_reason, options_.wait))
                                     .count(),
                                 identity::waitReasonName(decision.wait_reason));
    co_return makeReply(options_.set_retry_after_header && !host_endpoint ? Reply::IdentityNotReady
                                                                          : Reply::IdentityNotFound,
                        version);
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
  // One cache access: a hit is answered at once, without a coroutine; a miss is waited for.
  const auto executor = co_await boost::asio::this_coro::executor;
  token::TokenAnswer answer = tokens_.get(token_request, requester, executor, context.clientGone());
  Result<token::AccessToken> token = makeError(ErrorCode::Internal, "no answer");
  if (auto* ready = std::get_if<Result<token::AccessToken>>(&answer)) {
    token = std::move(*ready);
  } else {
    token = co_await std::get<Task<Result<token::AccessToken>>>(std::move(answer));
  }
  if (!token) {
    outcome.detail = fmt::format("{}; token: {}: {}", decision.reason,
                                 errorCodeName(token.error().code), token.error().message);
    co_return makeReply(replyForTokenError(token.error()), version);
  }
  const token::AccessToken& access = token.value();
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

}  // namespace nmi::imds
