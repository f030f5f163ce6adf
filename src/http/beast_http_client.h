#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include "common/clock.h"
#include "http/client.h"
#include "http/url.h"

namespace nmi::http {

struct ClientOptions {
  std::string user_agent = "nmi";
  std::string ca_file;      // PEM bundle trusted in addition to the system's
  std::string https_proxy;  // HTTPS_PROXY: used for https URLs not exempted by no_proxy
  std::string no_proxy;     // NO_PROXY
  std::size_t max_idle_per_host = 8;
  int max_open_per_host = 64;  // more concurrent exchanges to one host fail (Unavailable)
  std::chrono::seconds idle_ttl{30};
};

// HttpClient on Boost.Beast: keep-alive connection pool per host (bounded), TLS 1.2+ with
// certificate and host name verification (OpenSSL), HTTPS through an HTTP CONNECT proxy, one
// deadline per exchange, cancellation. Thread-safe.
class BeastHttpClient final : public HttpClient {
 public:
  // Errors: InvalidArgument (unreadable CA file, bad proxy URL).
  static Result<std::unique_ptr<BeastHttpClient>> create(boost::asio::io_context& io,
                                                         ClientOptions options);
  ~BeastHttpClient() override;

  Task<Result<ClientResponse>> send(ClientRequest request, CancellationSignal* cancel) override;

  // Idle pooled connections now (for tests and metrics).
  std::size_t idleConnections() const;

 private:
  struct Connection;
  using ConnectionPtr = std::shared_ptr<Connection>;
  BeastHttpClient(boost::asio::io_context& io, ClientOptions options,
                  std::unique_ptr<boost::asio::ssl::context> tls, std::optional<ProxyUrl> proxy);

  Task<Result<ClientResponse>> exchange(const ConnectionPtr& connection, const Url& url,
                                        const ClientRequest& request, MonotonicTime deadline);
  ConnectionPtr takeIdle(const std::string& key);
  void putIdle(const std::string& key, ConnectionPtr connection);
  bool reserve(const std::string& key);
  void unreserve(const std::string& key);

  boost::asio::io_context& io_;
  const ClientOptions options_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::optional<ProxyUrl> proxy_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::vector<ConnectionPtr>> idle_;
  std::unordered_map<std::string, int> open_;
};

}  // namespace nmi::http
