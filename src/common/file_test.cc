#include "common/file.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace nmi {
namespace {

class ReadSmallFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nmi-file-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

TEST_F(ReadSmallFileTest, ReadsUpToTheLimitAndNoMore) {
  const std::string path = (dir_ / "f").string();
  std::ofstream(path) << std::string(100, 'x');
  EXPECT_EQ(readSmallFile(path, 100).value(), std::string(100, 'x'));
  const auto over = readSmallFile(path, 99);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(over.error().message.find(path), std::string::npos);
}

TEST_F(ReadSmallFileTest, RefusesWhatIsNotARegularFile) {
  EXPECT_EQ(readSmallFile(dir_.string(), 1000).error().code, ErrorCode::InvalidArgument);
  const std::string fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Returns at once (no writer would ever come) and refuses it.
  EXPECT_EQ(readSmallFile(fifo, 1000).error().code, ErrorCode::InvalidArgument);
}

TEST_F(ReadSmallFileTest, MissingIsNotFound) {
  const auto missing = readSmallFile((dir_ / "none").string(), 1000);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
}

// /proc entries report size 0: read to their end, still bounded.
TEST_F(ReadSmallFileTest, ProcEntriesAreReadToTheirEnd) {
  const auto stat = readSmallFile("/proc/self/stat", 4096);
  ASSERT_TRUE(stat) << stat.error().message;
  EXPECT_FALSE(stat->empty());
  EXPECT_EQ(readSmallFile("/proc/self/stat", 3).error().code, ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace nmi
