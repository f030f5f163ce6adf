#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "http/server.h"

namespace nmi::health {

// Readiness: named checks, each returning why nmi is not ready ("" when ready), and named
// details, shown by /readyz without failing it (a degraded state nmi keeps serving through).
// Thread-safe.
class Readiness {
 public:
  using Check = std::function<std::string()>;
  void add(std::string name, Check check);
  void addDetail(std::string name, Check detail);
  // Every failing check as "name: reason" lines; empty when ready.
  std::vector<std::string> failures() const;
  // Every detail with something to say, as "name: text" lines.
  std::vector<std::string> details() const;

 private:
  static std::vector<std::string> run(const std::vector<std::pair<std::string, Check>>& checks);

  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Check>> checks_;
  std::vector<std::pair<std::string, Check>> details_;
};

// Pure. The /readyz body: "ok" or "not ready", then a line per failure, then a line
// "warning: <detail>" per detail.
std::string readyzBody(const std::vector<std::string>& failures,
                       const std::vector<std::string>& details);

// The probe port: /healthz (liveness: the event loop answers; never depends on the API server,
// IMDS or iptables) and /readyz (503 with the reasons until every readiness check passes; the
// details in the body either way).
class ProbeHandler final : public http::Handler {
 public:
  explicit ProbeHandler(const Readiness& readiness) : readiness_(readiness) {}
  Task<http::Response> handle(http::Request& request, const http::RequestContext& context) override;

 private:
  const Readiness& readiness_;
};

}  // namespace nmi::health
