#include "health/health.h"

#include <boost/beast/http/field.hpp>

namespace nmi::health {

namespace bhttp = boost::beast::http;

void Readiness::add(std::string name, Check check) {
  const std::lock_guard lock(mu_);
  checks_.emplace_back(std::move(name), std::move(check));
}

void Readiness::addDetail(std::string name, Check detail) {
  const std::lock_guard lock(mu_);
  details_.emplace_back(std::move(name), std::move(detail));
}

std::vector<std::string> Readiness::run(const std::vector<std::pair<std::string, Check>>& checks) {
  std::vector<std::string> out;
  for (const auto& [name, check] : checks) {
    if (std::string reason = check(); !reason.empty()) {
      std::string line = name;
      line += ": ";
      line += reason;
      out.push_back(std::move(line));
    }
  }
  return out;
}

std::vector<std::string> Readiness::failures() const {
  std::vector<std::pair<std::string, Check>> checks;
  {
    const std::lock_guard lock(mu_);
    checks = checks_;
  }
  return run(checks);
}

std::vector<std::string> Readiness::details() const {
  std::vector<std::pair<std::string, Check>> details;
  {
    const std::lock_guard lock(mu_);
    details = details_;
  }
  return run(details);
}

std::string readyzBody(const std::vector<std::string>& failures,
                       const std::vector<std::string>& details) {
  std::string body = failures.empty() ? "ok\n" : "not ready\n";
  for (const auto& f : failures) {
    body += f + "\n";
  }
  for (const auto& d : details) {
    body += "warning: " + d + "\n";
  }
  return body;
}

Task<http::Response> ProbeHandler::handle(http::Request& request,
                                          const http::RequestContext& /*context*/) {
  const std::string_view path = http::targetPath(request);
  if (path == "/healthz") {
    co_return http::plainText(bhttp::status::ok, "ok\n", request.version());
  }
  if (path == "/readyz") {
    const auto failures = readiness_.failures();
    co_return http::plainText(
        failures.empty() ? bhttp::status::ok : bhttp::status::service_unavailable,
        readyzBody(failures, readiness_.details()), request.version());
  }
  co_return http::plainText(bhttp::status::not_found, "not found\n", request.version());
}

}  // namespace nmi::health
