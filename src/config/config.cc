#include "config/config.h"

#include <array>
#include <cstdlib>
#include <utility>

#include "config/flag_set.h"
#include "config/flag_table.h"
#include "config/go_args.h"
#include "config/values.h"

#ifndef NMI_VERSION
#define NMI_VERSION "unknown"
#endif

namespace nmi::config {
namespace {

constexpr std::string_view kDescription =
    "nmi answers pods' Azure Instance Metadata token requests on this node\n"
    "(a drop-in successor to aad-pod-identity's NMI).";
constexpr std::string_view kFooter =
    "Flags are read as --name=value, --name value, -name=value or -name value; a boolean is\n"
    "set with --name and cleared with --name=false. The last occurrence of a flag wins.\n"
    "`nmi cleanup [flags]` removes nmi's iptables rules (for an uninstall) and exits.";

// Go's httpproxy reads the first of the names that is set and not empty.
std::optional<std::string> firstNonEmpty(GetEnv env, const char* upper, const char* lower) {
  for (const char* name : {upper, lower}) {
    std::optional<std::string> value = env(name);
    if (value && !value->empty()) {
      return value;
    }
  }
  return std::nullopt;
}

void applyEnvironment(GetEnv env, const FlagSet& flags, Config& config) {
  // As the original: only the exact string "true" turns it on, and it cannot turn the flag off.
  if (env("FORCENAMESPACED") == std::optional<std::string>("true")) {
    config.identity.force_namespaced = true;
  }
  if (!flags.given("kubeconfig")) {
    if (std::optional<std::string> value = env("KUBECONFIG")) {
      config.identity.kubeconfig = std::move(*value);
    }
  }
  if (!flags.given("node")) {
    if (std::optional<std::string> value = env("NODE_NAME")) {
      config.identity.node_name = std::move(*value);
    }
  }
  if (std::optional<std::string> value = env("POD_NAMESPACE")) {
    config.iptables.daemonset_namespace = std::move(*value);
  }
  if (std::optional<std::string> value = env("POD_NAME")) {
    config.iptables.pod_name = std::move(*value);
  }
  if (std::optional<std::string> value = firstNonEmpty(env, "HTTPS_PROXY", "https_proxy")) {
    config.token.https_proxy = std::move(*value);
  }
  if (std::optional<std::string> value = firstNonEmpty(env, "NO_PROXY", "no_proxy")) {
    config.token.no_proxy = std::move(*value);
  }
}

// Of two flags in conflict, blame the one the user gave (the later one if both or neither).
std::string_view blame(const FlagSet& flags, std::string_view first, std::string_view second) {
  return flags.given(second) || !flags.given(first) ? second : first;
}

Result<void> checkPortsDistinct(const FlagSet& flags, const ServerConfig& server) {
  // The probe and metrics listeners bind every address, so they overlap the proxy's address
  // whatever --nmi-listen-address says: the three ports must differ.
  struct Port {
    std::string_view flag;
    std::uint16_t value;
  };
  const std::array<Port, 3> ports = {{{"nmi-port", server.port},
                                      {"http-probe-port", server.probe_port},
                                      {"prometheus-port", server.metrics_port}}};
  for (std::size_t i = 0; i < ports.size(); ++i) {
    for (std::size_t j = i + 1; j < ports.size(); ++j) {
      if (ports[i].value == ports[j].value) {
        const std::string_view culprit = blame(flags, ports[i].flag, ports[j].flag);
        const std::string_view other = culprit == ports[i].flag ? ports[j].flag : ports[i].flag;
        return invalidValue(culprit, std::to_string(ports[i].value),
                            "same port as --" + std::string(other));
      }
    }
  }
  return {};
}

Result<void> checkCombinations(const FlagSet& flags, const Config& config) {
  if (Result<void> ports = checkPortsDistinct(flags, config.server); !ports) {
    return ports;
  }
  if (config.server.max_connections_per_peer > config.server.max_connections) {
    return invalidValue("max-connections-per-peer",
                        std::to_string(config.server.max_connections_per_peer),
                        "must not exceed --max-connections (" +
                            std::to_string(config.server.max_connections) + ")");
  }
  if (config.metadata.proxy_max_concurrent_per_pod > config.metadata.proxy_max_concurrent) {
    return invalidValue("proxy-max-concurrent-per-pod",
                        std::to_string(config.metadata.proxy_max_concurrent_per_pod),
                        "must not exceed --proxy-max-concurrent (" +
                            std::to_string(config.metadata.proxy_max_concurrent) + ")");
  }
  if (config.token.refresh_ahead <= config.token.min_lifetime) {
    const std::string_view culprit =
        blame(flags, "token-refresh-ahead-sec", "token-min-lifetime-sec");
    const bool is_refresh = culprit == "token-refresh-ahead-sec";
    const auto value = is_refresh ? config.token.refresh_ahead : config.token.min_lifetime;
    return invalidValue(culprit, std::to_string(value.count()),
                        "--token-refresh-ahead-sec must be greater than --token-min-lifetime-sec");
  }
  if (config.identity.mode == OperationMode::Managed && !config.identity.force_namespaced) {
    return invalidValue("operation-mode", flags.lastValue("operation-mode").value_or("managed"),
                        "managed mode needs --forceNamespaced (or env FORCENAMESPACED=true)");
  }
  return {};
}

}  // namespace

std::optional<std::string> processEnv(const char* name) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): parse() runs before any thread starts.
  const char* value = std::getenv(name);
  if (value == nullptr) {
    return std::nullopt;
  }
  return std::string(value);
}

Result<HostPort> splitHostPort(std::string_view text) {
  const auto bad = [](std::string why) {
    return makeError(ErrorCode::InvalidArgument, std::move(why));
  };
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return bad("expected host:port");
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return bad("expected host:port ([v6-address]:port for IPv6)");
    }
    host = host.substr(1, host.size() - 2);
    for (const char c : host) {
      const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      if (!hex && c != ':' && c != '.') {
        return bad("not an IPv6 address in brackets");
      }
    }
  } else if (host.find(':') != std::string_view::npos) {
    return bad("an IPv6 host must be written in brackets: [v6-address]:port");
  } else if (!isHostName(host)) {
    return bad(host.empty() ? "the host is missing" : "not a host name or IPv4 address");
  }
  if (std::optional<std::string> why = checkPort(port)) {
    return bad("port " + *why);
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(*parseDecimal(port))};
}

Result<ParseOutcome> parse(const std::vector<std::string>& args, GetEnv env) {
  ParseOutcome outcome;
  bool version = false;
  FlagSet flags(kDescription, kFooter);
  registerFlags(flags, outcome.config, version);

  std::vector<std::string> words(args.empty() ? args.end() : args.begin() + 1, args.end());
  // `nmi cleanup [flags]`: the one subcommand, only as the first word.
  const bool cleanup = !words.empty() && words.front() == "cleanup";
  if (cleanup) {
    words.erase(words.begin());
  }
  Result<GoArgs> split =
      splitGoArgs(words, [&flags](std::string_view name) { return flags.specOf(name); });
  if (!split) {
    return std::move(split).error();
  }
  if (split->help) {
    outcome.action = ParseOutcome::Action::PrintHelp;
    outcome.text = flags.help();
    return outcome;
  }
  if (Result<void> stored = flags.store(split->values); !stored) {
    return stored.error();
  }
  // --version answers before the other values are checked, as the original's did.
  for (const ArgValue& arg : split->values) {
    if (arg.name == "version") {
      const std::optional<bool> value = parseGoBool(arg.value);
      if (!value) {
        return invalidValue("version", arg.value, "not a boolean (use true or false)");
      }
      version = *value;
    }
  }
  if (version) {
    outcome.action = ParseOutcome::Action::PrintVersion;
    outcome.text = std::string("nmi ") + NMI_VERSION;
    return outcome;
  }
  if (Result<void> applied = flags.apply("version"); !applied) {
    return applied.error();
  }
  applyEnvironment(env, flags, outcome.config);
  if (Result<void> checked = checkCombinations(flags, outcome.config); !checked) {
    return checked.error();
  }
  outcome.config.warnings = flags.compatWarnings();
  if (cleanup) {
    outcome.action = ParseOutcome::Action::Cleanup;
  }
  return outcome;
}

}  // namespace nmi::config
