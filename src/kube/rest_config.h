#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "http/url.h"

namespace nmi::kube {

inline constexpr std::string_view kDefaultServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";
inline constexpr std::size_t kMaxKubeconfigBytes = std::size_t{1} << 20U;
inline constexpr std::size_t kMaxCredentialFileBytes = std::size_t{1} << 20U;

// How to reach and authenticate to the API server: the result of reading a kubeconfig or the
// in-cluster environment. PEM material is held in memory; the bearer token is either fixed
// (`token`) or read from `token_file` (re-read when it changes, see BearerToken). TLS is always
// verified: against `ca_pem` when set, else against the system's trust store. Never log the
// PEM fields or the token.
struct RestConfig {
  http::Url server;             // https only; target is empty or "/"
  std::string server_text;      // as written, for logs
  std::string ca_pem;           // trusted CAs; empty: the system's
  std::string tls_server_name;  // name checked in the server's certificate; empty: server.host
  std::string client_cert_pem;  // client certificate chain, with client_key_pem
  std::string client_key_pem;
  std::string token;       // a fixed bearer token
  std::string token_file;  // a bearer token file, re-read when it changes (wins over `token`)
  std::string source;      // "kubeconfig <path> (context <name>)" or "in-cluster", for logs
};

// Parses a kubeconfig's text. Its current-context selects the cluster and the user. Supported:
// cluster `server` (https), `certificate-authority` (a file) or `certificate-authority-data`,
// `tls-server-name`; user `token`, `tokenFile`, `client-certificate(-data)` and
// `client-key(-data)`. Relative file names are resolved against `base_dir` (the kubeconfig's
// directory) and the files are read now, except the token file, which is only checked for
// readability. Refused, with an error naming the field: `insecure-skip-tls-verify: true`,
// `proxy-url`, `exec`, `auth-provider`, `username`/`password`, an http server, a missing
// current context, cluster or user. Errors: InvalidArgument (the message names the field and never
// quotes a credential), NotFound/Unavailable (a referenced file).
Result<RestConfig> parseKubeconfig(std::string_view text, const std::string& base_dir);

// Reads and parses the kubeconfig at `path`.
Result<RestConfig> loadKubeconfig(const std::string& path);

// The in-cluster configuration: https://<host>:<port> from KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT (an IPv6 host is bracketed), the CA `<dir>/ca.crt` and the token file
// `<dir>/token` (which must be readable now). Errors: NotFound when the variables are unset or
// empty (not in a cluster), InvalidArgument for a bad host or port, NotFound/Unavailable for the
// files.
Result<RestConfig> inClusterConfig(std::string_view service_host, std::string_view service_port,
                                   const std::string& service_account_dir);

// Where nmi's API configuration comes from, as the daemon received it.
struct RestConfigSources {
  std::string kubeconfig;  // --kubeconfig, else KUBECONFIG (first entry of a ':' list)
  std::optional<std::string> service_host;  // env KUBERNETES_SERVICE_HOST
  std::optional<std::string> service_port;  // env KUBERNETES_SERVICE_PORT
  std::string service_account_dir = std::string(kDefaultServiceAccountDir);
};

// A kubeconfig when one is named, else the in-cluster configuration. The error message is one
// line saying what was tried.
Result<RestConfig> loadRestConfig(const RestConfigSources& sources);

}  // namespace nmi::kube
