#include "common/clock.h"

#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

// Waits on a new timer of `clock` until `deadline` (or `delay`) and returns whether it was woken.
Task<bool> waitOnce(const Clock& clock, std::chrono::milliseconds delay) {
  auto executor = co_await asio::this_coro::executor;
  const TimerPtr timer = clock.makeTimer(executor);
  co_return co_await timer->waitFor(delay);
}

// --- SystemClock: the real steady_timer ---

TEST(SystemClockTimer, ReturnsFalseOnceTheDeadlinePassed) {
  asio::io_context io;
  const auto start = systemClock().monotonicNow();
  EXPECT_FALSE(testing::runSync(io, waitOnce(systemClock(), 20ms)));
  EXPECT_GE(systemClock().monotonicNow() - start, 20ms);
}

TEST(SystemClockTimer, WakeFromAnotherThreadEndsTheWait) {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  const TimerPtr timer = systemClock().makeTimer(strand);
  std::optional<bool> woken;
  asio::co_spawn(
      strand, [&]() -> Task<void> { woken = co_await timer->waitFor(10s); }, asio::detached);
  // wake() may come before or during the wait: either way the wait ends at once, not in 10 s.
  std::thread waker([&] { timer->wake(); });
  const auto start = systemClock().monotonicNow();
  io.run();
  waker.join();
  ASSERT_TRUE(woken.has_value());
  EXPECT_TRUE(*woken);
  EXPECT_LT(systemClock().monotonicNow() - start, 5s);
}

TEST(SystemClockTimer, AWakeWithoutAWaitEndsTheNextWaitOnly) {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  const TimerPtr timer = systemClock().makeTimer(strand);
  timer->wake();
  std::vector<bool> results;
  asio::co_spawn(
      strand,
      [&]() -> Task<void> {
        results.push_back(co_await timer->waitFor(10s));
        results.push_back(co_await timer->waitFor(10ms));
      },
      asio::detached);
  io.run();
  EXPECT_EQ(results, (std::vector<bool>{true, false}));
}

TEST(SystemClockTimer, CancellationWakesTheWait) {
  asio::io_context io;
  CancellationSignal cancel;
  std::thread canceller([&] { cancel.cancel(); });
  const auto start = systemClock().monotonicNow();
  EXPECT_FALSE(testing::runSync(io, sleepFor(systemClock(), 10'000ms, &cancel)));
  canceller.join();
  EXPECT_LT(systemClock().monotonicNow() - start, 5s);
  EXPECT_EQ(cancel.pending(), 0U);
}

TEST(SystemClockTimer, SleepWithoutCancellationReturnsTrue) {
  asio::io_context io;
  CancellationSignal cancel;
  EXPECT_TRUE(testing::runSync(io, sleepFor(systemClock(), 5ms, &cancel)));
  EXPECT_TRUE(testing::runSync(io, sleepFor(systemClock(), 0ms, nullptr)));
  EXPECT_EQ(cancel.pending(), 0U);
}

TEST(SaturatingAdd, ClampsInsteadOfOverflowing) {
  const MonotonicTime now = systemClock().monotonicNow();
  EXPECT_EQ(saturatingAdd(now, std::chrono::nanoseconds::max()), MonotonicTime::max());
  EXPECT_EQ(saturatingAdd(now, 1s), now + 1s);
}

// --- FakeClock: timers fire on advance() ---

class FakeClockTimerTest : public ::testing::Test {
 protected:
  // Starts a wait of `delay` on its own strand; its result lands in results_ tagged `tag`.
  void spawnWait(int tag, std::chrono::milliseconds delay) {
    auto strand = asio::make_strand(io_);
    TimerPtr timer = clock_.makeTimer(strand);
    timers_.push_back(timer);
    asio::co_spawn(
        strand,
        [this, tag, delay, timer]() -> Task<void> {
          const bool woken = co_await timer->waitFor(delay);
          results_.emplace_back(tag, woken);
        },
        asio::detached);
  }

  void runReady() {
    io_.restart();
    io_.poll();
  }

  asio::io_context io_;
  testing::FakeClock clock_;
  std::vector<TimerPtr> timers_;
  std::vector<std::pair<int, bool>> results_;
};

TEST_F(FakeClockTimerTest, AdvanceFiresDueTimersInDeadlineOrder) {
  spawnWait(30, 30ms);
  spawnWait(10, 10ms);
  spawnWait(20, 20ms);
  spawnWait(21, 20ms);
  runReady();
  EXPECT_EQ(clock_.pendingTimers(), 4U);
  EXPECT_TRUE(results_.empty());

  clock_.advance(9ms);
  runReady();
  EXPECT_TRUE(results_.empty());

  clock_.advance(1ms);
  runReady();
  EXPECT_EQ(results_, (std::vector<std::pair<int, bool>>{{10, false}}));

  clock_.advance(1h);
  runReady();
  EXPECT_EQ(results_, (std::vector<std::pair<int, bool>>{
                          {10, false}, {20, false}, {21, false}, {30, false}}));
  EXPECT_EQ(clock_.pendingTimers(), 0U);
  EXPECT_EQ(clock_.delays(), (std::vector<std::chrono::milliseconds>{30ms, 10ms, 20ms, 20ms}));
}

TEST_F(FakeClockTimerTest, WakeFromAnotherThreadEndsTheWaitWithoutMovingTime) {
  spawnWait(1, 1h);
  runReady();
  const auto before = clock_.monotonicNow();
  std::thread waker([&] { timers_.front()->wake(); });
  waker.join();
  runReady();
  EXPECT_EQ(results_, (std::vector<std::pair<int, bool>>{{1, true}}));
  EXPECT_EQ(clock_.monotonicNow(), before);
  EXPECT_EQ(clock_.pendingTimers(), 0U);
}

TEST_F(FakeClockTimerTest, AStaleWakeDoesNotEndTheNextWait) {
  auto strand = asio::make_strand(io_);
  const TimerPtr timer = clock_.makeTimer(strand);
  std::vector<bool> results;
  asio::co_spawn(
      strand,
      [&]() -> Task<void> {
        results.push_back(co_await timer->waitFor(10ms));  // fired, then woken: woken wins
        results.push_back(co_await timer->waitFor(10ms));  // the late unpark must not end this
      },
      asio::detached);
  runReady();
  clock_.advance(10ms);
  timer->wake();
  runReady();
  EXPECT_EQ(results, (std::vector<bool>{true}));
  clock_.advance(10ms);
  runReady();
  EXPECT_EQ(results, (std::vector<bool>{true, false}));
}

TEST_F(FakeClockTimerTest, APassedDeadlineReturnsAtOnce) {
  EXPECT_FALSE(testing::runSync(io_, waitOnce(clock_, 0ms)));
  EXPECT_EQ(clock_.pendingTimers(), 0U);
}

TEST_F(FakeClockTimerTest, AutoAdvanceJumpsToEachDeadlineAndRecordsIt) {
  clock_.setAutoAdvance(true);
  const auto start = clock_.monotonicNow();
  const auto wall = clock_.systemNow();
  EXPECT_TRUE(testing::runSync(io_, sleepFor(clock_, 3s, nullptr)));
  EXPECT_TRUE(testing::runSync(io_, sleepFor(clock_, 250ms, nullptr)));
  EXPECT_EQ(clock_.monotonicNow() - start, 3250ms);
  EXPECT_EQ(clock_.systemNow() - wall, 3250ms);
  EXPECT_EQ(clock_.delays(), (std::vector<std::chrono::milliseconds>{3s, 250ms}));
}

TEST_F(FakeClockTimerTest, AutoAdvanceFiresEarlierTimersOnTheWay) {
  spawnWait(5, 5ms);
  runReady();
  clock_.setAutoAdvance(true);
  EXPECT_TRUE(testing::runSync(io_, sleepFor(clock_, 1s, nullptr)));
  EXPECT_EQ(results_, (std::vector<std::pair<int, bool>>{{5, false}}));
}

TEST_F(FakeClockTimerTest, CancellationDuringTheWaitWinsOverAutoAdvance) {
  clock_.setAutoAdvance(true);
  CancellationSignal cancel;
  clock_.onWait([&cancel] { cancel.cancel(); });
  const auto start = clock_.monotonicNow();
  EXPECT_FALSE(testing::runSync(io_, sleepFor(clock_, 1s, &cancel)));
  EXPECT_EQ(clock_.monotonicNow(), start);
  EXPECT_EQ(clock_.pendingTimers(), 0U);
}

TEST_F(FakeClockTimerTest, CancellationFromAnotherThreadEndsAFakeWait) {
  CancellationSignal cancel;
  std::optional<bool> slept;
  asio::co_spawn(
      asio::make_strand(io_),
      [&]() -> Task<void> { slept = co_await sleepFor(clock_, 1s, &cancel); }, asio::detached);
  runReady();
  ASSERT_EQ(clock_.pendingTimers(), 1U);
  std::thread canceller([&] { cancel.cancel(); });
  canceller.join();
  runReady();
  ASSERT_TRUE(slept.has_value());
  EXPECT_FALSE(*slept);
  EXPECT_EQ(clock_.pendingTimers(), 0U);
}

TEST_F(FakeClockTimerTest, ADeadlineWatchFiresOnceItsDeadlinePasses) {
  auto strand = asio::make_strand(io_);
  int expired = 0;
  DeadlineWatch watch(clock_, strand, clock_.monotonicNow() + 2s, [&expired] { ++expired; });
  runReady();
  clock_.advance(1999ms);
  runReady();
  EXPECT_EQ(expired, 0);
  clock_.advance(1ms);
  runReady();
  EXPECT_EQ(expired, 1);
}

TEST_F(FakeClockTimerTest, ADisarmedDeadlineWatchNeverFires) {
  auto strand = asio::make_strand(io_);
  int expired = 0;
  {
    DeadlineWatch watch(clock_, strand, clock_.monotonicNow() + 2s, [&expired] { ++expired; });
    runReady();
    watch.disarm();
  }
  clock_.advance(1h);
  runReady();
  EXPECT_EQ(expired, 0);
  EXPECT_EQ(clock_.pendingTimers(), 0U);
}

// On its strand, disarm() wins even over a deadline that already fired but whose wait has not
// resumed yet (the resolver it would cancel may be gone by then).
TEST_F(FakeClockTimerTest, DisarmWinsOverADeadlineFiredButNotYetRun) {
  auto strand = asio::make_strand(io_);
  int expired = 0;
  auto watch = std::make_unique<DeadlineWatch>(clock_, strand, clock_.monotonicNow() + 2s,
                                               [&expired] { ++expired; });
  runReady();
  clock_.advance(2s);  // fired: the wait's resumption is queued on the strand, not run
  watch.reset();       // disarm, as the operation's end on the strand would
  runReady();
  EXPECT_EQ(expired, 0);
}

}  // namespace
}  // namespace nmi
