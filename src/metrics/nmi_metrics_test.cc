#include "metrics/nmi_metrics.h"

#include <gtest/gtest.h>

namespace nmi::metrics {
namespace {

TEST(NmiMetricsTest, KeepsTheOriginalSeriesNamesAndLabelKeys) {
  NmiMetrics m;
  m.observeOperation("token", 200, "default", "https://vault.azure.net", 0.01);
  m.observeTokenAcquisition("adal_token_msi_userassignedid", true, 0.02);
  m.observeTokenAcquisition("adal_token", false, 0.02);
  m.kubernetes_api_errors.Add({{"operation_type", "get_secret"}}).Increment();
  const std::string text = m.serialize();
  EXPECT_NE(text.find("aadpodidentity_nmi_operations_duration_seconds_bucket{namespace=\"default\","
                      "operation_type=\"token\",resource=\"https://vault.azure.net\","
                      "status_code=\"200\""),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("aadpodidentity_imds_operations_duration_seconds_count{operation_type="
                      "\"adal_token_msi_userassignedid\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("aadpodidentity_imds_operations_errors_count{operation_type=\"adal_token\"} 1"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("aadpodidentity_kubernetes_api_operations_errors_count{operation_type="
                      "\"get_secret\"} 1"),
            std::string::npos)
      << text;
}

TEST(NmiMetricsTest, UnknownResourcesShareOneLabelValue) {
  EXPECT_EQ(NmiMetrics::resourceLabel("https://management.azure.com/"),
            "https://management.azure.com/");
  EXPECT_EQ(NmiMetrics::resourceLabel("https://attacker.example/x?y"), "other");
  EXPECT_EQ(NmiMetrics::resourceLabel(""), "");
}

TEST(NmiMetricsTest, CountsRequestsAndUpstreamsByBoundedLabels) {
  NmiMetrics m;
  m.countRequest("token", 404);
  m.countRequest("token", 404);
  m.countUpstream("imds", 429);
  m.countUpstream("aad", -1);
  m.cache_hits.Increment();
  const std::string text = m.serialize();
  EXPECT_NE(text.find("nmi_requests_total{code=\"404\",route=\"token\"} 2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("nmi_upstream_requests_total{status=\"429\",upstream=\"imds\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("nmi_upstream_requests_total{status=\"error\",upstream=\"aad\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("nmi_token_cache_requests_total{result=\"hit\"} 1"), std::string::npos);
}

}  // namespace
}  // namespace nmi::metrics
