#include "kube/query.h"

#include <gtest/gtest.h>

#include "kube/backoff.h"

namespace nmi::kube {
namespace {

TEST(QueryTest, NodeScopedListFromTheWatchCache) {
  ListOptions options;
  options.field_selector = "spec.nodeName=node-1";
  options.resource_version = "0";
  EXPECT_EQ(buildTarget(kPodsPath, options),
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&resourceVersion=0");
}

TEST(QueryTest, PaginatedListWithAContinueToken) {
  ListOptions options;
  options.limit = 500;
  options.continue_token = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTJ9+/=";
  EXPECT_EQ(buildTarget(kBindingsPath, options),
            "/apis/aadpodidentity.k8s.io/v1/azureidentitybindings?limit=500&continue="
            "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTJ9%2B%2F%3D");
}

TEST(QueryTest, WatchWithBookmarksAndATimeout) {
  ListOptions options;
  options.label_selector = "nodename=aks-node/0,x in (a b)";
  options.resource_version = "12345";
  options.watch = true;
  options.allow_bookmarks = true;
  options.timeout_seconds = 287;
  EXPECT_EQ(buildTarget(kAssignedIdentitiesPath, options),
            "/apis/aadpodidentity.k8s.io/v1/azureassignedidentities?labelSelector=nodename%3Daks-"
            "node%2F0%2Cx%20in%20%28a%20b%29&resourceVersion=12345&watch=1&allowWatchBookmarks="
            "true&timeoutSeconds=287");
}

TEST(QueryTest, EmptyOptionsAddNoQuery) {
  EXPECT_EQ(buildTarget(kIdentitiesPath, ListOptions{}),
            "/apis/aadpodidentity.k8s.io/v1/azureidentities");
}

TEST(QueryTest, SecretPathEncodesSegments) {
  EXPECT_EQ(secretPath("ns-1", "sp.secret"), "/api/v1/namespaces/ns-1/secrets/sp.secret");
  EXPECT_EQ(secretPath("a/b", "c?d"), "/api/v1/namespaces/a%2Fb/secrets/c%3Fd");
}

TEST(BackoffTest, DoublesUpToTheCapWithJitter) {
  const BackoffPolicy policy;  // 100 ms, 1 s, ±20 %
  EXPECT_EQ(backoffDelay(policy, 1, 0.5), std::chrono::milliseconds(100));
  EXPECT_EQ(backoffDelay(policy, 2, 0.5), std::chrono::milliseconds(200));
  EXPECT_EQ(backoffDelay(policy, 3, 0.5), std::chrono::milliseconds(400));
  EXPECT_EQ(backoffDelay(policy, 4, 0.5), std::chrono::milliseconds(800));
  EXPECT_EQ(backoffDelay(policy, 5, 0.5), std::chrono::milliseconds(1000));
  EXPECT_EQ(backoffDelay(policy, 500, 0.5), std::chrono::milliseconds(1000));
  EXPECT_EQ(backoffDelay(policy, 1, 0.0), std::chrono::milliseconds(80));
  EXPECT_EQ(backoffDelay(policy, 1, 0.999999), std::chrono::milliseconds(120));
  EXPECT_EQ(backoffDelay(policy, 9, 0.999999), std::chrono::milliseconds(1200));
  EXPECT_EQ(backoffDelay(policy, 0, 0.5), std::chrono::milliseconds(100));
}

TEST(BackoffTest, RetryAfterWinsWhenLonger) {
  const BackoffPolicy policy;
  EXPECT_EQ(backoffDelay(policy, 1, 0.5, std::chrono::seconds(3)), std::chrono::seconds(3));
  EXPECT_EQ(backoffDelay(policy, 5, 0.5, std::chrono::seconds(0)), std::chrono::milliseconds(1000));
}

TEST(BackoffTest, WatchTimeoutsSpreadOverTheRange) {
  const std::chrono::seconds lo{240};
  const std::chrono::seconds hi{300};
  EXPECT_EQ(watchTimeoutSeconds(lo, hi, 0.0), 240);
  EXPECT_EQ(watchTimeoutSeconds(lo, hi, 0.5), 270);
  EXPECT_EQ(watchTimeoutSeconds(lo, hi, 0.9999999), 300);
  EXPECT_EQ(watchTimeoutSeconds(std::chrono::seconds(5), std::chrono::seconds(5), 0.7), 5);
}

}  // namespace
}  // namespace nmi::kube
