#include "iptables/process_command_runner.h"

#include <sys/stat.h>

#include <array>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace nmi::iptables {
namespace {

using std::chrono::milliseconds;

Command cmd(std::vector<std::string> argv, std::string input = "",
            milliseconds timeout = milliseconds(10'000)) {
  Command c;
  c.argv = std::move(argv);
  c.input = std::move(input);
  c.timeout = timeout;
  return c;
}

TEST(ProcessCommandRunnerTest, FeedsInputAndCapturesOutputWithoutDeadlock) {
  ProcessCommandRunner runner;
  // More than a pipe holds, both ways at once.
  std::string big(3 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 100) {
    big[i] = '\n';
  }
  auto out = runner.run(cmd({"cat"}, big));
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_EQ(out->exit_code, 0);
  EXPECT_EQ(out->out.size(), big.size());
  EXPECT_TRUE(out->out == big);
}

TEST(ProcessCommandRunnerTest, ReportsExitCodesAndStandardError) {
  ProcessCommandRunner runner;
  auto f = runner.run(cmd({"false"}));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->exit_code, 1);
  auto ls = runner.run(cmd({"ls", "/nonexistent-nmi-path"}));
  ASSERT_TRUE(ls.has_value());
  EXPECT_NE(ls->exit_code, 0);
  EXPECT_NE(ls->err.find("nonexistent-nmi-path"), std::string::npos);
  EXPECT_TRUE(ls->out.empty());
}

TEST(ProcessCommandRunnerTest, AddsAndReplacesEnvironmentVariables) {
  ProcessCommandRunner runner;
  Command c = cmd({"env"});
  c.env = {{"XTABLES_LOCKFILE", "/tmp/nmi-test.lock"}, {"PATH", "/usr/bin:/bin"}};
  auto out = runner.run(c);
  ASSERT_TRUE(out.has_value());
  EXPECT_NE(out->out.find("XTABLES_LOCKFILE=/tmp/nmi-test.lock\n"), std::string::npos);
  const std::string env = "\n" + out->out;
  EXPECT_NE(env.find("\nPATH=/usr/bin:/bin\n"), std::string::npos);
  EXPECT_EQ(env.find("\nPATH=", env.find("\nPATH=") + 1), std::string::npos);  // replaced
}

TEST(ProcessCommandRunnerTest, AMissingProgramIsNotFound) {
  ProcessCommandRunner runner;
  auto out = runner.run(cmd({"nmi-no-such-program"}));
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, ErrorCode::NotFound);
  EXPECT_EQ(runner.run(cmd({"/nonexistent/prog"})).error().code, ErrorCode::NotFound);
}

TEST(ProcessCommandRunnerTest, KillsAProgramAtItsTimeout) {
  ProcessCommandRunner runner;
  const auto t0 = std::chrono::steady_clock::now();
  auto out = runner.run(cmd({"sleep", "10"}, "", milliseconds(200)));
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, ErrorCode::Timeout);
  EXPECT_EQ(out.error().message, "sleep: killed after 200 ms");
  EXPECT_LT(took, std::chrono::seconds(2));
}

TEST(ProcessCommandRunnerTest, CancelEndsTheRunningProgramAndEveryLaterOne) {
  ProcessCommandRunner runner;
  // The child tells it started through a FIFO; the canceller waits for that, not for a time.
  std::array<char, 32> dir{"/tmp/nmi-runner-test-XXXXXX"};
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string fifo = std::string(dir.data()) + "/started";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread canceller([&runner, &fifo] {
    std::ifstream started(fifo);  // opens once the child opens it for writing
    std::string line;
    std::getline(started, line);
    runner.cancel();
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto out = runner.run(cmd({"sh", "-c", "echo up > '" + fifo + "'; exec sleep 10"}));
  // Should the child never have opened the FIFO, let the canceller go (it reads end of file).
  if (const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK); fd >= 0) {
    ::close(fd);
  }
  canceller.join();
  ::unlink(fifo.c_str());
  ::rmdir(dir.data());
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, ErrorCode::Cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(runner.run(cmd({"true"})).error().code, ErrorCode::Cancelled);
}

TEST(ProcessCommandRunnerTest, TheChildInheritsNoOtherDescriptor) {
  const int fd = ::open("/dev/null", O_RDONLY);  // not close-on-exec on purpose
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::dup2(fd, 57), 57);
  ProcessCommandRunner runner;
  auto out = runner.run(cmd({"ls", "/proc/self/fd"}));
  ::close(57);
  ::close(fd);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->out.find("57"), std::string::npos) << out->out;
  EXPECT_NE(out->out.find("0\n1\n2\n"), std::string::npos) << out->out;
}

TEST(ProcessCommandRunnerTest, AChildThatIgnoresItsInputDoesNotKillUs) {
  ProcessCommandRunner runner;
  auto out = runner.run(cmd({"true"}, std::string(1 << 20, 'x')));
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_EQ(out->exit_code, 0);
}

}  // namespace
}  // namespace nmi::iptables
