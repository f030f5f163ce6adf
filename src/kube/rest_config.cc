#include "kube/rest_config.h"

#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include "common/base64.h"
#include "common/file.h"

namespace nmi::kube {

namespace {

Error invalid(std::string message) {
  return makeError(ErrorCode::InvalidArgument, std::move(message));
}

std::string resolvePath(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) {
    return path;
  }
  return (std::filesystem::path(base_dir) / path).string();
}

// A kubeconfig field's location for messages: users[name].user.token.
struct Where {
  std::string prefix;
  std::string at(std::string_view key) const { return prefix + "." + std::string(key); }
};

// The scalar at node[key]: nullopt when absent or null; an error when it is not a scalar.
Result<std::optional<std::string>> scalar(const YAML::Node& node, std::string_view key,
                                          const Where& where) {
  const YAML::Node value = node[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) {
    return std::optional<std::string>{};
  }
  if (!value.IsScalar()) {
    return invalid(where.at(key) + ": expected a string");
  }
  return std::optional<std::string>{value.Scalar()};
}

Result<bool> boolean(const YAML::Node& node, std::string_view key, const Where& where) {
  const YAML::Node value = node[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) {
    return false;
  }
  bool out = false;
  if (!value.IsScalar() || !YAML::convert<bool>::decode(value, out)) {
    return invalid(where.at(key) + ": expected a boolean");
  }
  return out;
}

// The entry named `name` of the list `list_key` ("clusters"), returning its `item_key` map.
Result<YAML::Node> findNamed(const YAML::Node& root, std::string_view list_key,
                             std::string_view item_key, const std::string& name) {
  const YAML::Node list = root[std::string(list_key)];
  // yaml-cpp throws when an absent node is asked its type: check IsDefined() first.
  const bool present = list.IsDefined() && !list.IsNull();
  if (present && !list.IsSequence()) {
    return invalid(std::string(list_key) + ": expected a list");
  }
  if (present) {
    for (const auto& entry : list) {
      if (!entry.IsMap()) {
        return invalid(std::string(list_key) + ": expected a list of maps");
      }
      const YAML::Node entry_name = entry["name"];
      if (entry_name.IsDefined() && entry_name.IsScalar() && entry_name.Scalar() == name) {
        const YAML::Node item = entry[std::string(item_key)];
        if (!item.IsDefined() || item.IsNull()) {
          return YAML::Node(YAML::NodeType::Map);
        }
        if (!item.IsMap()) {
          return invalid(std::string(list_key) + "[" + name + "]." + std::string(item_key) +
                         ": expected a map");
        }
        return item;
      }
    }
  }
  return makeError(ErrorCode::InvalidArgument,
                   std::string(list_key) + ": no entry named \"" + name + "\"");
}

Result<std::string> decodeData(const std::string& text, const std::string& field) {
  std::string compact;
  compact.reserve(text.size());
  for (const char c : text) {
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t') {
      compact += c;
    }
  }
  auto decoded = base64Decode(compact);
  if (!decoded) {
    return invalid(field + ": not valid base64");
  }
  if (decoded->empty()) {
    return invalid(field + ": empty");
  }
  return std::move(*decoded);
}

// `<name>-data` (base64) or `<name>` (a file): the PEM text, or "" when neither is set.
Result<std::string> pemField(const YAML::Node& node, std::string_view name, const Where& where,
                             const std::string& base_dir) {
  const std::string data_key = std::string(name) + "-data";
  auto data = scalar(node, data_key, where);
  if (!data) {
    return data.error();
  }
  if (*data && !(*data)->empty()) {
    return decodeData(**data, where.at(data_key));
  }
  auto file = scalar(node, name, where);
  if (!file) {
    return file.error();
  }
  if (*file && !(*file)->empty()) {
    const std::string path = resolvePath(base_dir, **file);
    auto content = readSmallFile(path, kMaxCredentialFileBytes);
    if (!content) {
      return makeError(content.error().code, where.at(name) + ": " + content.error().message);
    }
    return std::move(*content);
  }
  return std::string{};
}

Result<void> checkServer(RestConfig& config, const std::string& server, const std::string& field) {
  auto url = http::parseUrl(server);
  if (!url) {
    return invalid(field + ": " + url.error().message);
  }
  if (url->scheme != "https") {
    return invalid(field + ": must be an https URL (nmi always verifies TLS)");
  }
  if (url->target.find('?') != std::string::npos) {
    return invalid(field + ": must not have a query");
  }
  while (!url->target.empty() && url->target.back() == '/') {
    url->target.pop_back();
  }
  config.server = std::move(*url);
  config.server_text = server;
  return {};
}

Result<RestConfig> parseCluster(const YAML::Node& cluster, const std::string& name,
                                const std::string& base_dir, RestConfig config) {
  const Where where{"clusters[" + name + "].cluster"};
  auto insecure = boolean(cluster, "insecure-skip-tls-verify", where);
  if (!insecure) {
    return insecure.error();
  }
  if (*insecure) {
    return invalid(where.at("insecure-skip-tls-verify") +
                   ": true is refused; nmi always verifies the API server's certificate (give "
                   "certificate-authority or certificate-authority-data)");
  }
  auto proxy = scalar(cluster, "proxy-url", where);
  if (!proxy) {
    return proxy.error();
  }
  if (*proxy && !(*proxy)->empty()) {
    return invalid(where.at("proxy-url") + ": not supported");
  }
  auto server = scalar(cluster, "server", where);
  if (!server) {
    return server.error();
  }
  if (!*server || (*server)->empty()) {
    return invalid(where.at("server") + ": missing");
  }
  if (auto ok = checkServer(config, **server, where.at("server")); !ok) {
    return ok.error();
  }
  auto ca = pemField(cluster, "certificate-authority", where, base_dir);
  if (!ca) {
    return ca.error();
  }
  config.ca_pem = std::move(*ca);
  auto server_name = scalar(cluster, "tls-server-name", where);
  if (!server_name) {
    return server_name.error();
  }
  config.tls_server_name = server_name->value_or("");
  return config;
}

Result<RestConfig> parseUser(const YAML::Node& user, const std::string& name,
                             const std::string& base_dir, RestConfig config) {
  const Where where{"users[" + name + "].user"};
  for (const char* unsupported : {"exec", "auth-provider", "username", "password"}) {
    const YAML::Node value = user[unsupported];
    if (value.IsDefined() && !value.IsNull()) {
      return invalid(where.at(unsupported) +
                     ": not supported (use a token, a token file or a client certificate)");
    }
  }
  auto token = scalar(user, "token", where);
  if (!token) {
    return token.error();
  }
  config.token = token->value_or("");
  auto token_file = scalar(user, "tokenFile", where);
  if (!token_file) {
    return token_file.error();
  }
  if (*token_file && !(*token_file)->empty()) {
    config.token_file = resolvePath(base_dir, **token_file);
    auto readable = readSmallFile(config.token_file, kMaxCredentialFileBytes);
    if (!readable) {
      return makeError(readable.error().code,
                       where.at("tokenFile") + ": " + readable.error().message);
    }
  }
  auto cert = pemField(user, "client-certificate", where, base_dir);
  if (!cert) {
    return cert.error();
  }
  auto key = pemField(user, "client-key", where, base_dir);
  if (!key) {
    return key.error();
  }
  if (cert->empty() != key->empty()) {
    return invalid(where.prefix + ": client-certificate and client-key must be given together");
  }
  config.client_cert_pem = std::move(*cert);
  config.client_key_pem = std::move(*key);
  return config;
}

Result<RestConfig> parseKubeconfigNode(const YAML::Node& root, const std::string& base_dir) {
  if (!root.IsMap()) {
    return invalid("expected a map at the top level");
  }
  auto current = scalar(root, "current-context", Where{"kubeconfig"});
  if (!current) {
    return current.error();
  }
  if (!*current || (*current)->empty()) {
    return invalid("current-context: missing");
  }
  const std::string& context_name = **current;
  auto context = findNamed(root, "contexts", "context", context_name);
  if (!context) {
    return context.error();
  }
  const Where context_where{"contexts[" + context_name + "].context"};
  auto cluster_name = scalar(*context, "cluster", context_where);
  if (!cluster_name) {
    return cluster_name.error();
  }
  if (!*cluster_name || (*cluster_name)->empty()) {
    return invalid(context_where.at("cluster") + ": missing");
  }
  auto user_name = scalar(*context, "user", context_where);
  if (!user_name) {
    return user_name.error();
  }
  auto cluster = findNamed(root, "clusters", "cluster", **cluster_name);
  if (!cluster) {
    return cluster.error();
  }
  RestConfig config;
  auto with_cluster = parseCluster(*cluster, **cluster_name, base_dir, std::move(config));
  if (!with_cluster) {
    return with_cluster.error();
  }
  if (!*user_name || (*user_name)->empty()) {
    return with_cluster;  // anonymous
  }
  auto user = findNamed(root, "users", "user", **user_name);
  if (!user) {
    return user.error();
  }
  auto out = parseUser(*user, **user_name, base_dir, std::move(*with_cluster));
  if (out) {
    out->source = "context " + context_name;
  }
  return out;
}

}  // namespace

Result<RestConfig> parseKubeconfig(std::string_view text, const std::string& base_dir) {
  // yaml-cpp reports errors by exceptions; none leaves this module.
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    return parseKubeconfigNode(root, base_dir);
  } catch (const YAML::Exception& e) {
    if (e.mark.line < 0) {
      return invalid("not a valid kubeconfig");
    }
    return invalid("not valid YAML (line " + std::to_string(e.mark.line + 1) + ")");
  } catch (const std::exception& e) {
    return invalid(std::string("cannot read: ") + e.what());
  }
}

Result<RestConfig> loadKubeconfig(const std::string& path) {
  auto text = readSmallFile(path, kMaxKubeconfigBytes);
  if (!text) {
    return makeError(text.error().code, "kubeconfig: " + text.error().message);
  }
  const std::string base_dir = std::filesystem::path(path).parent_path().string();
  auto config = parseKubeconfig(*text, base_dir);
  if (!config) {
    return makeError(config.error().code, "kubeconfig " + path + ": " + config.error().message);
  }
  config->source = "kubeconfig " + path + " (" + config->source + ")";
  return config;
}

Result<RestConfig> inClusterConfig(std::string_view service_host, std::string_view service_port,
                                   const std::string& service_account_dir) {
  if (service_host.empty() || service_port.empty()) {
    return makeError(ErrorCode::NotFound,
                     "not running in a cluster: KUBERNETES_SERVICE_HOST and "
                     "KUBERNETES_SERVICE_PORT must both be set");
  }
  std::string server = "https://";
  if (service_host.find(':') != std::string_view::npos && service_host.front() != '[') {
    server += "[" + std::string(service_host) + "]";
  } else {
    server += service_host;
  }
  server += ":" + std::string(service_port);
  RestConfig config;
  if (auto ok = checkServer(config, server, "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT");
      !ok) {
    return ok.error();
  }
  const std::string dir = service_account_dir.empty() ? "." : service_account_dir;
  const std::string ca_path = (std::filesystem::path(dir) / "ca.crt").string();
  auto ca = readSmallFile(ca_path, kMaxCredentialFileBytes);
  if (!ca) {
    return makeError(ca.error().code, "in-cluster CA: " + ca.error().message);
  }
  config.ca_pem = std::move(*ca);
  config.token_file = (std::filesystem::path(dir) / "token").string();
  auto token = readSmallFile(config.token_file, kMaxCredentialFileBytes);
  if (!token) {
    return makeError(token.error().code, "service-account token: " + token.error().message);
  }
  config.source = "in-cluster (" + server + ", " + dir + ")";
  return config;
}

Result<RestConfig> loadRestConfig(const RestConfigSources& sources) {
  std::string kubeconfig = sources.kubeconfig;
  // KUBECONFIG may list several files; nmi reads the first (it does not merge them).
  if (const auto colon = kubeconfig.find(':'); colon != std::string::npos) {
    kubeconfig = kubeconfig.substr(0, colon);
  }
  if (!kubeconfig.empty()) {
    return loadKubeconfig(kubeconfig);
  }
  auto config = inClusterConfig(sources.service_host.value_or(""),
                                sources.service_port.value_or(""), sources.service_account_dir);
  if (!config && config.error().code == ErrorCode::NotFound &&
      (!sources.service_host || sources.service_host->empty())) {
    return makeError(ErrorCode::NotFound,
                     "no API server configuration: give --kubeconfig (or KUBECONFIG), run in a "
                     "cluster (KUBERNETES_SERVICE_HOST/_PORT), or use --identity-file");
  }
  return config;
}

}  // namespace nmi::kube
