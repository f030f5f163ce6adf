#include "kube/rest_config.h"

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/base64.h"

namespace nmi::kube {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kCaPem = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
constexpr std::string_view kCertPem =
    "-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n";
constexpr std::string_view kKeyPem =
    "-----BEGIN PRIVATE KEY-----\nSECRET-KEY\n-----END PRIVATE KEY-----\n";

class RestConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nmi-kube-rc-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "pki");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, std::string_view content) {
    const auto path = dir_ / name;
    std::ofstream(path) << content;
    return path.string();
  }

  // A kubeconfig whose current context "ctx" uses cluster "c" and user "u".
  static std::string kubeconfig(const std::string& cluster, const std::string& user) {
    return "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n"
           "contexts:\n- name: other\n  context: {cluster: nope, user: nope}\n"
           "- name: ctx\n  context:\n    cluster: c\n    user: u\n    namespace: ignored\n"
           "clusters:\n- name: c\n  cluster:\n" +
           cluster + "users:\n- name: u\n  user:\n" + user;
  }

  Result<RestConfig> parse(const std::string& text) { return parseKubeconfig(text, dir_.string()); }

  std::filesystem::path dir_;
};

TEST_F(RestConfigTest, TokenAndCaData) {
  auto config =
      parse(kubeconfig("    server: https://10.0.0.1:6443\n"
                       "    certificate-authority-data: " +
                           base64Encode(kCaPem) + "\n",
                       "    token: abc.def.ghi\n"));
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->server.host, "10.0.0.1");
  EXPECT_EQ(config->server.port, 6443);
  EXPECT_EQ(config->server.target, "");
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_EQ(config->token, "abc.def.ghi");
  EXPECT_EQ(config->token_file, "");
  EXPECT_EQ(config->client_cert_pem, "");
  EXPECT_EQ(config->source, "context ctx");
}

TEST_F(RestConfigTest, FilesAreRelativeToTheKubeconfigsDirectory) {
  write("pki/ca.crt", kCaPem);
  write("pki/client.crt", kCertPem);
  write("pki/client.key", kKeyPem);
  write("token", "tok-from-file\n");
  auto config =
      parse(kubeconfig("    server: https://api.example.com/prefix/\n"
                       "    certificate-authority: pki/ca.crt\n"
                       "    tls-server-name: kubernetes.default.svc\n",
                       "    client-certificate: pki/client.crt\n    client-key: " +
                           (dir_ / "pki/client.key").string() + "\n    tokenFile: token\n"));
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->server.host, "api.example.com");
  EXPECT_EQ(config->server.port, 443);
  EXPECT_EQ(config->server.target, "/prefix");
  EXPECT_EQ(config->tls_server_name, "kubernetes.default.svc");
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_EQ(config->client_cert_pem, kCertPem);
  EXPECT_EQ(config->client_key_pem, kKeyPem);
  EXPECT_EQ(config->token_file, (dir_ / "token").string());
}

TEST_F(RestConfigTest, ClientCertificateData) {
  auto config = parse(kubeconfig("    server: https://[fd00::1]:443\n",
                                 "    client-certificate-data: " + base64Encode(kCertPem) +
                                     "\n    client-key-data: " + base64Encode(kKeyPem) + "\n"));
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->server.host, "fd00::1");
  EXPECT_EQ(config->client_cert_pem, kCertPem);
  EXPECT_EQ(config->client_key_pem, kKeyPem);
  EXPECT_TRUE(config->ca_pem.empty());  // the system's trust store
}

TEST_F(RestConfigTest, DataWinsOverFile) {
  auto config =
      parse(kubeconfig("    server: https://h\n    certificate-authority: missing.crt\n"
                       "    certificate-authority-data: " +
                           base64Encode(kCaPem) + "\n",
                       "    token: t\n"));
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->ca_pem, kCaPem);
}

TEST_F(RestConfigTest, AnonymousUserIsAllowed) {
  const std::string text =
      "current-context: ctx\ncontexts:\n- name: ctx\n  context: {cluster: c}\n"
      "clusters:\n- name: c\n  cluster: {server: 'https://h:1'}\n";
  auto config = parse(text);
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->token, "");
}

TEST_F(RestConfigTest, InsecureSkipTlsVerifyIsRefused) {
  auto config = parse(
      kubeconfig("    server: https://h\n    insecure-skip-tls-verify: true\n", "    token: t\n"));
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code, ErrorCode::InvalidArgument);
  EXPECT_THAT(config.error().message, HasSubstr("insecure-skip-tls-verify: true is refused"));
  auto off = parse(
      kubeconfig("    server: https://h\n    insecure-skip-tls-verify: false\n", "    token: t\n"));
  EXPECT_TRUE(off.has_value());
}

TEST_F(RestConfigTest, ErrorsNameTheFieldAndNeverTheSecret) {
  struct Case {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"current-context: ''\n", "current-context: missing"},
      {"current-context: x\n", "contexts: no entry named \"x\""},
      {kubeconfig("    server: http://h\n", "    token: t\n"), "must be an https URL"},
      {kubeconfig("    certificate-authority-data: AAAA\n", "    token: t\n"),
       "clusters[c].cluster.server: missing"},
      {kubeconfig("    server: https://h\n    certificate-authority: nope.crt\n", "    token: t\n"),
       "clusters[c].cluster.certificate-authority: cannot open"},
      {kubeconfig("    server: https://h\n    certificate-authority-data: '!!!SECRET-KEY'\n",
                  "    token: t\n"),
       "certificate-authority-data: not valid base64"},
      {kubeconfig("    server: https://h\n",
                  "    client-certificate-data: " + base64Encode(kCertPem) + "\n"),
       "client-certificate and client-key must be given together"},
      {kubeconfig("    server: https://h\n", "    exec: {command: az}\n"),
       "users[u].user.exec: not supported"},
      {kubeconfig("    server: https://h\n", "    auth-provider: {name: azure}\n"),
       "auth-provider: not supported"},
      {kubeconfig("    server: https://h\n", "    username: admin\n    password: SECRET-KEY\n"),
       "username: not supported"},
      {kubeconfig("    server: https://h\n    proxy-url: http://p:3128\n", "    token: t\n"),
       "proxy-url: not supported"},
      {kubeconfig("    server: https://h\n", "    tokenFile: missing-token\n"),
       "users[u].user.tokenFile: cannot open"},
      {kubeconfig("    server: [1, 2]\n", "    token: t\n"), "server: expected a string"},
      {"clusters: 3\ncurrent-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\n",
       "clusters: expected a list"},
      {"- just\n- a list\n", "expected a map at the top level"},
      {"key: [unclosed\n", "not valid YAML (line"},
  };
  for (const auto& c : cases) {
    auto config = parse(c.text);
    ASSERT_FALSE(config.has_value()) << c.text;
    EXPECT_THAT(config.error().message, HasSubstr(c.expected)) << c.text;
    EXPECT_THAT(config.error().message, Not(HasSubstr("SECRET-KEY"))) << c.text;
  }
}

TEST_F(RestConfigTest, LoadKubeconfigNamesTheFile) {
  const std::string path = write("kc", kubeconfig("    server: https://h\n", "    token: t\n"));
  auto config = loadKubeconfig(path);
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->source, "kubeconfig " + path + " (context ctx)");
  auto missing = loadKubeconfig((dir_ / "absent").string());
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
  EXPECT_THAT(missing.error().message, HasSubstr("kubeconfig: cannot open"));
}

TEST_F(RestConfigTest, InClusterConfig) {
  write("ca.crt", kCaPem);
  write("token", "sa-token\n");
  auto config = inClusterConfig("10.0.0.1", "443", dir_.string());
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->server.host, "10.0.0.1");
  EXPECT_EQ(config->server.port, 443);
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_EQ(config->token_file, (dir_ / "token").string());
  EXPECT_EQ(config->token, "");

  auto v6 = inClusterConfig("fd00:10::1", "6443", dir_.string());
  ASSERT_TRUE(v6.has_value()) << v6.error().message;
  EXPECT_EQ(v6->server.host, "fd00:10::1");
  EXPECT_EQ(v6->server.port, 6443);
  EXPECT_EQ(v6->server.authority(), "[fd00:10::1]:6443");
}

TEST_F(RestConfigTest, InClusterErrors) {
  EXPECT_EQ(inClusterConfig("", "443", dir_.string()).error().code, ErrorCode::NotFound);
  EXPECT_EQ(inClusterConfig("10.0.0.1", "", dir_.string()).error().code, ErrorCode::NotFound);
  EXPECT_EQ(inClusterConfig("10.0.0.1", "x", dir_.string()).error().code,
            ErrorCode::InvalidArgument);
  auto no_ca = inClusterConfig("10.0.0.1", "443", dir_.string());
  EXPECT_THAT(no_ca.error().message, HasSubstr("in-cluster CA: cannot open"));
  write("ca.crt", kCaPem);
  auto no_token = inClusterConfig("10.0.0.1", "443", dir_.string());
  EXPECT_EQ(no_token.error().code, ErrorCode::NotFound);
  EXPECT_THAT(no_token.error().message, HasSubstr("service-account token"));
}

TEST_F(RestConfigTest, LoadRestConfigPrefersTheKubeconfig) {
  write("ca.crt", kCaPem);
  write("token", "sa-token");
  const std::string path = write("kc", kubeconfig("    server: https://kc\n", "    token: t\n"));
  RestConfigSources sources;
  sources.kubeconfig = path + ":/other/config";
  sources.service_host = "10.0.0.1";
  sources.service_port = "443";
  sources.service_account_dir = dir_.string();
  auto from_kubeconfig = loadRestConfig(sources);
  ASSERT_TRUE(from_kubeconfig.has_value()) << from_kubeconfig.error().message;
  EXPECT_EQ(from_kubeconfig->server.host, "kc");

  sources.kubeconfig.clear();
  auto in_cluster = loadRestConfig(sources);
  ASSERT_TRUE(in_cluster.has_value()) << in_cluster.error().message;
  EXPECT_EQ(in_cluster->server.host, "10.0.0.1");

  sources.service_host.reset();
  auto nothing = loadRestConfig(sources);
  ASSERT_FALSE(nothing.has_value());
  EXPECT_THAT(nothing.error().message, HasSubstr("give --kubeconfig"));
}

}  // namespace
}  // namespace nmi::kube
