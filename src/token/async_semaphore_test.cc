#include "token/async_semaphore.h"

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi::token {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

class AsyncSemaphoreTest : public ::testing::Test {
 protected:
  void poll() {
    io_.restart();
    io_.poll();
  }

  // Acquires a permit and keeps it in `held_` (in order of grant) until released by the test.
  void spawnAcquirer(int id, std::chrono::milliseconds timeout, CancellationSignal* cancel,
                     std::optional<ErrorCode>* error = nullptr) {
    asio::co_spawn(
        asio::make_strand(io_),
        [this, id, timeout, cancel, error]() -> Task<void> {
          auto permit = co_await semaphore_.acquire(timeout, cancel);
          if (!permit) {
            if (error != nullptr) {
              *error = permit.error().code;
            }
            co_return;
          }
          order_.push_back(id);
          held_.push_back(std::make_unique<AsyncSemaphore::Permit>(std::move(permit).value()));
        },
        asio::detached);
  }

  asio::io_context io_;
  testing::FakeClock clock_;
  AsyncSemaphore semaphore_{2, clock_};
  std::vector<int> order_;
  std::vector<std::unique_ptr<AsyncSemaphore::Permit>> held_;
};

TEST_F(AsyncSemaphoreTest, GrantsFreePermitsAtOnce) {
  spawnAcquirer(1, 10s, nullptr);
  spawnAcquirer(2, 10s, nullptr);
  poll();
  EXPECT_EQ(order_, (std::vector<int>{1, 2}));
  EXPECT_EQ(semaphore_.available(), 0U);
  held_.clear();
  EXPECT_EQ(semaphore_.available(), 2U);
}

TEST_F(AsyncSemaphoreTest, ServesWaitersFirstComeFirstServed) {
  for (int id = 1; id <= 5; ++id) {
    spawnAcquirer(id, 10s, nullptr);
    poll();
  }
  EXPECT_EQ(order_, (std::vector<int>{1, 2}));
  EXPECT_EQ(semaphore_.waiting(), 3U);
  held_.erase(held_.begin());  // 1 releases
  poll();
  EXPECT_EQ(order_, (std::vector<int>{1, 2, 3}));
  held_.erase(held_.begin());  // 2 releases
  held_.erase(held_.begin());  // 3 releases
  poll();
  EXPECT_EQ(order_, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(semaphore_.waiting(), 0U);
  EXPECT_EQ(semaphore_.available(), 0U);
}

TEST_F(AsyncSemaphoreTest, CancelledWaiterLeavesTheQueue) {
  spawnAcquirer(1, 10s, nullptr);
  spawnAcquirer(2, 10s, nullptr);
  CancellationSignal cancel;
  std::optional<ErrorCode> error;
  spawnAcquirer(3, 10s, &cancel, &error);
  spawnAcquirer(4, 10s, nullptr);
  poll();
  EXPECT_EQ(semaphore_.waiting(), 2U);
  cancel.cancel();
  poll();
  EXPECT_EQ(error, ErrorCode::Cancelled);
  EXPECT_EQ(semaphore_.waiting(), 1U);
  held_.erase(held_.begin());
  poll();
  EXPECT_EQ(order_, (std::vector<int>{1, 2, 4}));
}

TEST_F(AsyncSemaphoreTest, WaiterTimesOut) {
  spawnAcquirer(1, 10s, nullptr);
  spawnAcquirer(2, 10s, nullptr);
  std::optional<ErrorCode> error;
  spawnAcquirer(3, 5ms, nullptr, &error);
  poll();
  clock_.advance(4ms);
  poll();
  EXPECT_FALSE(error.has_value());
  EXPECT_EQ(semaphore_.waiting(), 1U);
  clock_.advance(1ms);
  poll();
  EXPECT_EQ(error, ErrorCode::Timeout);
  EXPECT_EQ(semaphore_.waiting(), 0U);
  held_.clear();
  EXPECT_EQ(semaphore_.available(), 2U);
}

TEST_F(AsyncSemaphoreTest, AlreadyCancelledSignalFailsAtOnce) {
  CancellationSignal cancel;
  cancel.cancel();
  std::optional<ErrorCode> error;
  spawnAcquirer(1, 10s, &cancel, &error);
  poll();
  EXPECT_EQ(error, ErrorCode::Cancelled);
  EXPECT_EQ(semaphore_.available(), 2U);
}

TEST_F(AsyncSemaphoreTest, MovedPermitReleasesOnce) {
  auto result = testing::runSync(io_, semaphore_.acquire(1s, nullptr));
  ASSERT_TRUE(result.has_value());
  AsyncSemaphore::Permit a = std::move(result).value();
  AsyncSemaphore::Permit b = std::move(a);
  EXPECT_EQ(semaphore_.available(), 1U);
  b.reset();
  b.reset();
  EXPECT_EQ(semaphore_.available(), 2U);
}

}  // namespace
}  // namespace nmi::token
