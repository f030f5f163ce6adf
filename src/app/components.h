#pragma once

#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>

#include "app/instance_lock.h"
#include "common/clock.h"
#include "common/result.h"
#include "config/config.h"
#include "http/beast_http_client.h"
#include "identity/source.h"
#include "kube/api_client.h"
#include "kube/api_identity_source.h"
#include "kube/owner_check.h"
#include "metrics/nmi_metrics.h"
#include "token/aad_token_provider.h"
#include "token/authority.h"
#include "token/caching_token_provider.h"
#include "token/imds_token_provider.h"

namespace nmi::app {

// The parts runDaemon (daemon.cc) connects, each built from the Config in one call that logs
// nothing and fails with one message. Their options come from options.h.

// Where pods and identities come from: the identity file (--identity-file), loaded and watched,
// else the Kubernetes API (--kubeconfig / KUBECONFIG / in-cluster; --node required), started.
struct IdentityData {
  std::unique_ptr<identity::IdentitySource> source;
  std::function<void()> stop;                    // stops the source's watches
  kube::ApiTransportPtr api_transport;           // null with the identity file
  const kube::ApiIdentitySource* api = nullptr;  // owned by `source`; null with the file
};
Result<IdentityData> startIdentityData(const config::Config& config, boost::asio::io_context& io,
                                       const Clock& clock, metrics::NmiMetrics& metrics);

// Tokens: the IMDS and Azure AD clients and providers and the cache in front of them, plus the
// pods' own client for forwarded requests. Service-principal credentials are read through
// `source`, which must outlive the stack.
class TokenStack {
 public:
  static Result<std::unique_ptr<TokenStack>> create(const config::Config& config,
                                                    boost::asio::io_context& io, const Clock& clock,
                                                    metrics::NmiMetrics& metrics,
                                                    identity::IdentitySource& source);
  TokenStack(const TokenStack&) = delete;
  TokenStack& operator=(const TokenStack&) = delete;
  ~TokenStack();

  token::CachingTokenProvider& cache() { return *cache_; }
  http::HttpClient& proxyClient() { return *proxy_client_; }
  // Where service-principal credentials may go: the Azure clouds, plus --aad-allowed-hosts.
  const token::AuthorityAllowlist& aadAuthorities() const { return aad_authorities_; }

 private:
  class SourceCredentials;
  TokenStack() = default;

  token::AuthorityAllowlist aad_authorities_;
  std::unique_ptr<http::BeastHttpClient> imds_client_;
  std::unique_ptr<http::BeastHttpClient> proxy_client_;
  std::unique_ptr<http::BeastHttpClient> aad_client_;
  std::unique_ptr<SourceCredentials> credentials_;
  std::unique_ptr<token::ImdsTokenProvider> mi_provider_;
  std::unique_ptr<token::AadTokenProvider> sp_provider_;
  std::unique_ptr<token::CachingTokenProvider> cache_;
};

// Who this nmi is, for the port lock: "<namespace>/<name>" of its DaemonSet when both are known
// (POD_NAMESPACE, else the service account's namespace file), the node, a random instance id.
InstanceIdentity instanceIdentity(const config::Config& config);

// Uninstall detection (--daemonset-name): a watch of nmi's own DaemonSet, or null when it is not
// asked for or cannot work (logged once). With POD_NAME, nmi's own pod (in `source`'s pod cache)
// names the DaemonSet nmi belongs to.
std::unique_ptr<kube::OwnerWatch> makeOwnerWatch(const config::Config& config,
                                                 boost::asio::io_context& io, const Clock& clock,
                                                 const kube::ApiTransportPtr& transport,
                                                 const identity::IdentitySource& source,
                                                 bool intercepting);

// The original refused to run on kubenet nodes (logged); an unreadable kubelet configuration is
// not fatal.
bool refusedForKubenet(const config::Config& config);

// Removes the rules after an uninstall was detected. False when iptables failed (the rules may
// stay; logged).
bool removeRulesOnExit(const config::Config& config);

}  // namespace nmi::app
