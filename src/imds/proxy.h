#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/concurrency_limiter.h"
#include "http/client.h"
#include "http/server.h"
#include "imds/request_target.h"
#include "imds/route.h"

namespace nmi::metrics {
class NmiMetrics;
}

namespace nmi::imds {

struct ProxyOptions {
  bool metadata_header_required = true;
  // The real IMDS (host:port).
  std::string metadata_endpoint = "169.254.169.254:80";
  std::chrono::milliseconds timeout{10'000};
  // Forwarded requests in flight at most, overall and from one pod address.
  std::size_t max_concurrent = 32;
  std::size_t max_per_pod = 4;
};

// Pods' requests for the allowlisted IMDS paths (imds/route), forwarded to the real IMDS through
// a client of their own (never shared with nmi's token requests) and a budget of their own,
// shared fairly (one pod cannot hold every slot). The canonical target is forwarded, never the
// raw bytes: IMDS sees exactly what was classified. Thread-safe; runs on connection strands.
class ImdsProxy {
 public:
  ImdsProxy(ProxyOptions options, http::HttpClient& client, const Clock& clock,
            metrics::NmiMetrics& metrics);

  Task<http::Response> forward(const http::Request& request, const CanonicalTarget& target,
                               Route route, const http::RequestContext& context);

 private:
  const ProxyOptions options_;
  http::HttpClient& client_;
  const Clock& clock_;
  metrics::NmiMetrics& metrics_;
  ConcurrencyLimiter slots_;
};

// The hop-by-hop fields of RFC 9110 section 7.6.1 and the older ones proxies still meet
// (Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization): never forwarded in
// either direction. Case-insensitive. Pure.
bool isHopByHop(std::string_view name);

// Whether the comma-separated field value `list` names `token` (case-insensitive, spaces and tabs
// around items ignored). Pure.
bool listsToken(std::string_view list, std::string_view token);

// The fields of a pod's request that go to IMDS: all but the hop-by-hop ones (including those the
// request's Connection names), Host, Content-Length (the client frames the body it sends) and
// Expect (nmi holds the whole body already; an interim answer is nmi's to consume). Pure.
http::Headers forwardedRequestFields(const http::Request& request);

// Whether a field of IMDS's answer goes back to the pod: not hop-by-hop (including those the
// answer's Connection names), and no Content-Length except in the answer to HEAD (the server
// frames the body it sends; HEAD keeps IMDS's length). Pure.
bool forwardsResponseField(std::string_view name, std::string_view upstream_connection, bool head);

}  // namespace nmi::imds
