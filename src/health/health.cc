#include "health/health.h"

#include <boost/beast/http/field.hpp>

namespace nmi::health {

namespace bhttp = boost::beast::http;

namespace {

http::Response text(bhttp::status status, std::string body, unsigned version) {
  http::Response res{status, version};
  res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

std::string_view pathOf(const http::Request& request) {
  std::string_view target = request.target();
  return target.substr(0, target.find('?'));
}

}  // namespace

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
  const std::string_view path = pathOf(request);
  if (path == "/healthz") {
    co_return text(bhttp::status::ok, "ok\n", request.version());
  }
  if (path == "/readyz") {
    const auto failures = readiness_.failures();
    co_return text(failures.empty() ? bhttp::status::ok : bhttp::status::service_unavailable,
                   readyzBody(failures, readiness_.details()), request.version());
  }
  co_return text(bhttp::status::not_found, "not found\n", request.version());
}

Task<http::Response> MetricsHandler::handle(http::Request& request,
                                            const http::RequestContext& /*context*/) {
  if (pathOf(request) != "/metrics") {
    co_return text(bhttp::status::not_found, "not found\n", request.version());
  }
  if (before_scrape_) {
    before_scrape_();
  }
  http::Response res{bhttp::status::ok, request.version()};
  res.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.body() = metrics_.serialize();
  res.prepare_payload();
  co_return res;
}

}  // namespace nmi::health
