#include "token/imds_token_provider.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "token/log.h"
#include "token/oauth_response.h"
#include "token/url.h"

namespace nmi::token {

namespace {

constexpr std::string_view kApiVersion = "2018-02-01";
constexpr std::string_view kUpstream = "imds";

const char* selectorParam(Selector selector) {
  switch (selector) {
    case Selector::ClientId:
      return "client_id";
    case Selector::ResourceId:
      return "msi_res_id";
    case Selector::ObjectId:
      return "object_id";
    case Selector::NodeDefault:
      break;
  }
  return nullptr;
}

double secondsSince(const Clock& clock, MonotonicTime start) {
  return std::chrono::duration<double>(clock.monotonicNow() - start).count();
}

}  // namespace

std::string imdsTokenUrl(std::string_view endpoint, const TokenRequest& request) {
  std::vector<std::pair<std::string, std::string>> params{{"api-version", std::string(kApiVersion)},
                                                          {"resource", request.resource}};
  if (const char* name = selectorParam(request.selector)) {
    params.emplace_back(name, request.selector_value);
  }
  return "http://" + std::string(endpoint) + "/metadata/identity/oauth2/token?" +
         encodeQuery(std::move(params));
}

ImdsTokenProvider::ImdsTokenProvider(http::HttpClient& client, const Clock& clock,
                                     metrics::NmiMetrics& metrics, Options options)
    : client_(client),
      clock_(clock),
      metrics_(metrics),
      options_(std::move(options)),
      limiter_(static_cast<std::size_t>(std::max(1, options_.max_concurrent)), clock_) {}

Task<Result<AccessToken>> ImdsTokenProvider::fetchToken(const TokenRequest& request,
                                                        CancellationSignal* cancel) {
  if (request.kind != TokenRequest::Kind::ManagedIdentity) {
    co_return makeError(ErrorCode::InvalidArgument, "imds serves managed identities only");
  }
  if (request.resource.empty()) {
    co_return makeError(ErrorCode::InvalidArgument, "resource is empty");
  }
  if (request.selector != Selector::NodeDefault && request.selector_value.empty()) {
    co_return makeError(ErrorCode::InvalidArgument, "identity selector without a value");
  }
  const std::string_view operation = request.selector == Selector::NodeDefault
                                         ? "adal_token_msi"
                                         : "adal_token_msi_userassignedid";
  const MonotonicTime start = clock_.monotonicNow();

  http::ClientRequest http_request;
  http_request.method = boost::beast::http::verb::get;
  http_request.url = imdsTokenUrl(options_.endpoint, request);
  http_request.headers = {{"Metadata", "true"}};
  if (!options_.user_agent.empty()) {
    http_request.headers.emplace_back("User-Agent", options_.user_agent);
  }
  const UpstreamCall call{kUpstream, options_.retry, clock_, metrics_, &limiter_};
  auto response = co_await sendWithRetry(client_, std::move(http_request), call, cancel);
  if (!response) {
    if (response.error().code != ErrorCode::Cancelled) {
      metrics_.observeTokenAcquisition(operation, false, secondsSince(clock_, start));
    }
    co_return std::move(response).error();
  }
  auto token = parseTokenResponse(response->body, clock_.systemNow());
  if (!token) {
    metrics_.observeTokenAcquisition(operation, false, secondsSince(clock_, start));
    logger()->warn("upstream=imds error=\"{}\"", token.error().message);
    co_return makeError(ErrorCode::Unavailable, "imds: " + token.error().message);
  }
  if (token->resource.empty()) {
    token->resource = request.resource;
  }
  if (token->client_id.empty() && request.selector == Selector::ClientId) {
    token->client_id = request.selector_value;
  }
  metrics_.observeTokenAcquisition(operation, true, secondsSince(clock_, start));
  co_return std::move(token).value();
}

}  // namespace nmi::token
