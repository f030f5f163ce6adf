#include "http/server.h"

#include <future>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace nmi::http
