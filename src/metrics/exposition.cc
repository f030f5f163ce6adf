#include "metrics/exposition.h"

#include <boost/beast/http/field.hpp>

namespace nmi::metrics {

namespace bhttp = boost::beast::http;

Task<http::Response> MetricsHandler::handle(http::Request& request,
                                            const http::RequestContext& /*context*/) {
  if (http::targetPath(request) != "/metrics") {
    co_return http::plainText(bhttp::status::not_found, "not found\n", request.version());
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

}  // namespace nmi::metrics
