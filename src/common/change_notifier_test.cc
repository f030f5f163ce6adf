#include "common/change_notifier.h"

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi {
namespace {

using namespace std::chrono_literals;
using WaitResult = ChangeNotifier::WaitResult;

class ChangeNotifierTest : public ::testing::Test {
 protected:
  MonotonicTime in(std::chrono::milliseconds d) const { return clock_.monotonicNow() + d; }

  // A future that becomes ready when the first wait on the clock begins (the waiter is then
  // registered with the notifier).
  std::future<void> firstWait() {
    auto waiting = std::make_shared<std::promise<void>>();
    auto future = waiting->get_future();
    clock_.onWait([waiting, once = std::make_shared<std::once_flag>()] {
      std::call_once(*once, [&] { waiting->set_value(); });
    });
    return future;
  }

  boost::asio::io_context io_;
  testing::FakeClock clock_;
  ChangeNotifier notifier_{clock_};
};

TEST_F(ChangeNotifierTest, ReturnsAtOnceWhenAlreadyChanged) {
  const auto seen = notifier_.generation();
  notifier_.notify();
  EXPECT_EQ(testing::runSync(io_, notifier_.waitForChange(seen, in(5s), nullptr)),
            WaitResult::Changed);
  EXPECT_TRUE(clock_.delays().empty());
}

TEST_F(ChangeNotifierTest, WakesWaiterWhenNotifiedFromAnotherThread) {
  const auto seen = notifier_.generation();
  auto waiting = firstWait();
  std::thread notifier_thread([&] {
    waiting.wait();
    notifier_.notify();
  });
  const auto result = testing::runSync(io_, notifier_.waitForChange(seen, in(10s), nullptr));
  notifier_thread.join();
  EXPECT_EQ(result, WaitResult::Changed);
  EXPECT_EQ(notifier_.waiters(), 0U);
  EXPECT_EQ(clock_.pendingTimers(), 0U);
}

TEST_F(ChangeNotifierTest, ReportsDeadlineWhenTheClockPassesIt) {
  auto waiting = firstWait();
  std::thread advancer([&] {
    waiting.wait();
    clock_.advance(20ms);
  });
  const auto result =
      testing::runSync(io_, notifier_.waitForChange(notifier_.generation(), in(20ms), nullptr));
  advancer.join();
  EXPECT_EQ(result, WaitResult::DeadlinePassed);
  EXPECT_EQ(notifier_.waiters(), 0U);
}

TEST_F(ChangeNotifierTest, ReportsDeadlineOnTheSystemClock) {
  ChangeNotifier notifier;
  const auto deadline = systemClock().monotonicNow() + 20ms;
  EXPECT_EQ(testing::runSync(io_, notifier.waitForChange(notifier.generation(), deadline, nullptr)),
            WaitResult::DeadlinePassed);
  EXPECT_GE(systemClock().monotonicNow(), deadline);
}

TEST_F(ChangeNotifierTest, ReportsCancellation) {
  CancellationSignal cancel;
  auto waiting = firstWait();
  std::thread canceller([&] {
    waiting.wait();
    cancel.cancel();
  });
  const auto result =
      testing::runSync(io_, notifier_.waitForChange(notifier_.generation(), in(10s), &cancel));
  canceller.join();
  EXPECT_EQ(result, WaitResult::Cancelled);
  EXPECT_EQ(cancel.pending(), 0U);
}

TEST_F(ChangeNotifierTest, AlreadyCancelledSignalEndsWaitAtOnce) {
  CancellationSignal cancel;
  cancel.cancel();
  EXPECT_EQ(
      testing::runSync(io_, notifier_.waitForChange(notifier_.generation(), in(10s), &cancel)),
      WaitResult::Cancelled);
}

}  // namespace
}  // namespace nmi
