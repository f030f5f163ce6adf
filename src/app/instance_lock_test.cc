#include "app/instance_lock.h"

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

namespace nmi::app {
namespace {

using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace): literals only

InstanceIdentity id(std::string daemonset, std::string node = "node-1", std::int64_t pid = 10) {
  return InstanceIdentity{std::move(daemonset), std::move(node), "1.0.0", pid, ""};
}

TEST(InstanceLockDecision, OnlyTheSameDaemonSetOnTheSameNodeMayHandOver) {
  struct Case {
    InstanceIdentity mine;
    std::optional<InstanceIdentity> holder;
    LockVerdict verdict;
  };
  const Case cases[] = {
      {id("kube-system/nmi"), id("kube-system/nmi", "node-1", 9), LockVerdict::HandOver},
      {id("kube-system/nmi"), id("other/nmi"), LockVerdict::Refuse},
      {id("kube-system/nmi"), id("kube-system/nmi-canary"), LockVerdict::Refuse},
      {id("kube-system/nmi"), id("kube-system/nmi", "node-2"), LockVerdict::Refuse},
      {id("kube-system/nmi"), id(""), LockVerdict::Refuse},
      {id(""), id(""), LockVerdict::Refuse},
      {id(""), id("kube-system/nmi"), LockVerdict::Refuse},
      {id("kube-system/nmi"), std::nullopt, LockVerdict::Refuse},
  };
  for (const auto& c : cases) {
    const LockDecision d = decideSecondInstance(c.mine, c.holder);
    EXPECT_EQ(d.verdict, c.verdict)
        << c.mine.daemonset << " vs " << (c.holder ? c.holder->daemonset : "(no answer)");
    EXPECT_FALSE(d.reason.empty());
  }
}

TEST(InstanceLockDecision, TheRefusalNamesTheHolder) {
  const LockDecision d = decideSecondInstance(id("a/nmi"), id("b/nmi", "node-1", 4242));
  EXPECT_NE(d.reason.find("4242"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("b/nmi"), std::string::npos) << d.reason;
}

TEST(InstanceIdentityLine, RoundTripsAndRefusesWhatIsNotOne) {
  InstanceIdentity me = id("kube-system/nmi", "aks-node-\"7\"", 77);
  me.instance = "0f1e2d3c4b5a6978";
  const std::string line = encodeIdentity(me);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(decodeIdentity(line.substr(0, line.size() - 1)), me);
  EXPECT_FALSE(decodeIdentity(""));
  EXPECT_FALSE(decodeIdentity("SSH-2.0"));
  EXPECT_FALSE(decodeIdentity(R"({"daemonset":1,"node":"n","version":"v","pid":1})"));
  EXPECT_FALSE(decodeIdentity(R"({"daemonset":"d","node":"n","version":"v"})"));
  EXPECT_FALSE(decodeIdentity(std::string(5000, ' ')));
  // The line of an nmi from before "instance" existed.
  EXPECT_EQ(decodeIdentity(R"({"daemonset":"d","node":"n","version":"v","pid":1})"),
            (InstanceIdentity{"d", "n", "v", 1, ""}));
}

// Returns once `io` (run by one other thread) has run everything queued on it before the call,
// and what that queued in turn, `rounds` deep (strand hops, spawned coroutines).
void settle(boost::asio::io_context& io, int rounds = 4) {
  for (int i = 0; i < rounds; ++i) {
    std::promise<void> ran;
    auto done = ran.get_future();
    boost::asio::post(io, [&ran] { ran.set_value(); });
    ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  }
}

// A future that becomes ready when `lock` (a hand-over successor) takes the lock.
std::future<void> taken(InstanceLock& lock) {
  auto promise = std::make_shared<std::promise<void>>();
  auto future = promise->get_future();
  lock.onTaken([promise] { promise->set_value(); });
  return future;
}

// A port of our own for each run: the lock lives in the network namespace.
std::uint16_t randomPort() {
  std::random_device rd;
  return static_cast<std::uint16_t>(40000 + rd() % 20000);
}

TEST(InstanceLock, ASecondNmiOfAnotherDaemonSetIsRefused) {
  boost::asio::io_context io;
  const std::uint16_t port = randomPort();
  InstanceLock first(io, port, id("kube-system/nmi", "node-1", 100), systemClock());
  ASSERT_TRUE(first.acquire());
  EXPECT_TRUE(first.held());
  std::thread runner([&io] { io.run_for(3s); });
  InstanceLock second(io, port, id("default/nmi", "node-1", 200), systemClock());
  auto refused = second.acquire();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::PermissionDenied);
  EXPECT_NE(refused.error().message.find("pid 100"), std::string::npos) << refused.error().message;
  EXPECT_FALSE(second.held());
  io.stop();
  runner.join();
}

TEST(InstanceLock, AHandOverTakesTheLockWhenTheHolderLeaves) {
  boost::asio::io_context io;
  const std::uint16_t port = randomPort() + 1;
  auto first =
      std::make_unique<InstanceLock>(io, port, id("kube-system/nmi", "node-1", 100), systemClock());
  ASSERT_TRUE(first->acquire());
  std::thread runner([&io] {
    auto guard = boost::asio::make_work_guard(io);
    io.run_for(5s);
  });
  InstanceLock second(io, port, id("kube-system/nmi", "node-1", 200), systemClock());
  auto second_taken = taken(second);
  ASSERT_TRUE(second.acquire(20ms));
  EXPECT_FALSE(second.held());
  boost::asio::post(io, [&first] { first.reset(); });
  ASSERT_EQ(second_taken.wait_for(4s), std::future_status::ready);
  EXPECT_TRUE(second.held());
  // A third, from elsewhere, now meets the second as the holder.
  InstanceLock third(io, port, id("other/nmi", "node-1", 300), systemClock());
  auto refused = third.acquire();
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("pid 200"), std::string::npos) << refused.error().message;
  io.stop();
  runner.join();
}

TEST(InstanceLockSuccessor, OnlyAnotherProcessOfTheSameDaemonSetOnTheSameNode) {
  const InstanceIdentity mine = id("kube-system/nmi", "node-1", 100);
  EXPECT_TRUE(isSuccessor(mine, id("kube-system/nmi", "node-1", 200)));
  EXPECT_FALSE(isSuccessor(mine, std::nullopt));
  EXPECT_FALSE(isSuccessor(mine, id("kube-system/nmi", "node-1", 100)));  // itself
  // Containers: both are pid 1, told apart by their random instance.
  InstanceIdentity one = id("kube-system/nmi", "node-1", 1);
  InstanceIdentity two = one;
  one.instance = "a1";
  two.instance = "b2";
  EXPECT_TRUE(isSuccessor(one, two));
  EXPECT_FALSE(isSuccessor(one, one));
  EXPECT_FALSE(isSuccessor(mine, id("kube-system/nmi", "node-2", 200)));
  EXPECT_FALSE(isSuccessor(mine, id("other/nmi", "node-1", 200)));
  EXPECT_FALSE(isSuccessor(id("", "node-1", 100), id("", "node-1", 200)));
}

TEST(InstanceLock, ASuccessorThatServesSaysSoUntilItHoldsTheLock) {
  boost::asio::io_context io;
  const std::uint16_t port = randomPort() + 2;
  auto first =
      std::make_unique<InstanceLock>(io, port, id("kube-system/nmi", "node-1", 100), systemClock());
  ASSERT_TRUE(first->acquire());
  std::thread runner([&io] {
    auto guard = boost::asio::make_work_guard(io);
    io.run_for(5s);
  });
  EXPECT_FALSE(first->successorServing());
  InstanceLock second(io, port, id("kube-system/nmi", "node-1", 200), systemClock());
  auto second_taken = taken(second);
  ASSERT_TRUE(second.acquire(20ms));
  EXPECT_FALSE(first->successorServing());  // started, not serving yet
  second.announceSuccessor();
  settle(io);
  EXPECT_TRUE(first->successorServing());
  boost::asio::post(io, [&first] { first.reset(); });
  ASSERT_EQ(second_taken.wait_for(4s), std::future_status::ready);
  ASSERT_TRUE(second.held());
  // Holding the lock, it frees "-next" for the hand-over after it.
  InstanceLock third(io, port, id("kube-system/nmi", "node-1", 300), systemClock());
  ASSERT_TRUE(third.acquire(20ms));
  settle(io);
  EXPECT_FALSE(second.successorServing());
  third.announceSuccessor();
  settle(io);
  EXPECT_TRUE(second.successorServing());
  io.stop();
  runner.join();
}

}  // namespace
}  // namespace nmi::app
