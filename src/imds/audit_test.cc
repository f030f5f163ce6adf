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

// Seam 6 of issue 10: the resource comes from the pod; it must not be able to forge the fields
// that say who got which identity.
TEST(AuditLogTest, ValuesAreQuotedSoThatNoFieldCanBeForged) {
  AuditLog::Delivery d = delivery("uid-a", 100);
  const std::string forged =
      "https://r\" pod=\"victim/web\" identity=\"victim/admin\"\nfake line identity=x";
  d.resource = forged;
  const std::string line = AuditLog::line(d);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line,
            "token delivered endpoint=token pod=\"ns/pod\" pod_uid=\"uid-a\" identity=\"ns/id\" "
            "client_id=\"cid\" resource=\"https://r\\\" pod=\\\"victim/web\\\" "
            "identity=\\\"victim/admin\\\"\\x0afake line identity=x\" expires_on=100");
  // Splitting on unescaped quotes gives back exactly the fields written.
  int unescaped_quotes = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '"' && (i == 0 || line[i - 1] != '\\')) {
      ++unescaped_quotes;
    }
  }
  EXPECT_EQ(unescaped_quotes, 10);  // five quoted values
}

}  // namespace
}  // namespace nmi::imds
