#include "common/cancellation.h"

#include <vector>

#include <gtest/gtest.h>

namespace nmi {
namespace {

TEST(CancellationSignal, RunsCallbacksInRegistrationOrderOnce) {
  CancellationSignal signal;
  std::vector<int> ran;
  signal.add([&] { ran.push_back(1); });
  signal.add([&] { ran.push_back(2); });
  signal.cancel();
  signal.cancel();
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
  EXPECT_TRUE(signal.cancelled());
  EXPECT_EQ(signal.pending(), 0U);
}

TEST(CancellationSignal, RemovedCallbackIsNotRun) {
  CancellationSignal signal;
  int ran = 0;
  const auto first = signal.add([&] { ran += 1; });
  signal.add([&] { ran += 10; });
  signal.remove(first);
  signal.cancel();
  EXPECT_EQ(ran, 10);
}

TEST(CancellationSignal, AddAfterCancelRunsAtOnce) {
  CancellationSignal signal;
  signal.cancel();
  int ran = 0;
  EXPECT_EQ(signal.add([&] { ++ran; }), 0U);
  EXPECT_EQ(ran, 1);
  signal.remove(0);  // harmless
}

// Seam 10 of issue 10: a process-long signal (a reflector's stop) sees one add/remove per list,
// watch and backoff. It must not grow with them.
TEST(CancellationSignal, AddRemoveCyclesLeaveNothingBehind) {
  CancellationSignal signal;
  for (int i = 0; i < 100'000; ++i) {
    const auto id = signal.add([] {});
    ASSERT_NE(id, 0U);
    signal.remove(id);
  }
  EXPECT_EQ(signal.pending(), 0U);
  const auto kept = signal.add([] {});
  const auto other = signal.add([] {});
  EXPECT_NE(kept, other);
  signal.remove(kept);
  signal.remove(kept);  // twice: ignored
  EXPECT_EQ(signal.pending(), 1U);
}

TEST(CancellationSignal, IdsAreNeverReused) {
  CancellationSignal signal;
  const auto a = signal.add([] {});
  signal.remove(a);
  const auto b = signal.add([] {});
  EXPECT_NE(a, b);
  int ran = 0;
  signal.remove(b);
  signal.add([&] { ++ran; });
  signal.remove(a);  // a stale id must not drop the new callback
  signal.cancel();
  EXPECT_EQ(ran, 1);
}

TEST(CancelRegistration, RegisteredForItsLifetimeOnly) {
  CancellationSignal signal;
  int ran = 0;
  {
    const CancelRegistration registration(&signal, [&ran] { ++ran; });
    EXPECT_EQ(signal.pending(), 1U);
  }
  EXPECT_EQ(signal.pending(), 0U);  // a long-lived signal keeps nothing of finished operations
  signal.cancel();
  EXPECT_EQ(ran, 0);
}

TEST(CancelRegistration, RunsOnCancelAndAtOnceWhenAlreadyCancelled) {
  CancellationSignal signal;
  int ran = 0;
  CancelRegistration registration(&signal, [&ran] { ++ran; });
  signal.cancel();
  EXPECT_EQ(ran, 1);
  registration.reset();  // after the fact: harmless
  const CancelRegistration late(&signal, [&ran] { ++ran; });
  EXPECT_EQ(ran, 2);
}

TEST(CancelRegistration, ResetUnregistersAndANullSignalRegistersNothing) {
  CancellationSignal signal;
  int ran = 0;
  CancelRegistration registration(&signal, [&ran] { ++ran; });
  registration.reset();
  signal.cancel();
  EXPECT_EQ(ran, 0);
  CancelRegistration none(nullptr, [&ran] { ++ran; });
  none.reset();
  EXPECT_EQ(ran, 0);
}

}  // namespace
}  // namespace nmi

namespace nmi {
namespace {

TEST(CancellationSignalHookTest, TheFirstListenerRunsTheHookOnceAndACancelledSignalNever) {
  CancellationSignal signal;
  int runs = 0;
  signal.onFirstListener([&runs] { ++runs; });
  EXPECT_FALSE(signal.cancelled());
  EXPECT_EQ(runs, 0);  // nobody listens yet: nothing is watched
  const std::size_t first = signal.add([] {});
  EXPECT_EQ(runs, 1);
  signal.add([] {});
  EXPECT_EQ(runs, 1);
  signal.remove(first);

  CancellationSignal gone;
  gone.onFirstListener([&runs] { ++runs; });
  gone.cancel();
  int called = 0;
  EXPECT_EQ(gone.add([&called] { ++called; }), 0U);
  EXPECT_EQ(called, 1);
  EXPECT_EQ(runs, 1);

  CancellationSignal cleared;
  cleared.onFirstListener([&runs] { ++runs; });
  cleared.onFirstListener(nullptr);
  cleared.add([] {});
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace nmi
