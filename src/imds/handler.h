#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/clock.h"
#include "http/client.h"
#include "http/server.h"
#include "identity/options.h"
#include "identity/resolver.h"
#include "identity/source.h"
#include "imds/audit.h"
#include "imds/proxy.h"
#include "imds/request_target.h"
#include "imds/responses.h"
#include "imds/route.h"
#include "token/authority.h"
#include "token/types.h"

namespace nmi::metrics {
class NmiMetrics;
}

namespace nmi::imds {

struct HandlerOptions {
  bool metadata_header_required = true;
  bool block_instance_metadata = false;
  bool disable_host_token = false;
  bool set_retry_after_header = false;
  identity::Mode mode = identity::Mode::Standard;
  bool force_namespaced = false;
  identity::WaitBudgetConfig wait;
  // How long a request from an address no known pod holds waits for one (and for the first sync).
  std::chrono::milliseconds pod_wait{2'000};
  // The real IMDS, for proxied paths (host:port).
  std::string metadata_endpoint = "169.254.169.254:80";
  std::chrono::milliseconds proxy_timeout{10'000};
  // Forwarded (proxied) requests in flight at most, overall and from one pod address. Pods'
  // forwarded traffic has a client and a budget of its own: it never shares a connection or a
  // slot with nmi's own token requests.
  std::size_t proxy_max_concurrent = 32;
  std::size_t proxy_max_per_pod = 4;
  // Where service-principal credentials may be sent (the Azure clouds, plus --aad-allowed-hosts).
  token::AuthorityAllowlist aad_authorities;
};

// nmi's IMDS face: routes every request (after one canonicalisation) to the token endpoint, the
// host token endpoint, a refusal, or the proxy to the real IMDS (`proxy_client` must be used
// for nothing else). Runs on connection strands;
// waits are event-driven (IdentitySource::changes()) and end when the client leaves.
class ImdsHandler final : public http::Handler {
 public:
  ImdsHandler(HandlerOptions options, identity::IdentitySource& source, token::TokenCache& tokens,
              http::HttpClient& proxy_client, const Clock& clock, metrics::NmiMetrics& metrics,
              AuditLog& audit);

  Task<http::Response> handle(http::Request& request, const http::RequestContext& context) override;

 private:
  struct Outcome;
  Task<http::Response> token(const http::Request& request, const CanonicalTarget& target,
                             const http::RequestContext& context, Outcome& outcome);
  Task<http::Response> hostToken(const http::Request& request, const CanonicalTarget& target,
                                 const http::RequestContext& context, Outcome& outcome);
  // Waits up to pod_wait for the calling pod: `found` is evaluated (once the source has synced)
  // now and on every change. Nullopt when the request may go on (found, or the wait ended with
  // synced data: `found`'s own result says which); else the reply: `gone` when the client left,
  // NotReady when the data never synced.
  Task<std::optional<Reply>> waitForPod(const std::function<bool()>& found, Reply gone,
                                        const http::RequestContext& context, Outcome& outcome);
  // Waits for the decision about `pod`'s identity (re-evaluating on every change) and gets the
  // token. Shared by both token endpoints.
  Task<http::Response> decideAndFetch(const http::Request& request, const identity::PodInfo& pod,
                                      const identity::IdentityRequest& wanted,
                                      const std::string& resource, bool host_endpoint,
                                      const http::RequestContext& context, Outcome& outcome);

  const HandlerOptions options_;
  identity::IdentitySource& source_;
  token::TokenCache& tokens_;
  const Clock& clock_;
  metrics::NmiMetrics& metrics_;
  AuditLog& audit_;
  ImdsProxy proxy_;
};

}  // namespace nmi::imds
