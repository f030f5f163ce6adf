#include "common/change_notifier.h"

#include <chrono>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "tests/fakes/run_sync.h"

namespace nmi {
namespace {

using namespace std::chrono_literals;
using WaitResult = ChangeNotifier::WaitResult;

MonotonicTime in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

TEST(ChangeNotifierTest, ReturnsAtOnceWhenAlreadyChanged) {
  boost::asio::io_context io;
  ChangeNotifier notifier;
  const auto seen = notifier.generation();
  notifier.notify();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(testing::runSync(io, notifier.waitForChange(seen, in(5s), nullptr)),
            WaitResult::Changed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(ChangeNotifierTest, WakesWaiterWhenNotifiedFromAnotherThread) {
  boost::asio::io_context io;
  ChangeNotifier notifier;
  const auto seen = notifier.generation();
  std::thread notifier_thread([&] {
    while (notifier.waiters() == 0) {
      std::this_thread::sleep_for(1ms);
    }
    notifier.notify();
  });
  const auto start = std::chrono::steady_clock::now();
  const auto result = testing::runSync(io, notifier.waitForChange(seen, in(10s), nullptr));
  notifier_thread.join();
  EXPECT_EQ(result, WaitResult::Changed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(notifier.waiters(), 0U);
}

TEST(ChangeNotifierTest, ReportsDeadline) {
  boost::asio::io_context io;
  ChangeNotifier notifier;
  EXPECT_EQ(testing::runSync(io, notifier.waitForChange(notifier.generation(), in(20ms), nullptr)),
            WaitResult::DeadlinePassed);
}

TEST(ChangeNotifierTest, ReportsCancellation) {
  boost::asio::io_context io;
  ChangeNotifier notifier;
  CancellationSignal cancel;
  std::thread canceller([&] {
    while (notifier.waiters() == 0) {
      std::this_thread::sleep_for(1ms);
    }
    cancel.cancel();
  });
  const auto result =
      testing::runSync(io, notifier.waitForChange(notifier.generation(), in(10s), &cancel));
  canceller.join();
  EXPECT_EQ(result, WaitResult::Cancelled);
}

TEST(ChangeNotifierTest, AlreadyCancelledSignalEndsWaitAtOnce) {
  boost::asio::io_context io;
  ChangeNotifier notifier;
  CancellationSignal cancel;
  cancel.cancel();
  EXPECT_EQ(testing::runSync(io, notifier.waitForChange(notifier.generation(), in(10s), &cancel)),
            WaitResult::Cancelled);
}

}  // namespace
}  // namespace nmi
