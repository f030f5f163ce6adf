#include "http/server.h"

#include <future>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "common/change_notifier.h"
#include "tests/fakes/fake_clock.h"

namespace nmi::http {
namespace {

namespace asio = boost::asio;
using boost::asio::ip::tcp;

// Answers every request with its own name.
class NameHandler : public Handler {
 public:
  explicit NameHandler(std::string name) : name_(std::move(name)) {}
  Task<Response> handle(Request& request, const RequestContext& /*context*/) override {
    Response res{boost::beast::http::status::ok, request.version()};
    res.body() = name_;
    res.prepare_payload();
    co_return res;
  }

 private:
  std::string name_;
};

// Two servers on one port (SO_REUSEPORT), as during a hand-over: "old" bound first, "new" second.
class ReusePortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(old_.listen("127.0.0.1", 0));
    port_ = old_.localEndpoint().port();
    ASSERT_TRUE(new_.listen("127.0.0.1", port_));
    old_.start();
    new_.start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    work_.reset();
    io_.stop();
    thread_.join();
  }

  // `n` requests, each on a new connection: how many each server answered.
  std::map<std::string, int> answers(int n) const {
    std::map<std::string, int> seen;
    asio::io_context client_io;
    for (int i = 0; i < n; ++i) {
      tcp::socket socket(client_io);
      socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
      const std::string request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      asio::write(socket, asio::buffer(request));
      std::string reply;
      boost::system::error_code ec;
      asio::read(socket, asio::dynamic_buffer(reply), ec);
      ++seen[reply.substr(reply.rfind("\r\n\r\n") + 4)];
    }
    return seen;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  NameHandler old_handler_{"old"};
  NameHandler new_handler_{"new"};
  Server old_{io_, "old", old_handler_, ServerLimits{}, nullptr};
  Server new_{io_, "new", new_handler_, ServerLimits{}, nullptr};
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// Without a preference the kernel's hash spreads connections over both listeners; with it every
// new connection goes to the second (the successor), and none is left to be queued on the first
// when it closes; cleared, the hash is back. (64 connections all landing on one listener by
// chance: 2^-63.)
TEST_F(ReusePortTest, ThePreferredListenerTakesEveryNewConnectionUntilCleared) {
  auto spread = answers(64);
  EXPECT_GT(spread["old"], 0);
  EXPECT_GT(spread["new"], 0);

  ASSERT_TRUE(new_.preferThisListener());
  auto steered = answers(64);
  EXPECT_EQ(steered["new"], 64);
  EXPECT_EQ(steered.count("old"), 0U);

  // Cleared on the listener's strand, soon after the call: the hash is back within a few rounds.
  new_.clearListenerPreference();
  std::map<std::string, int> cleared;
  for (int round = 0; round < 20 && (cleared["old"] == 0 || cleared["new"] == 0); ++round) {
    cleared = answers(64);
  }
  EXPECT_GT(cleared["old"], 0);
  EXPECT_GT(cleared["new"], 0);
}

// Once the first listener is gone the successor is the group's only socket: the program's index
// names no socket and the kernel falls back to its hash, so the successor keeps every connection.
TEST_F(ReusePortTest, WithTheFirstListenerGoneTheSuccessorStillAnswersEverything) {
  ASSERT_TRUE(new_.preferThisListener());
  std::promise<void> drained;
  asio::co_spawn(
      io_, [&]() -> Task<void> { co_await old_.drain(std::chrono::milliseconds(0)); },
      [&](const std::exception_ptr&) { drained.set_value(); });
  drained.get_future().wait();
  auto after = answers(16);
  EXPECT_EQ(after["new"], 16);
}

// Holds every request until release(); says when one arrived.
class HoldingHandler : public Handler {
 public:
  Task<Response> handle(Request& request, const RequestContext& /*context*/) override {
    const auto seen = released_.generation();
    arrived_.set_value();
    co_await released_.waitForChange(seen, MonotonicTime::max(), nullptr);
    Response res{boost::beast::http::status::ok, request.version()};
    res.body() = "done";
    res.prepare_payload();
    co_return res;
  }
  std::future<void> arrived() { return arrived_.get_future(); }
  void release() { released_.notify(); }

 private:
  std::promise<void> arrived_;
  ChangeNotifier released_;
};

// The drain ends when the last request in flight ends, not at a poll: its clock never moves here,
// so only the connection's end can wake it.
TEST(ServerDrain, EndsWhenTheLastRequestInFlightEnds) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  testing::FakeClock clock;
  HoldingHandler handler;
  Server server(io, "held", handler, ServerLimits{}, nullptr, clock);
  ASSERT_TRUE(server.listen("127.0.0.1", 0));
  server.start();
  std::thread thread([&io] { io.run(); });

  asio::io_context client_io;
  tcp::socket socket(client_io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.localEndpoint().port()));
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(socket, asio::buffer(request));
  auto arrived = handler.arrived();
  ASSERT_EQ(arrived.wait_for(std::chrono::seconds(10)), std::future_status::ready);

  std::promise<void> drained;
  auto drained_future = drained.get_future();
  asio::co_spawn(
      asio::make_strand(io), [&]() -> Task<void> { co_await server.drain(std::chrono::hours(1)); },
      [&](const std::exception_ptr&) { drained.set_value(); });
  EXPECT_EQ(drained_future.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  EXPECT_EQ(server.connectionCount(), 1U);

  handler.release();
  std::string reply;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(reply), ec);  // until the server closes
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
  EXPECT_NE(reply.find("done"), std::string::npos) << reply;
  EXPECT_EQ(drained_future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(server.connectionCount(), 0U);

  work.reset();
  io.stop();
  thread.join();
}

}  // namespace
}  // namespace nmi::http
