#include "kube/file_source.h"

#include <chrono>
#include <cstdlib>  // mkdtemp
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include "identity/gather.h"
#include "identity/resolver.h"
#include "tests/fakes/run_sync.h"

namespace nmi::kube {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using WaitResult = ChangeNotifier::WaitResult;

fs::path testdata() {
  return NMI_IDENTITY_TESTDATA;
}

void writeFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

// Writes next to `path` and renames over it, as editors and `kubectl cp` do.
void replaceFile(const fs::path& path, const std::string& content) {
  const fs::path temp = path.string() + ".tmp";
  writeFile(temp, content);
  fs::rename(temp, path);
}

std::string podYaml(const std::string& name, const std::string& ip,
                    const std::string& node = "node-1") {
  return "kind: Pod\nmetadata:\n  name: " + name +
         "\n  namespace: apps\nspec:\n  nodeName: " + node +
         "\nstatus:\n  phase: Running\n  podIP: " + ip + "\n";
}

std::vector<std::string> podNames(const std::vector<identity::PodInfo>& pods) {
  std::vector<std::string> out;
  out.reserve(pods.size());
  for (const auto& pod : pods) {
    out.push_back(pod.ns + "/" + pod.name);
  }
  return out;
}

class FileIdentitySourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "nmi-identity-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<FileIdentitySource> makeSource(const fs::path& path,
                                                 const std::string& node = "node-1") {
    return std::make_unique<FileIdentitySource>(io_.get_executor(), path.string(), node, logger_,
                                                20ms);
  }

  // Runs the io_context until `done` holds or `timeout` passes; false on timeout.
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
      io_.restart();
      io_.run_for(10ms);
    }
    return true;
  }

  // Waits (on the io_context) for the source's next change after `seen`, up to `timeout`.
  std::optional<WaitResult> waitForChange(FileIdentitySource& source, std::uint64_t seen,
                                          std::chrono::milliseconds timeout = 10s) {
    std::optional<WaitResult> result;
    boost::asio::co_spawn(
        boost::asio::make_strand(io_),
        [&]() -> Task<void> {
          result = co_await source.changes().waitForChange(
              seen, std::chrono::steady_clock::now() + timeout, nullptr);
        },
        boost::asio::detached);
    EXPECT_TRUE(runUntil([&] { return result.has_value(); }, timeout + 5s));
    return result;
  }

  std::size_t warnings() const {
    std::size_t count = 0;
    std::istringstream lines(log_.str());
    for (std::string line; std::getline(lines, line);) {
      count += line.find("[warning]") != std::string::npos ? 1 : 0;
    }
    return count;
  }

  fs::path dir_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> logger_ = std::make_shared<spdlog::logger>(
      "identity-test", std::make_shared<spdlog::sinks::ostream_sink_st>(log_));
  boost::asio::io_context io_;  // destroyed first: pending handlers may hold the logger
};

// ---- Loading ---------------------------------------------------------------------------------

TEST_F(FileIdentitySourceTest, LoadsMultiDocumentYaml) {
  auto source = makeSource(testdata() / "node-view.yaml");
  EXPECT_FALSE(source->hasSynced());
  ASSERT_TRUE(source->load().has_value()) << source->notReadyReason();
  EXPECT_TRUE(source->hasSynced());
  EXPECT_EQ(source->notReadyReason(), "");
  EXPECT_EQ(source->staleness(), 0s);

  EXPECT_EQ(podNames(source->podsByIp("10.244.1.10")),
            (std::vector<std::string>{"apps/web-1", "apps/web-old"}));
  EXPECT_EQ(podNames(source->podsByIp("fd00:10:244:1::20")),
            (std::vector<std::string>{"kube-system/mic-7c9d8f6b5-x2x4z"}));
  EXPECT_TRUE(source->podsByIp("10.0.0.4").empty());     // hostNetwork
  EXPECT_TRUE(source->podsByIp("10.244.2.10").empty());  // on node-2
  EXPECT_TRUE(source->podsByIp("10.9.9.9").empty());
  ASSERT_TRUE(source->podByName("kube-system", "host-agent").has_value());
  EXPECT_FALSE(source->podByName("apps", "web-2").has_value());
  const auto web = source->podByName("apps", "web-1");
  ASSERT_TRUE(web.has_value());
  EXPECT_EQ(web->uid, "9d1f0c1e-0000-4000-8000-000000000001");
  EXPECT_EQ(web->owners,
            (std::vector<identity::OwnerReference>{{"ReplicaSet", "web-5d8f7c9b6", "", true}}));

  const auto assigned = source->assignedIdentities("apps", "web-1");
  ASSERT_EQ(assigned.size(), 1U);
  EXPECT_EQ(assigned[0].state, identity::AssignedState::Assigned);
  EXPECT_EQ(assigned[0].identity.client_id, "11111111-1111-1111-1111-111111111111");
  EXPECT_TRUE(source->assignedIdentities("apps", "web-2").empty());

  const auto bindings = source->bindingsBySelector("web");
  ASSERT_EQ(bindings.size(), 1U);
  EXPECT_EQ(bindings[0].azure_identity, "web-identity");
  EXPECT_TRUE(source->bindingsBySelector("").empty());

  const auto sp = source->identity("apps", "sp-identity");
  ASSERT_TRUE(sp.has_value());
  EXPECT_EQ(sp->type, 1);
  EXPECT_TRUE(sp->namespaced);
  EXPECT_EQ(sp->client_password, (identity::SecretRef{"sp-secret", "apps"}));
  EXPECT_FALSE(source->identity("default", "sp-identity").has_value());

  const auto exceptions = source->exceptions("kube-system");
  ASSERT_EQ(exceptions.size(), 1U);
  EXPECT_EQ(exceptions[0].name, "mic-exception");
  EXPECT_TRUE(source->exceptions("apps").empty());

  const auto secret =
      testing::runSync(io_, source->secret(identity::SecretRef{"sp-secret", "apps"}));
  ASSERT_TRUE(secret.has_value()) << secret.error().message;
  EXPECT_EQ(secret->data.at("clientSecret"), "s3cr3t-value");
  const auto missing =
      testing::runSync(io_, source->secret(identity::SecretRef{"sp-secret", "default"}));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);

  // The ConfigMap is reported once, and nothing secret reaches the log.
  EXPECT_NE(log_.str().find("ConfigMap"), std::string::npos) << log_.str();
  EXPECT_EQ(log_.str().find("s3cr3t"), std::string::npos) << log_.str();
}

TEST_F(FileIdentitySourceTest, WithoutNodeNameKeepsEveryPod) {
  auto source = makeSource(testdata() / "node-view.yaml", "");
  ASSERT_TRUE(source->load().has_value());
  EXPECT_EQ(podNames(source->podsByIp("10.244.2.10")), (std::vector<std::string>{"apps/web-2"}));
}

TEST_F(FileIdentitySourceTest, LoadsJsonList) {
  auto source = makeSource(testdata() / "managed-list.json");
  ASSERT_TRUE(source->load().has_value()) << source->notReadyReason();
  EXPECT_EQ(podNames(source->podsByIp("10.244.1.30")), (std::vector<std::string>{"team/api-0"}));
  const auto id = source->identity("team", "api-identity");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->type, 2);
  EXPECT_EQ(id->ad_endpoint, "https://adfs.contoso.com/");
  const auto secret =
      testing::runSync(io_, source->secret(identity::SecretRef{"api-cert", "team"}));
  ASSERT_TRUE(secret.has_value());
  EXPECT_EQ(secret->data.at("certificate"), std::string("\x00\x01\x02\x03", 4));
  EXPECT_EQ(secret->data.at("password"), "pfx-password");
}

TEST_F(FileIdentitySourceTest, FileDataDrivesDecisions) {
  auto source = makeSource(testdata() / "node-view.yaml");
  ASSERT_TRUE(source->load().has_value());
  const SystemTime now = fromUnixSeconds(1'714'557'000);  // web-old's grace window is open
  const auto match = identity::matchPodByIp(source->ipClaims("10.244.1.10"), now);
  ASSERT_EQ(match.kind, identity::PodMatch::Kind::Found);
  EXPECT_EQ(match.pod.name, "web-1");  // the pod being deleted loses
  const identity::ResolverOptions options{identity::Mode::Standard, false, true};
  const auto granted =
      identity::resolve(identity::gatherInput(*source, match.pod, identity::Mode::Standard),
                        identity::IdentityRequest{}, options);
  ASSERT_EQ(granted.kind, identity::DecisionKind::Grant) << granted.reason;
  EXPECT_EQ(granted.identity.name, "web-identity");

  const auto mic = identity::matchPodByIp(source->ipClaims("10.244.1.20"), now);
  ASSERT_EQ(mic.kind, identity::PodMatch::Kind::Found);
  EXPECT_EQ(identity::resolve(identity::gatherInput(*source, mic.pod, identity::Mode::Standard),
                              identity::IdentityRequest{}, options)
                .kind,
            identity::DecisionKind::Exception);

  auto managed_source = makeSource(testdata() / "managed-list.json");
  ASSERT_TRUE(managed_source->load().has_value());
  const auto api = *managed_source->podByName("team", "api-0");
  const auto managed = identity::resolve(
      identity::gatherInput(*managed_source, api, identity::Mode::Managed),
      identity::IdentityRequest{}, identity::ResolverOptions{identity::Mode::Managed, true, true});
  ASSERT_EQ(managed.kind, identity::DecisionKind::Grant) << managed.reason;
  EXPECT_EQ(managed.identity.name, "api-identity");
}

TEST_F(FileIdentitySourceTest, MissingFileIsNotFoundAndNotReady) {
  auto source = makeSource(dir_ / "absent.yaml");
  const auto result = source->load();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::NotFound);
  EXPECT_FALSE(source->hasSynced());
  EXPECT_NE(source->notReadyReason().find("absent.yaml"), std::string::npos);
}

TEST_F(FileIdentitySourceTest, BadObjectFailsTheWholeLoadNamingIt) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("good", "10.1.0.1") +
                      "---\nkind: AzureIdentity\nmetadata:\n  name: broken\n  namespace: apps\n"
                      "spec:\n  type: \"0\"\n");
  auto source = makeSource(path);
  const auto result = source->load();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::InvalidArgument);
  const std::string& message = result.error().message;
  EXPECT_NE(message.find("document 2"), std::string::npos) << message;
  EXPECT_NE(message.find("AzureIdentity apps/broken"), std::string::npos) << message;
  EXPECT_NE(message.find("spec.type"), std::string::npos) << message;
  EXPECT_TRUE(source->podsByIp("10.1.0.1").empty());  // nothing half-loaded
  EXPECT_FALSE(source->hasSynced());
}

TEST_F(FileIdentitySourceTest, FailedLoadKeepsThePreviousData) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("good", "10.1.0.1"));
  auto source = makeSource(path);
  ASSERT_TRUE(source->load().has_value());
  writeFile(path, "kind: Pod\nmetadata: {}\n");
  EXPECT_FALSE(source->load().has_value());
  EXPECT_TRUE(source->hasSynced());
  EXPECT_EQ(source->podsByIp("10.1.0.1").size(), 1U);
}

TEST_F(FileIdentitySourceTest, ObjectWithoutKindIsAnError) {
  const fs::path path = dir_ / "identities.json";
  writeFile(path, R"([{"metadata":{"name":"x"}}])");
  const auto result = makeSource(path)->load();
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message.find("kind"), std::string::npos);
}

TEST_F(FileIdentitySourceTest, OversizedFileIsRefused) {
  const fs::path path = dir_ / "huge.yaml";
  writeFile(path, std::string(16 * 1024 * 1024 + 1, '#'));
  const auto result = makeSource(path)->load();
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message.find("larger"), std::string::npos);
}

TEST_F(FileIdentitySourceTest, DirectoryIsRefused) {
  const auto result = makeSource(dir_)->load();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::InvalidArgument);
}

TEST_F(FileIdentitySourceTest, LaterDuplicateWins) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("web", "10.1.0.1") + "---\n" + podYaml("web", "10.1.0.2"));
  auto source = makeSource(path);
  ASSERT_TRUE(source->load().has_value());
  EXPECT_TRUE(source->podsByIp("10.1.0.1").empty());
  EXPECT_EQ(source->podsByIp("10.1.0.2").size(), 1U);
  EXPECT_EQ(warnings(), 1U) << log_.str();
}

TEST_F(FileIdentitySourceTest, LoadNotifiesChanges) {
  auto source = makeSource(testdata() / "node-view.yaml");
  const auto before = source->changes().generation();
  ASSERT_TRUE(source->load().has_value());
  EXPECT_GT(source->changes().generation(), before);
}

// ---- Watching --------------------------------------------------------------------------------

TEST_F(FileIdentitySourceTest, RewriteInPlaceReloadsAndNotifies) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("one", "10.1.0.1"));
  auto source = makeSource(path);
  ASSERT_TRUE(source->load().has_value());
  ASSERT_TRUE(source->start().has_value());
  const auto seen = source->changes().generation();

  writeFile(path, podYaml("two", "10.1.0.2"));
  EXPECT_EQ(waitForChange(*source, seen), WaitResult::Changed);
  EXPECT_TRUE(source->podsByIp("10.1.0.1").empty());
  EXPECT_EQ(podNames(source->podsByIp("10.1.0.2")), (std::vector<std::string>{"apps/two"}));
  EXPECT_EQ(source->reloadFailures(), 0U);
  source->stop();
}

TEST_F(FileIdentitySourceTest, RenameOverReloads) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("one", "10.1.0.1"));
  auto source = makeSource(path);
  ASSERT_TRUE(source->load().has_value());
  ASSERT_TRUE(source->start().has_value());
  const auto seen = source->changes().generation();

  replaceFile(path, podYaml("two", "10.1.0.2"));
  EXPECT_EQ(waitForChange(*source, seen), WaitResult::Changed);
  EXPECT_EQ(source->podsByIp("10.1.0.2").size(), 1U);
}

TEST_F(FileIdentitySourceTest, OtherFilesInTheDirectoryDoNotReload) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("one", "10.1.0.1"));
  auto source = makeSource(path);
  ASSERT_TRUE(source->load().has_value());
  ASSERT_TRUE(source->start().has_value());
  const auto seen = source->changes().generation();

  writeFile(dir_ / "unrelated.txt", "hello");
  EXPECT_EQ(waitForChange(*source, seen, 300ms), WaitResult::DeadlinePassed);
}

TEST_F(FileIdentitySourceTest, BrokenRewriteKeepsOldDataAndCountsFailure) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("one", "10.1.0.1"));
  auto source = makeSource(path);
  ASSERT_TRUE(source->load().has_value());
  ASSERT_TRUE(source->start().has_value());
  const auto seen = source->changes().generation();
  const auto warnings_before = warnings();

  writeFile(path, "kind: Pod\nmetadata:\n  name: [unclosed\n");
  ASSERT_TRUE(runUntil([&] { return source->reloadFailures() > 0; }));
  EXPECT_EQ(source->reloadFailures(), 1U);
  EXPECT_EQ(source->changes().generation(), seen);  // no notify for a failed reload
  EXPECT_TRUE(source->hasSynced());
  EXPECT_EQ(source->podsByIp("10.1.0.1").size(), 1U);
  EXPECT_EQ(warnings(), warnings_before + 1) << log_.str();

  // A later good write is picked up again.
  writeFile(path, podYaml("two", "10.1.0.2"));
  EXPECT_EQ(waitForChange(*source, seen), WaitResult::Changed);
  EXPECT_EQ(source->podsByIp("10.1.0.2").size(), 1U);
}

TEST_F(FileIdentitySourceTest, ConfigMapSymlinkSwapReloads) {
  // The layout of a ConfigMap volume: file -> ..data/file, ..data -> ..<timestamp>.
  fs::create_directory(dir_ / "..v1");
  writeFile(dir_ / "..v1" / "identities.yaml", podYaml("one", "10.1.0.1"));
  fs::create_directory_symlink("..v1", dir_ / "..data");
  fs::create_symlink("..data/identities.yaml", dir_ / "identities.yaml");
  auto source = makeSource(dir_ / "identities.yaml");
  ASSERT_TRUE(source->load().has_value());
  ASSERT_TRUE(source->start().has_value());
  const auto seen = source->changes().generation();

  fs::create_directory(dir_ / "..v2");
  writeFile(dir_ / "..v2" / "identities.yaml", podYaml("two", "10.1.0.2"));
  fs::create_directory_symlink("..v2", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  fs::remove_all(dir_ / "..v1");

  EXPECT_EQ(waitForChange(*source, seen), WaitResult::Changed);
  ASSERT_TRUE(runUntil([&] { return !source->podsByIp("10.1.0.2").empty(); }));
  EXPECT_TRUE(source->podsByIp("10.1.0.1").empty());
}

TEST_F(FileIdentitySourceTest, StoppedSourceNoLongerReloads) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("one", "10.1.0.1"));
  auto source = makeSource(path);
  ASSERT_TRUE(source->load().has_value());
  ASSERT_TRUE(source->start().has_value());
  ASSERT_TRUE(source->start().has_value());  // idempotent
  source->stop();
  source->stop();
  const auto seen = source->changes().generation();
  writeFile(path, podYaml("two", "10.1.0.2"));
  EXPECT_EQ(waitForChange(*source, seen, 300ms), WaitResult::DeadlinePassed);
  EXPECT_EQ(source->podsByIp("10.1.0.1").size(), 1U);
}

TEST_F(FileIdentitySourceTest, DestroyingAWatchingSourceIsSafe) {
  const fs::path path = dir_ / "identities.yaml";
  writeFile(path, podYaml("one", "10.1.0.1"));
  {
    auto source = makeSource(path);
    ASSERT_TRUE(source->start().has_value());
    io_.restart();
    io_.run_for(20ms);
  }
  writeFile(path, podYaml("two", "10.1.0.2"));
  io_.restart();
  io_.run_for(100ms);
  SUCCEED();
}

TEST_F(FileIdentitySourceTest, StartFailsWhenTheDirectoryIsMissing) {
  auto source = makeSource(dir_ / "missing-dir" / "identities.yaml");
  const auto result = source->start();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::Unavailable);
}

}  // namespace
}  // namespace nmi::kube
