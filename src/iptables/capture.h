#pragma once

// Could a rule take metadata traffic away from nmi? The decision behind "the jump is behind a
// rule that could DNAT or accept metadata traffic" (docs/operations.md, "Interception"). Pure.
//
// A rule placed before nmi's jump in a built-in chain is dangerous when BOTH
//  1. its match could cover a new TCP connection to <metadata-ip>:<metadata-port>, and
//  2. its target could end the chain's traversal with the packet let through or redirected.
//
// 1 is decided only from what cannot be wrong for a pod's packet: the destination address (`-d`,
// CIDR or dotted mask, with `!`), the protocol (`-p`, with `!`; `-m udp`, `-m icmp`, ... cannot
// match TCP), the destination port (`--dport`/`--destination-port` of `-m tcp`, `--dports` /
// `--destination-ports` of `-m multiport`, with `!`, single ports, ranges and lists) and
// `-m addrtype --dst-type` (the metadata address can only be UNICAST, LOCAL or UNSPEC). Every
// other match (source, interfaces, marks, conntrack state, sets, comments' neighbours, unknown
// modules) is assumed to possibly match.
//
// 2: in the nat table DNAT, REDIRECT, NETMAP and ACCEPT; in the filter table ACCEPT; in both,
// RETURN where it returns from a built-in chain (directly, or from a chain reached by `-g` from
// one) because the chain's policy then applies; any target that is neither known to be harmless
// (DROP, REJECT, LOG, NFLOG, MARK, CONNMARK, CT, NOTRACK, TRACE, TCPMSS, DSCP, TOS, TTL, SET,
// AUDIT, CHECKSUM, CLASSIFY, SNAT, MASQUERADE, or no target) nor a chain of the table (NFQUEUE,
// anything unknown); and a jump (`-j`/`-g`) to a chain of the same table that holds such a rule,
// inspected recursively in the same save output (more than 16 levels, or a chain that is not in
// the output, counts as dangerous). nmi's own chain is never dangerous.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "iptables/save_parser.h"

namespace nmi::iptables {

// A TCP destination: address (host byte order) and port.
struct Destination {
  std::uint32_t address = 0;
  std::uint16_t port = 0;
};

// Parses a dotted-quad IPv4 address into host byte order.
std::optional<std::uint32_t> parseIpv4(std::string_view text);

// Whether the rule's match could cover a new TCP connection to `destination` (point 1 above).
bool ruleCouldMatch(const SavedRule& rule, const Destination& destination);

// The first rule in built-in chain `hook` of `table`, before index `before` (0-based), that could
// take traffic to `destination` away before it reaches that index: its spec, or nullopt when
// none could. `own_chain` is nmi's chain in this table.
std::optional<std::string> dangerousRuleBefore(const SavedTable& table, std::string_view hook,
                                               std::size_t before, std::string_view own_chain,
                                               const Destination& destination);

}  // namespace nmi::iptables
