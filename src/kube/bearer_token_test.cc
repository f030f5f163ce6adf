#include "kube/bearer_token.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"

namespace nmi::kube {
namespace {

using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace): literals only

class BearerTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nmi-kube-token-" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "token").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Replaces the file by a rename, as the kubelet's atomic writer does.
  void rotate(const std::string& content) {
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << content;
    std::filesystem::rename(tmp, path_);
  }

  std::filesystem::path dir_;
  std::string path_;
  nmi::testing::FakeClock clock_;
};

TEST_F(BearerTokenTest, NoneAndFixed) {
  BearerToken none;
  EXPECT_EQ(none.current().value(), "");
  BearerToken fixed = BearerToken::fixed("static");
  EXPECT_EQ(fixed.current().value(), "static");
  fixed.invalidate();
  EXPECT_EQ(fixed.current().value(), "static");
  EXPECT_FALSE(fixed.isFile());
}

TEST_F(BearerTokenTest, ReadsTheFileTrimmed) {
  rotate("  first-token\n");
  BearerToken token = BearerToken::fromFile(path_, clock_);
  EXPECT_TRUE(token.isFile());
  EXPECT_EQ(token.current().value(), "first-token");
  EXPECT_EQ(token.reads(), 1U);
}

TEST_F(BearerTokenTest, ARotatedFileIsSeenAfterAtMostOneSecond) {
  rotate("first-token");
  BearerToken token = BearerToken::fromFile(path_, clock_);
  EXPECT_EQ(token.current().value(), "first-token");
  rotate("second-token");
  clock_.advance(500ms);
  EXPECT_EQ(token.current().value(), "first-token");  // not checked again yet
  clock_.advance(500ms);
  EXPECT_EQ(token.current().value(), "second-token");
  EXPECT_EQ(token.reads(), 2U);
  clock_.advance(5000ms);
  EXPECT_EQ(token.current().value(), "second-token");
  EXPECT_EQ(token.reads(), 2U);  // unchanged file: not read again
}

TEST_F(BearerTokenTest, InvalidateRereadsAtOnce) {
  rotate("first-token");
  BearerToken token = BearerToken::fromFile(path_, clock_);
  EXPECT_EQ(token.current().value(), "first-token");
  rotate("second-token");
  token.invalidate();
  EXPECT_EQ(token.current().value(), "second-token");
  token.invalidate();
  EXPECT_EQ(token.current().value(), "second-token");
  EXPECT_EQ(token.reads(), 3U);  // a forced read even when the file did not change
}

TEST_F(BearerTokenTest, KeepsTheLastTokenWhileTheFileIsMissingOrEmpty) {
  rotate("first-token");
  BearerToken token = BearerToken::fromFile(path_, clock_);
  EXPECT_EQ(token.current().value(), "first-token");
  std::filesystem::remove(path_);
  clock_.advance(2000ms);
  EXPECT_EQ(token.current().value(), "first-token");
  rotate("\n");
  clock_.advance(2000ms);
  EXPECT_EQ(token.current().value(), "first-token");
  rotate("third");
  clock_.advance(2000ms);
  EXPECT_EQ(token.current().value(), "third");
}

TEST_F(BearerTokenTest, AMissingOrEmptyFileIsAnErrorBeforeTheFirstRead) {
  BearerToken missing = BearerToken::fromFile(path_, clock_);
  EXPECT_EQ(missing.current().error().code, ErrorCode::NotFound);
  rotate("");
  BearerToken empty = BearerToken::fromFile(path_, clock_);
  EXPECT_EQ(empty.current().error().code, ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace nmi::kube
