#include "imds/audit.h"

#include <gtest/gtest.h>

#include "metrics/nmi_metrics.h"

namespace nmi::imds {
namespace {

AuditLog::Delivery delivery(std::string_view pod_uid, std::int64_t expires_on) {
  return AuditLog::Delivery{"token", "ns", "pod", pod_uid, "ns/id", "cid", "https://r", expires_on};
}

TEST(AuditLogTest, LogsTheFirstDeliveryOfEachKindAndCountsEvery) {
  metrics::NmiMetrics metrics;
  AuditLog audit(metrics);
  EXPECT_TRUE(audit.record(delivery("uid-a", 100)));
  EXPECT_FALSE(audit.record(delivery("uid-a", 100)));
  EXPECT_TRUE(audit.record(delivery("uid-a", 200)));  // a new token (new expiry)
  EXPECT_TRUE(audit.record(delivery("uid-b", 100)));  // another pod
  EXPECT_EQ(metrics.token_deliveries.Value(), 4.0);
}

TEST(AuditLogTest, ForgetsTheOldestBeyondItsCapacity) {
  metrics::NmiMetrics metrics;
  AuditLog audit(metrics, 2);
  EXPECT_TRUE(audit.record(delivery("a", 1)));
  EXPECT_TRUE(audit.record(delivery("b", 1)));
  EXPECT_TRUE(audit.record(delivery("c", 1)));  // evicts a
  EXPECT_FALSE(audit.record(delivery("c", 1)));
  EXPECT_TRUE(audit.record(delivery("a", 1)));
}

}  // namespace
}  // namespace nmi::imds
