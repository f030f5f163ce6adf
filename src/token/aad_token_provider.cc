#include "token/aad_token_provider.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include <openssl/evp.h>

#include "token/log.h"
#include "token/oauth_response.h"
#include "token/url.h"

namespace nmi::token {

namespace {

constexpr std::string_view kUpstream = "aad";
constexpr std::string_view kOperation = "adal_token";
constexpr std::string_view kAssertionType =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
constexpr std::size_t kMaxCachedCertificates = 256;

bool isUnreservedSegment(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
  });
}

double secondsSince(const Clock& clock, MonotonicTime start) {
  return std::chrono::duration<double>(clock.monotonicNow() - start).count();
}

// SHA-256 over length-prefixed parts (so ("ab","c") and ("a","bc") differ).
std::string digestOf(std::initializer_list<std::string_view> parts) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
  for (const std::string_view part : parts) {
    const std::string size = std::to_string(part.size()) + ":";
    ok = ok && EVP_DigestUpdate(ctx, size.data(), size.size()) == 1 &&
         EVP_DigestUpdate(ctx, part.data(), part.size()) == 1;
  }
  ok = ok && EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    return {};
  }
  return {reinterpret_cast<const char*>(out.data()), len};  // NOLINT
}

std::string findValue(const Credential& credential, const std::string& key) {
  const auto it = credential.data.find(key);
  return it == credential.data.end() ? std::string{} : it->second;
}

}  // namespace

Result<std::string> aadTokenUrl(std::string_view ad_endpoint, std::string_view tenant_id) {
  if (!isUnreservedSegment(tenant_id)) {
    return makeError(ErrorCode::InvalidArgument,
                     "tenant id must be one path segment of letters, digits, '-', '.', '_', '~'");
  }
  const std::string_view base = ad_endpoint.empty() ? kDefaultAadEndpoint : ad_endpoint;
  const UrlParts base_parts = splitUrl(base);
  if (base_parts.scheme != "https" || !base_parts.has_authority || base_parts.authority.empty()) {
    return makeError(ErrorCode::InvalidArgument, "ad endpoint must be an absolute https URL");
  }
  return resolveReference(base, std::string(tenant_id) + "/oauth2/token?api-version=1.0");
}

Result<std::string> selectClientSecret(const Credential& credential) {
  const auto& data = credential.data;
  if (data.empty()) {
    return makeError(ErrorCode::InvalidArgument,
                     "secret has no data: parameter 'secret' cannot be empty");
  }
  auto it = data.find("clientSecret");
  if (it == data.end()) {
    if (data.size() != 1) {
      std::string keys;
      for (const auto& [key, value] : data) {
        keys += keys.empty() ? "" : ", ";
        keys += key;
      }
      return makeError(ErrorCode::InvalidArgument,
                       "secret has several keys and none is clientSecret: " + keys);
    }
    it = data.begin();
  }
  if (it->second.empty()) {
    return makeError(ErrorCode::InvalidArgument,
                     "secret key " + it->first + " is empty: parameter 'secret' cannot be empty");
  }
  return it->second;
}

AadTokenProvider::AadTokenProvider(http::HttpClient& client, CredentialSource& credentials,
                                   const Clock& clock, metrics::NmiMetrics& metrics,
                                   Options options)
    : client_(client),
      credentials_(credentials),
      clock_(clock),
      metrics_(metrics),
      options_(std::move(options)) {}

std::size_t AadTokenProvider::cachedCertificatesForTest() const {
  const std::lock_guard lock(mu_);
  return certificates_.size();
}

Result<ClientCertificatePtr> AadTokenProvider::certificate(const CredentialRef& ref,
                                                           const Credential& credential) {
  const auto cert_it = credential.data.find("certificate");
  if (cert_it == credential.data.end() || cert_it->second.empty()) {
    return makeError(ErrorCode::InvalidArgument, "secret has no certificate key");
  }
  const std::string password = findValue(credential, "password");
  const std::string key = ref.ns + "/" + ref.name;
  const std::string digest = digestOf({cert_it->second, password});
  {
    const std::lock_guard lock(mu_);
    const auto it = certificates_.find(key);
    if (it != certificates_.end() && !digest.empty() && it->second.digest == digest) {
      return it->second.certificate;
    }
  }
  parses_.fetch_add(1);
  auto parsed = ClientCertificate::fromPkcs12(cert_it->second, password);
  if (!parsed) {
    return std::move(parsed).error();
  }
  const std::lock_guard lock(mu_);
  if (certificates_.size() >= kMaxCachedCertificates && !certificates_.contains(key)) {
    certificates_.erase(certificates_.begin());
  }
  certificates_.insert_or_assign(key, CachedCertificate{digest, *parsed});
  return parsed;
}

Task<Result<AccessToken>> AadTokenProvider::fetchToken(const TokenRequest& request,
                                                       CancellationSignal* cancel) {
  const MonotonicTime start = clock_.monotonicNow();
  auto result = co_await fetch(request, cancel);
  if (result || result.error().code != ErrorCode::Cancelled) {
    metrics_.observeTokenAcquisition(kOperation, result.has_value(), secondsSince(clock_, start));
  }
  if (!result && result.error().code != ErrorCode::Cancelled) {
    logger()->warn("upstream=aad code={} error=\"{}\"", errorCodeName(result.error().code),
                   result.error().message);
  }
  co_return result;
}

Task<Result<AccessToken>> AadTokenProvider::fetch(const TokenRequest& request,
                                                  CancellationSignal* cancel) {
  const bool use_certificate = request.kind == TokenRequest::Kind::ServicePrincipalCertificate;
  if (request.kind != TokenRequest::Kind::ServicePrincipalSecret && !use_certificate) {
    co_return makeError(ErrorCode::InvalidArgument, "azure ad serves service principals only");
  }
  if (request.resource.empty()) {
    co_return makeError(ErrorCode::InvalidArgument, "resource is empty");
  }
  if (request.client_id.empty()) {
    co_return makeError(ErrorCode::InvalidArgument, "service principal has no client id");
  }
  auto url = aadTokenUrl(request.ad_endpoint, request.tenant_id);
  if (!url) {
    co_return std::move(url).error();
  }
  if (const AuthorityCheck check = checkAuthority(*url, options_.allowed_authorities);
      !check.allowed) {
    co_return makeError(ErrorCode::PermissionDenied,
                        "azure ad host " + check.authority + " refused: " + check.reason);
  }
  auto credential = co_await credentials_.load(request.credential);
  if (!credential) {
    const Error& error = credential.error();
    co_return makeError(
        error.code == ErrorCode::Cancelled ? ErrorCode::Cancelled : ErrorCode::Unavailable,
        "secret " + request.credential.ns + "/" + request.credential.name + ": " + error.message);
  }

  std::vector<std::pair<std::string, std::string>> form{{"client_id", request.client_id},
                                                        {"grant_type", "client_credentials"},
                                                        {"resource", request.resource}};
  if (use_certificate) {
    auto cert = certificate(request.credential, *credential);
    if (!cert) {
      co_return makeError(cert.error().code, "secret " + request.credential.ns + "/" +
                                                 request.credential.name + ": " +
                                                 cert.error().message);
    }
    auto assertion = buildClientAssertion(**cert, request.client_id, *url, clock_.systemNow(),
                                          kAssertionLifetime);
    if (!assertion) {
      co_return std::move(assertion).error();
    }
    form.emplace_back("client_assertion", std::move(assertion).value());
    form.emplace_back("client_assertion_type", std::string(kAssertionType));
  } else {
    auto secret = selectClientSecret(*credential);
    if (!secret) {
      co_return makeError(secret.error().code, "secret " + request.credential.ns + "/" +
                                                   request.credential.name + ": " +
                                                   secret.error().message);
    }
    form.emplace_back("client_secret", std::move(secret).value());
  }

  http::ClientRequest http_request;
  http_request.method = boost::beast::http::verb::post;
  http_request.url = std::move(url).value();
  http_request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  if (!options_.user_agent.empty()) {
    http_request.headers.emplace_back("User-Agent", options_.user_agent);
  }
  http_request.body = encodeQuery(std::move(form));
  const UpstreamCall call{kUpstream, options_.retry, clock_, metrics_, nullptr};
  auto response = co_await sendWithRetry(client_, std::move(http_request), call, cancel);
  if (!response) {
    co_return std::move(response).error();
  }
  auto token = parseTokenResponse(response->body, clock_.systemNow());
  if (!token) {
    co_return makeError(ErrorCode::Unavailable, "aad: " + token.error().message);
  }
  if (token->resource.empty()) {
    token->resource = request.resource;
  }
  token->client_id = request.client_id;
  co_return std::move(token).value();
}

}  // namespace nmi::token
