#pragma once

#include <optional>
#include <string>

#include "config/config.h"
#include "http/beast_http_client.h"
#include "http/server.h"
#include "imds/handler.h"
#include "iptables/backend.h"
#include "iptables/cleanup.h"
#include "iptables/reconciler.h"
#include "kube/api_identity_source.h"
#include "kube/owner_check.h"
#include "token/aad_token_provider.h"
#include "token/authority.h"
#include "token/caching_token_provider.h"
#include "token/imds_token_provider.h"

namespace nmi::app {

// What each part of the daemon gets from the flags: pure functions of the validated Config, so
// that the wiring in daemon.cc only builds and connects, and a flag that reaches the wrong field
// fails a plain unit test (options_test.cc).

// The iptables backend --iptables-backend asks for.
iptables::BackendChoice backendChoice(config::IptablesBackend backend);

// What `nmi cleanup` and the uninstall on SIGTERM remove, from the flags.
iptables::CleanupOptions cleanupOptions(const config::Config& config);

// "nmi/<version>", plus --custom-user-agent: every outgoing request's User-Agent.
std::string userAgent(const config::Config& config);

http::ServerLimits serverLimits(const config::ServerConfig& server);

// The three HTTP clients: IMDS (plain HTTP on the link-local address, never through a proxy), the
// pods' proxied requests (a pool and a budget of their own), Azure AD (HTTPS, HTTPS_PROXY and
// NO_PROXY honoured, an extra CA bundle).
http::ClientOptions imdsClientOptions(const config::Config& config);
http::ClientOptions proxyClientOptions(const config::Config& config);
http::ClientOptions aadClientOptions(const config::Config& config);

token::ImdsTokenProvider::Options imdsProviderOptions(const config::Config& config);
token::AadTokenProvider::Options aadProviderOptions(const config::Config& config,
                                                    const token::AuthorityAllowlist& allowed);
token::CacheOptions cacheOptions(const config::Config& config);

imds::HandlerOptions handlerOptions(const config::Config& config,
                                    const token::AuthorityAllowlist& allowed);

kube::ApiSourceOptions apiSourceOptions(const config::Config& config);

// Why nmi installs no interception rules, or "" when it does.
std::string interceptionOff(const config::Config& config);

iptables::ReconcilerOptions reconcilerOptions(const config::Config& config);

// On SIGTERM, whether to wait for a successor before draining: a hand-over is possible (nmi knows
// its DaemonSet, `daemonset` is not empty), the wait is not 0, and this is no uninstall (the
// rules are kept).
bool shouldAwaitSuccessor(const config::Config& config, const std::string& daemonset,
                          const std::optional<kube::ExitDecision>& decision);

}  // namespace nmi::app
