#pragma once

#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "common/result.h"

namespace nmi::http {

// What a TLS client trusts and shows. The server's certificate is always verified.
struct TlsClientOptions {
  // PEM certificate authorities trusted instead of the system's (the API server's CA).
  std::string ca_pem;
  // A CA bundle file trusted besides the system's (--aad-ca-file).
  std::string ca_file;
  // A client certificate chain and its key, PEM (kubeconfig client auth); both or neither.
  std::string client_cert_pem;
  std::string client_key_pem;
};

// The one TLS client context builder of nmi (the Azure AD client and the API client): TLS 1.2 or
// later, peer verification on, the trust and identity of `options`. Errors: InvalidArgument,
// naming what did not load (the CA file by path, never a PEM's content).
Result<std::unique_ptr<boost::asio::ssl::context>> makeTlsClientContext(
    const TlsClientOptions& options);

}  // namespace nmi::http
