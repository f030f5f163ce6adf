#include "kube/secret_cache.h"

#include <optional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/base64.h"
#include "tests/fakes/fake_api_transport.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi::kube {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace): literals only
using testing::FakeApiTransport;

json secret(const std::string& value) {
  return {{"kind", "Secret"},
          {"metadata", {{"namespace", "ns"}, {"name", "sp"}}},
          {"data", {{"clientSecret", base64Encode(value)}}}};
}

class SecretCacheTest : public ::testing::Test {
 protected:
  Result<identity::SecretData> get(SecretCache& cache, const std::string& name = "sp") {
    return nmi::testing::runSync(io_, cache.get(identity::SecretRef{name, "ns"}));
  }

  boost::asio::io_context io_;
  nmi::testing::FakeClock clock_;
  FakeApiTransport transport_;
  int errors_ = 0;
  SecretCache cache_{transport_, clock_, SecretCacheOptions{}, [this] { ++errors_; }};
  const std::string path_ = "/api/v1/namespaces/ns/secrets/sp";
};

TEST_F(SecretCacheTest, ServesFromTheCacheUntilTheTtlPasses) {
  transport_.addGet(path_, testing::okJson(secret("one")));
  transport_.addGet(path_, testing::okJson(secret("two")));
  EXPECT_EQ(get(cache_).value().data.at("clientSecret"), "one");
  clock_.advance(29s);
  EXPECT_EQ(get(cache_).value().data.at("clientSecret"), "one");
  clock_.advance(1s);
  EXPECT_EQ(get(cache_).value().data.at("clientSecret"), "two");
  EXPECT_EQ(transport_.calls().size(), 2U);
  EXPECT_EQ(transport_.calls()[0], "GET " + path_);
  EXPECT_EQ(errors_, 0);
}

TEST_F(SecretCacheTest, ErrorsAreMappedCountedAndNotCached) {
  transport_.addGet(path_, testing::statusAnswer(404, "NotFound", "secrets \"sp\" not found"));
  transport_.addGet(path_, testing::statusAnswer(403, "Forbidden", "secrets is forbidden"));
  transport_.addGet(path_, testing::statusAnswer(500, "InternalError", "boom"));
  transport_.addGet(path_, makeError(ErrorCode::Timeout, "timed out"));
  transport_.addGet(path_, ApiResponse{200, "{not json", std::nullopt});
  transport_.addGet(path_,
                    testing::okJson(json{{"metadata", {{"name", "sp"}}}, {"data", {{"k", "!!"}}}}));
  transport_.addGet(path_, testing::okJson(secret("finally")));
  EXPECT_EQ(get(cache_).error().code, ErrorCode::NotFound);
  EXPECT_EQ(get(cache_).error().code, ErrorCode::PermissionDenied);
  auto unavailable = get(cache_);
  EXPECT_EQ(unavailable.error().code, ErrorCode::Unavailable);
  EXPECT_THAT(unavailable.error().message, HasSubstr("get secret ns/sp: HTTP 500"));
  EXPECT_EQ(get(cache_).error().code, ErrorCode::Timeout);
  EXPECT_EQ(get(cache_).error().code, ErrorCode::Unavailable);
  EXPECT_EQ(get(cache_).error().code, ErrorCode::Unavailable);
  EXPECT_EQ(get(cache_).value().data.at("clientSecret"), "finally");
  EXPECT_EQ(errors_, 6);
}

TEST_F(SecretCacheTest, AnEmptyReferenceIsNotFound) {
  auto result = nmi::testing::runSync(io_, cache_.get(identity::SecretRef{"", "ns"}));
  EXPECT_EQ(result.error().code, ErrorCode::NotFound);
  EXPECT_TRUE(transport_.calls().empty());
}

TEST_F(SecretCacheTest, ConcurrentReadsShareOneRequest) {
  transport_.addGet(path_, testing::okJson(secret("shared")));
  transport_.holdGets(true);
  std::vector<std::optional<Result<identity::SecretData>>> results(3);
  for (auto& slot : results) {
    boost::asio::co_spawn(
        boost::asio::make_strand(io_),
        [&]() -> Task<void> {
          const identity::SecretRef ref{"sp", "ns"};
          auto result = co_await cache_.get(ref);
          slot.emplace(std::move(result));
        },
        boost::asio::detached);
  }
  while (transport_.held() == 0) {
    io_.run_one();
  }
  io_.poll();
  transport_.release();
  io_.run();
  for (const auto& slot : results) {
    ASSERT_TRUE(slot.has_value());
    ASSERT_TRUE(slot->has_value());
    EXPECT_EQ((*slot)->data.at("clientSecret"), "shared");
  }
  EXPECT_EQ(transport_.calls().size(), 1U);
  EXPECT_EQ(cache_.fetchesForTest(), 1U);
}

TEST_F(SecretCacheTest, BoundedInSize) {
  SecretCacheOptions options;
  options.max_entries = 2;
  SecretCache small(transport_, clock_, options, {});
  for (const char* name : {"a", "b", "c"}) {
    transport_.addGet(std::string("/api/v1/namespaces/ns/secrets/") + name,
                      testing::okJson(secret(name)));
  }
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_TRUE(get(small, name).has_value());
    clock_.advance(1s);
  }
  EXPECT_EQ(small.sizeForTest(), 2U);
}

TEST_F(SecretCacheTest, AZeroTtlDoesNotCache) {
  SecretCacheOptions options;
  options.ttl = 0s;
  SecretCache uncached(transport_, clock_, options, {});
  transport_.addGet(path_, testing::okJson(secret("one")));
  transport_.addGet(path_, testing::okJson(secret("two")));
  EXPECT_EQ(get(uncached).value().data.at("clientSecret"), "one");
  EXPECT_EQ(get(uncached).value().data.at("clientSecret"), "two");
  EXPECT_EQ(uncached.sizeForTest(), 0U);
}

}  // namespace
}  // namespace nmi::kube
