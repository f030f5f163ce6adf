#include "metrics/exposition.h"

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "tests/fakes/run_sync.h"

namespace nmi::metrics {
namespace {

namespace bhttp = boost::beast::http;

http::Response get(MetricsHandler& handler, std::string target) {
  boost::asio::io_context io;
  http::Request request{bhttp::verb::get, target, 11};
  return testing::runSync(io, handler.handle(request, http::RequestContext{}));
}

TEST(MetricsHandlerTest, ServesTheTextFormatAfterRefreshingComputedGauges) {
  NmiMetrics metrics;
  int scrapes = 0;
  MetricsHandler handler(metrics, [&] {
    ++scrapes;
    metrics.cache_entries.Set(7);
  });
  const http::Response res = get(handler, "/metrics?x=1");
  EXPECT_EQ(res.result(), bhttp::status::ok);
  EXPECT_EQ(res[bhttp::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(scrapes, 1);
  EXPECT_NE(res.body().find("nmi_token_cache_entries 7"), std::string::npos) << res.body();
}

TEST(MetricsHandlerTest, AnyOtherPathIsNotFoundAndScrapesNothing) {
  NmiMetrics metrics;
  int scrapes = 0;
  MetricsHandler handler(metrics, [&] { ++scrapes; });
  EXPECT_EQ(get(handler, "/metricsx").result(), bhttp::status::not_found);
  EXPECT_EQ(get(handler, "/").result(), bhttp::status::not_found);
  EXPECT_EQ(scrapes, 0);
}

}  // namespace
}  // namespace nmi::metrics
