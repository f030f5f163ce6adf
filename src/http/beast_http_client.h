#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include "common/clock.h"
#include "http/client.h"
#include "http/tls.h"
#include "http/url.h"

namespace nmi::http {

struct ClientOptions {
  std::string user_agent = "nmi";
  TlsClientOptions tls;  // what TLS connections trust and show (http/tls.h)
  // Checked in servers' certificates (and sent as SNI) instead of the URL's host: kubeconfig's
  // tls-server-name.
  std::string tls_server_name;
  std::string https_proxy;  // HTTPS_PROXY: used for https URLs not exempted by no_proxy
  std::string no_proxy;     // NO_PROXY
  std::size_t max_idle_per_host = 8;
  int max_open_per_host = 64;  // more concurrent exchanges to one host fail (Unavailable)
  std::chrono::seconds idle_ttl{30};
  // TCP connect at most this long (else up to the exchange's deadline): short, so that a
  // black-holed server is retried quickly.
  std::optional<std::chrono::milliseconds> connect_timeout;
  // TCP keep-alive probes after 30 s idle, every 10 s, 3 at most (long-lived streams).
  bool tcp_keepalive = false;
  std::size_t max_header_bytes = std::size_t{16} << 10U;  // per response head
};

// HttpClient on Boost.Beast: keep-alive connection pool per host (bounded), TLS 1.2+ with
// certificate and host name verification (OpenSSL), HTTPS through an HTTP CONNECT proxy, one
// deadline per exchange, streams on connections of their own, cancellation. Sockets run on the
// executor given to create(), which must outlive every call. Thread-safe.
class BeastHttpClient final : public HttpClient {
 public:
  // Errors: InvalidArgument (a CA, certificate or key that does not load, bad proxy URL).
  static Result<std::unique_ptr<BeastHttpClient>> create(boost::asio::any_io_executor executor,
                                                         ClientOptions options);
  static Result<std::unique_ptr<BeastHttpClient>> create(boost::asio::io_context& io,
                                                         ClientOptions options) {
    return create(io.get_executor(), std::move(options));
  }
  ~BeastHttpClient() override;

  Task<Result<ClientResponse>> send(ClientRequest request, CancellationSignal* cancel) override;
  Task<Result<ClientResponse>> stream(ClientRequest request, std::chrono::milliseconds silence,
                                      BodyReceiver& receiver, CancellationSignal* cancel) override;

  // Idle pooled connections now (for tests and metrics).
  std::size_t idleConnections() const;

 private:
  struct Connection;
  using ConnectionPtr = std::shared_ptr<Connection>;
  BeastHttpClient(boost::asio::any_io_executor executor, ClientOptions options,
                  std::unique_ptr<boost::asio::ssl::context> tls, std::optional<ProxyUrl> proxy);

  // Connects a new connection to `url` (through the proxy when one applies) and, for https,
  // performs the TLS handshake. Errors: Unavailable, Timeout.
  Task<Result<void>> open(const ConnectionPtr& connection, const Url& url, MonotonicTime deadline);
  Task<Result<ClientResponse>> exchange(const ConnectionPtr& connection, const Url& url,
                                        const ClientRequest& request, MonotonicTime deadline);
  ConnectionPtr takeIdle(const std::string& key);
  void putIdle(const std::string& key, ConnectionPtr connection);
  // A request's claim on its host: its URL, pool key and deadline, and one of the host's
  // max_open_per_host connection slots, given back when the Slot ends.
  class Slot {
   public:
    Slot(BeastHttpClient* client, Url url_in, std::string key_in, MonotonicTime deadline_in)
        : url(std::move(url_in)), key(std::move(key_in)), deadline(deadline_in), client_(client) {}
    Slot(Slot&& other) noexcept
        : url(std::move(other.url)),
          key(std::move(other.key)),
          deadline(other.deadline),
          client_(std::exchange(other.client_, nullptr)) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    Slot& operator=(Slot&&) = delete;
    ~Slot();

    Url url;
    std::string key;
    MonotonicTime deadline;

   private:
    BeastHttpClient* client_;
  };
  // Errors: InvalidArgument (bad URL), Unavailable (max_open_per_host reached).
  Result<Slot> admit(const ClientRequest& request);
  bool reserve(const std::string& key);
  void unreserve(const std::string& key);

  boost::asio::any_io_executor executor_;
  const ClientOptions options_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::optional<ProxyUrl> proxy_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::vector<ConnectionPtr>> idle_;
  std::unordered_map<std::string, int> open_;
};

}  // namespace nmi::http
