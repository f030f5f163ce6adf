#include "http/tls.h"

#include <boost/asio/buffer.hpp>
#include <fmt/format.h>

namespace nmi::http {

namespace ssl = boost::asio::ssl;

Result<std::unique_ptr<ssl::context>> makeTlsClientContext(const TlsClientOptions& options) {
  auto tls = std::make_unique<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  if (options.ca_pem.empty()) {
    tls->set_default_verify_paths(ec);
  } else {
    tls->add_certificate_authority(boost::asio::buffer(options.ca_pem), ec);
    if (ec) {
      return makeError(ErrorCode::InvalidArgument,
                       "cannot load the certificate authority: " + ec.message());
    }
  }
  if (!options.ca_file.empty()) {
    tls->load_verify_file(options.ca_file, ec);
    if (ec) {
      return makeError(ErrorCode::InvalidArgument,
                       fmt::format("cannot load CA file {}: {}", options.ca_file, ec.message()));
    }
  }
  tls->set_verify_mode(ssl::verify_peer);
  if (!options.client_cert_pem.empty()) {
    tls->use_certificate_chain(boost::asio::buffer(options.client_cert_pem), ec);
    if (ec) {
      return makeError(ErrorCode::InvalidArgument,
                       "cannot load the client certificate: " + ec.message());
    }
    tls->use_private_key(boost::asio::buffer(options.client_key_pem), ssl::context::pem, ec);
    if (ec) {
      return makeError(ErrorCode::InvalidArgument, "cannot load the client key: " + ec.message());
    }
  }
  return tls;
}

}  // namespace nmi::http
