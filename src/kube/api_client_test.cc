#include "kube/api_client.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/clock.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi::kube {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace): literals only
using boost::asio::ip::tcp;

// Test-only PKI (openssl, EC P-256, valid until 2126): a CA, a server certificate for
// 127.0.0.1 and localhost signed by it, and an unrelated CA.
constexpr std::string_view kCaPem = R"(-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUWd4ES9MrOgdWjKQg0d7zkgjdqcAwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQbm1pLWt1YmUtdGVzdC1jYTAgFw0yNjExMjkxOTIxMzNaGA8y
MTI2MTEwNTE5MjEzM1owGzEZMBcGA1UEAwwQbm1pLWt1YmUtdGVzdC1jYTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABKlmeNnjsAZhr6eEUsEhtpxEvKzcfGJ5Ss/K
i6eSxKOLZSv7C0lyumnuYht1/Oa8/kd4umUEyAmGBh3NBzO1+sKjUzBRMB0GA1Ud
DgQWBBT0o4L56Xn6I7Mf9aQd/9taxapHXDAfBgNVHSMEGDAWgBT0o4L56Xn6I7Mf
9aQd/9taxapHXDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFdI
DIUlXIUh2Hj8EqOqS5S+BRstorSISaGc8SklwRnGAiEAhulAiYaggAiP+ZR0BB3O
40jKEFJ/enE32xvDYvtUB10=
-----END CERTIFICATE-----
)";
constexpr std::string_view kServerCertPem = R"(-----BEGIN CERTIFICATE-----
MIIByTCCAW6gAwIBAgIUfDBC/4hPRHSuTL2hXLRBPLhlNeYwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQbm1pLWt1YmUtdGVzdC1jYTAgFw0yNjExMjkxOTIxMzNaGA8y
MTI2MTEwNTE5MjEzM1owGTEXMBUGA1UEAwwOa3ViZS1hcGlzZXJ2ZXIwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAATItWSI8hylRNiZAiL6t9obTfD78UWjTPl7O7JS
sZCM4z9+jDDupBdCK/Qw46p74PnUd8k7h8LvBRz5k95uRBjWo4GPMIGMMAkGA1Ud
EwQCMAAwDgYDVR0PAQH/BAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMBMBoGA1Ud
EQQTMBGHBH8AAAGCCWxvY2FsaG9zdDAdBgNVHQ4EFgQUPspu/zNhF/HRzFPBDY+d
v1koOAkwHwYDVR0jBBgwFoAU9KOC+el5+iOzH/WkHf/bWsWqR1wwCgYIKoZIzj0E
AwIDSQAwRgIhAJXxsUdcBgKfckPGGywB9lOKH+klBFv++YaLCxtdVJqfAiEAzFVx
Iha//gWKT7+mBGn+lUMZCoRv1qHmBlPhOwKClQs=
-----END CERTIFICATE-----
)";
constexpr std::string_view kServerKeyPem = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgiQoSfLXFUFuNKesn
XLtJ6cs+f9eOHILQK6yHcAidc3qhRANCAATItWSI8hylRNiZAiL6t9obTfD78UWj
TPl7O7JSsZCM4z9+jDDupBdCK/Qw46p74PnUd8k7h8LvBRz5k95uRBjW
-----END PRIVATE KEY-----
)";
constexpr std::string_view kOtherCaPem = R"(-----BEGIN CERTIFICATE-----
MIIBfjCCASOgAwIBAgIUdcNNnp8KGUhSVxLIdYqb0vbipGQwCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIb3RoZXItY2EwIBcNMjYxMTI5MTkyMTMzWhgPMjEyNjExMDUx
OTIxMzNaMBMxETAPBgNVBAMMCG90aGVyLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAE1FjjjVL9+ZqfB6zuTWq4RrKmz5nVtIHYtw1Er2JDt19gfTQF/HEapVVo
vNxsa57uXiSOApScWQw6GkT6HQiIc6NTMFEwHQYDVR0OBBYEFGYsPN/oqg/T+wF+
O2AjGGovwE5qMB8GA1UdIwQYMBaAFGYsPN/oqg/T+wF+O2AjGGovwE5qMA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhANZ1zW7OoBxY534skgH1dFUJ
h46QULqEprQiheV3KoXSAiEAwPR5qlCCv4wxfok1/8HShz5a32LcVVfUz6K0fifW
so0=
-----END CERTIFICATE-----
)";

// What the loopback API server saw of one request.
struct Seen {
  std::string target;
  std::string authorization;
  std::string accept;
  std::string user_agent;
};

// One piece of an answer: bytes written after a delay; kClose closes the connection instead.
struct Piece {
  std::chrono::milliseconds delay{0};
  std::string bytes;
};
constexpr std::string_view kClose = "\x01close";

std::string plain(unsigned status, const std::string& reason, const std::string& body,
                  const std::string& extra_headers = "") {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string chunkedHead() {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
}

std::string chunk(const std::string& data) {
  return fmt::format("{:x}\r\n{}\r\n", data.size(), data);
}

std::string lastChunk() {
  return "0\r\n\r\n";
}

// A TLS HTTP/1.1 server on 127.0.0.1 (its own thread) answering each request with the pieces
// the responder returns.
class LoopbackApiServer {
 public:
  using Responder = std::function<std::vector<Piece>(const Seen&)>;

  explicit LoopbackApiServer(Responder responder) : responder_(std::move(responder)) {
    tls_.use_certificate_chain(asio::buffer(kServerCertPem));
    tls_.use_private_key(asio::buffer(kServerKeyPem), asio::ssl::context::pem);
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    asio::co_spawn(io_, accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~LoopbackApiServer() {
    io_.stop();
    thread_.join();
  }
  LoopbackApiServer(const LoopbackApiServer&) = delete;
  LoopbackApiServer& operator=(const LoopbackApiServer&) = delete;
  LoopbackApiServer(LoopbackApiServer&&) = delete;
  LoopbackApiServer& operator=(LoopbackApiServer&&) = delete;

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<Seen> seen() const {
    const std::lock_guard lock(mu_);
    return seen_;
  }
  int connections() const { return connections_.load(); }

 private:
  Task<void> accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      ++connections_;
      asio::co_spawn(io_, session(std::move(socket)), asio::detached);
    }
  }

  Task<void> session(tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), tls_);
    boost::system::error_code ec;
    co_await stream.async_handshake(asio::ssl::stream_base::server,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return;
    }
    beast::flat_buffer buffer;
    for (;;) {
      bhttp::request<bhttp::empty_body> request;
      co_await bhttp::async_read(stream, buffer, request,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      Seen seen{std::string(request.target()), std::string(request[bhttp::field::authorization]),
                std::string(request[bhttp::field::accept]),
                std::string(request[bhttp::field::user_agent])};
      {
        const std::lock_guard lock(mu_);
        seen_.push_back(seen);
      }
      for (const auto& piece : responder_(seen)) {
        if (piece.delay.count() > 0) {
          asio::steady_timer timer(io_, piece.delay);
          co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
        if (piece.bytes == kClose) {
          co_return;
        }
        co_await asio::async_write(stream, asio::buffer(piece.bytes),
                                   asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          co_return;
        }
      }
    }
  }

  Responder responder_;
  asio::io_context io_;
  asio::ssl::context tls_{asio::ssl::context::tls_server};
  tcp::acceptor acceptor_{io_};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
  std::atomic<int> connections_{0};
};

class RecordingHandler final : public WatchHandler {
 public:
  void opened() override {
    ++opens;
    if (on_open) {
      on_open();
    }
  }
  bool line(std::string_view text) override {
    lines.emplace_back(text);
    return stop_after == 0 || lines.size() < stop_after;
  }
  int opens = 0;
  std::vector<std::string> lines;
  std::size_t stop_after = 0;
  std::function<void()> on_open;
};

class ApiClientTest : public ::testing::Test {
 protected:
  std::shared_ptr<BeastApiTransport> transport(const LoopbackApiServer& server,
                                               const std::function<void(RestConfig&)>& edit = {}) {
    RestConfig config;
    config.server = http::parseUrl("https://127.0.0.1:" + std::to_string(server.port())).value();
    config.ca_pem = std::string(kCaPem);
    config.token = "fixed-token";
    if (edit) {
      edit(config);
    }
    TransportOptions options;
    options.user_agent = "nmi/test";
    auto created = BeastApiTransport::create(io_.get_executor(), config, options, clock_);
    EXPECT_TRUE(created.has_value()) << created.error().message;
    return created ? *created : nullptr;
  }

  Result<ApiResponse> get(BeastApiTransport& t, const std::string& target,
                          std::size_t max_body = 1 << 20) {
    return nmi::testing::runSync(io_, t.get(target, max_body, std::chrono::seconds(5), nullptr));
  }

  Result<ApiResponse> watch(BeastApiTransport& t, RecordingHandler& handler,
                            std::chrono::milliseconds silence = std::chrono::seconds(5),
                            std::size_t max_line = 1 << 20, CancellationSignal* cancel = nullptr) {
    WatchTimeouts timeouts;
    timeouts.head = std::chrono::seconds(5);
    timeouts.silence = silence;
    return nmi::testing::runSync(
        io_, t.watch("/api/v1/pods?watch=1", max_line, timeouts, handler, cancel));
  }

  asio::io_context io_;
  nmi::testing::FakeClock clock_;
};

TEST_F(ApiClientTest, GetSendsTheHeadersAndReusesTheConnection) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, plain(200, "OK", R"({"kind":"PodList"})")}};
  });
  auto t = transport(server, [](RestConfig& c) { c.server.target = "/prefix"; });
  auto first = get(*t, "/api/v1/pods?limit=500");
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_EQ(first->status, 200U);
  EXPECT_EQ(first->body, R"({"kind":"PodList"})");
  ASSERT_TRUE(get(*t, "/api/v1/pods").has_value());
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[0].target, "/prefix/api/v1/pods?limit=500");
  EXPECT_EQ(seen[0].authorization, "Bearer fixed-token");
  EXPECT_EQ(seen[0].accept, "application/json");
  EXPECT_EQ(seen[0].user_agent, "nmi/test");
  EXPECT_EQ(server.connections(), 1);
}

Task<void> getCounting(std::shared_ptr<BeastApiTransport> t, int* ok) {
  auto result = co_await t->get("/api/v1/pods", std::size_t{1} << 20U, 5s, nullptr);
  if (result && result->status == 200) {
    ++*ok;
  }
}

TEST_F(ApiClientTest, AfterTheServerClosedPooledConnectionsAGetRetriesOnANewOne) {
  // Each answer keeps the connection alive, then the server closes it (as one that restarts or
  // whose connections are cut does): every pooled connection is dead.
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, plain(200, "OK", "{}")}, {0ms, std::string(kClose)}};
  });
  auto t = transport(server);
  int ok = 0;
  asio::co_spawn(io_, getCounting(t, &ok), asio::detached);  // two at once: two connections
  asio::co_spawn(io_, getCounting(t, &ok), asio::detached);
  io_.run();
  io_.restart();
  ASSERT_EQ(ok, 2);
  ASSERT_EQ(server.connections(), 2);
  auto third = get(*t, "/api/v1/namespaces/ns/secrets/s");
  ASSERT_TRUE(third.has_value()) << third.error().message;
  EXPECT_EQ(third->status, 200U);
  EXPECT_EQ(server.connections(), 3);  // one pooled connection tried, then a new one
}

TEST_F(ApiClientTest, ErrorAnswersAreResponsesWithRetryAfter) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{
        {0ms,
         plain(429, "Too Many Requests", R"({"kind":"Status","code":429})", "Retry-After: 4\r\n")}};
  });
  auto t = transport(server);
  auto answer = get(*t, "/api/v1/pods");
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->status, 429U);
  EXPECT_EQ(answer->retry_after, std::chrono::seconds(4));
}

TEST_F(ApiClientTest, ABodyOverTheCapIsRefused) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, plain(200, "OK", std::string(2000, 'x'))}};
  });
  auto t = transport(server);
  auto answer = get(*t, "/api/v1/namespaces/a/secrets/b", 1000);
  ASSERT_FALSE(answer.has_value());
  EXPECT_EQ(answer.error().code, ErrorCode::ResourceExhausted);
}

// A Content-Length far over the cap, with the first body bytes in the same packet: refused,
// never allocated (Beast 1.74 would reserve the announced length).
TEST_F(ApiClientTest, AHugeAnnouncedLengthIsRefusedWithoutAllocatingIt) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{
        {0ms, "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\n{\"kind\":"}};
  });
  auto t = transport(server);
  auto answer = get(*t, "/api/v1/namespaces/a/secrets/b", 1000);
  ASSERT_FALSE(answer.has_value());
  EXPECT_EQ(answer.error().code, ErrorCode::ResourceExhausted);
}

// Seam 10 of issue 10: the reflectors pass their process-long stop signal to every request,
// watch and backoff; each must take its callback back off the signal when it ends, or the signal
// grows for as long as nmi runs.
TEST_F(ApiClientTest, RequestsAndSleepsLeaveNothingOnALongLivedSignal) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, plain(200, "OK", R"({"kind":"Status"})")}};
  });
  auto t = transport(server);
  CancellationSignal stop;
  for (int i = 0; i < 50; ++i) {
    auto answer = nmi::testing::runSync(
        io_, t->get("/api/v1/namespaces/a/secrets/b", 1 << 20, std::chrono::seconds(5), &stop));
    ASSERT_TRUE(answer.has_value()) << answer.error().message;
    EXPECT_TRUE(nmi::testing::runSync(io_, sleepFor(systemClock(), 0ms, &stop)));
  }
  EXPECT_EQ(stop.pending(), 0U);
}

TEST_F(ApiClientTest, TheServerCertificateIsVerified) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, plain(200, "OK", "{}")}};
  });
  auto wrong_ca = transport(server, [](RestConfig& c) { c.ca_pem = std::string(kOtherCaPem); });
  auto refused = get(*wrong_ca, "/api");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::Unavailable);
  EXPECT_THAT(refused.error().message, HasSubstr("TLS handshake"));

  auto wrong_name =
      transport(server, [](RestConfig& c) { c.tls_server_name = "kubernetes.example"; });
  EXPECT_FALSE(get(*wrong_name, "/api").has_value());

  auto by_name = transport(server, [&](RestConfig& c) {
    c.server = http::parseUrl("https://localhost:" + std::to_string(server.port())).value();
  });
  auto named = get(*by_name, "/api");
  EXPECT_TRUE(named.has_value()) << named.error().message;
  EXPECT_TRUE(server.seen().size() == 1U);
}

TEST_F(ApiClientTest, BadPemIsRefusedAtCreation) {
  RestConfig config;
  config.server = http::parseUrl("https://127.0.0.1:1").value();
  config.ca_pem = "not a certificate";
  auto created = BeastApiTransport::create(io_.get_executor(), config, {}, clock_);
  ASSERT_FALSE(created.has_value());
  EXPECT_THAT(created.error().message, HasSubstr("certificate authority"));
  config.ca_pem = std::string(kCaPem);
  config.client_cert_pem = std::string(kServerCertPem);
  config.client_key_pem = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n";
  created = BeastApiTransport::create(io_.get_executor(), config, {}, clock_);
  ASSERT_FALSE(created.has_value());
  EXPECT_THAT(created.error().message, HasSubstr("client key"));
  EXPECT_THAT(created.error().message, ::testing::Not(HasSubstr("nope")));
}

TEST_F(ApiClientTest, WatchStreamsLinesAcrossChunks) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, chunkedHead()},
                              {0ms, chunk("{\"type\":\"ADDED\"}\n{\"type\"")},
                              {20ms, chunk(":\"MODIFIED\"}\n")},
                              {20ms, chunk("{\"type\":\"DELETED\"}\n")},
                              {0ms, lastChunk()}};
  });
  auto t = transport(server);
  RecordingHandler handler;
  auto end = watch(*t, handler);
  ASSERT_TRUE(end.has_value()) << end.error().message;
  EXPECT_EQ(end->status, 200U);
  EXPECT_EQ(handler.opens, 1);
  EXPECT_THAT(handler.lines, ElementsAre(R"({"type":"ADDED"})", R"({"type":"MODIFIED"})",
                                         R"({"type":"DELETED"})"));
}

TEST_F(ApiClientTest, ASilentWatchTimesOut) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, chunkedHead()},
                              {0ms, chunk("{\"type\":\"BOOKMARK\"}\n")},
                              {std::chrono::seconds(30), lastChunk()}};
  });
  auto t = transport(server);
  RecordingHandler handler;
  const auto started = std::chrono::steady_clock::now();
  auto end = watch(*t, handler, 300ms);
  ASSERT_FALSE(end.has_value());
  EXPECT_EQ(end.error().code, ErrorCode::Timeout);
  EXPECT_THAT(end.error().message, HasSubstr("silent"));
  EXPECT_EQ(handler.lines.size(), 1U);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST_F(ApiClientTest, AWatchRefusedWithABodyReturnsItsStatus) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{
        {0ms, plain(410, "Gone", R"({"kind":"Status","code":410,"reason":"Expired"})")}};
  });
  auto t = transport(server);
  RecordingHandler handler;
  auto end = watch(*t, handler);
  ASSERT_TRUE(end.has_value()) << end.error().message;
  EXPECT_EQ(end->status, 410U);
  EXPECT_THAT(end->body, HasSubstr("Expired"));
  EXPECT_EQ(handler.opens, 0);
}

TEST_F(ApiClientTest, AnOversizedEventEndsTheWatch) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{
        {0ms, chunkedHead()}, {0ms, chunk(std::string(5000, 'x'))}, {0ms, lastChunk()}};
  });
  auto t = transport(server);
  RecordingHandler handler;
  auto end = watch(*t, handler, std::chrono::seconds(5), 1000);
  ASSERT_FALSE(end.has_value());
  EXPECT_EQ(end.error().code, ErrorCode::ResourceExhausted);
}

TEST_F(ApiClientTest, TheHandlerCanStopAWatch) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{
        {0ms, chunkedHead()}, {0ms, chunk("a\nb\nc\n")}, {std::chrono::seconds(30), lastChunk()}};
  });
  auto t = transport(server);
  RecordingHandler handler;
  handler.stop_after = 2;
  auto end = watch(*t, handler);
  ASSERT_TRUE(end.has_value());
  EXPECT_THAT(handler.lines, ElementsAre("a", "b"));
}

TEST_F(ApiClientTest, CancellingEndsAnOpenWatchAtOnce) {
  LoopbackApiServer server([](const Seen&) {
    return std::vector<Piece>{{0ms, chunkedHead()}, {std::chrono::seconds(30), lastChunk()}};
  });
  auto t = transport(server);
  RecordingHandler handler;
  CancellationSignal cancel;
  handler.on_open = [&] { cancel.cancel(); };
  const auto started = std::chrono::steady_clock::now();
  auto end = watch(*t, handler, std::chrono::seconds(20), 1 << 20, &cancel);
  ASSERT_FALSE(end.has_value());
  EXPECT_EQ(end.error().code, ErrorCode::Cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST_F(ApiClientTest, A401RereadsTheTokenFileAndRetriesOnce) {
  const auto dir = std::filesystem::temp_directory_path() / "nmi-kube-api-client-401";
  std::filesystem::create_directories(dir);
  const std::string token_file = (dir / "token").string();
  std::ofstream(token_file) << "old-token\n";
  LoopbackApiServer server([](const Seen& seen) {
    const bool is_watch = seen.target.find("watch") != std::string::npos;
    if (seen.authorization != (is_watch ? "Bearer newer-token" : "Bearer new-token")) {
      return std::vector<Piece>{
          {0ms, plain(401, "Unauthorized", R"({"kind":"Status","code":401})")}};
    }
    if (is_watch) {
      return std::vector<Piece>{{0ms, chunkedHead()}, {0ms, chunk("x\n")}, {0ms, lastChunk()}};
    }
    return std::vector<Piece>{{0ms, plain(200, "OK", "{}")}};
  });
  auto t = transport(server, [&](RestConfig& c) {
    c.token.clear();
    c.token_file = token_file;
  });
  std::ofstream(token_file) << "new-token\n";  // rotated; the clock has not moved, so not seen yet
  auto answer = get(*t, "/api/v1/pods");
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->status, 200U);
  std::vector<std::string> tokens;
  for (const auto& seen : server.seen()) {
    tokens.push_back(seen.authorization);
  }
  EXPECT_THAT(tokens, ElementsAre("Bearer old-token", "Bearer new-token"));

  // The same for a watch.
  std::ofstream(token_file) << "newer-token\n";
  RecordingHandler handler;
  auto streamed = watch(*t, handler);
  ASSERT_TRUE(streamed.has_value()) << streamed.error().message;
  EXPECT_EQ(streamed->status, 200U);
  EXPECT_THAT(handler.lines, ElementsAre("x"));
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 4U);
  EXPECT_EQ(seen[2].authorization, "Bearer new-token");
  EXPECT_EQ(seen[3].authorization, "Bearer newer-token");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nmi::kube
