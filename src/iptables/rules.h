#pragma once

// nmi's interception rules: what they must be, how they differ from what a node has, and the
// iptables-restore text that repairs or removes them. Pure functions, no I/O (STYLE.md Example 7).
//
// nat:    -A PREROUTING -j NMI-METADATA
//         -A NMI-METADATA ! -s 127.0.0.1/32 -d <metadata-ip>/32 -p tcp -m tcp --dport <port>
//             -j DNAT --to-destination <target>:<nmi-port>
//         -A NMI-METADATA -j RETURN
// filter: -A FORWARD -j NMI-METADATA-GUARD
//         -A NMI-METADATA-GUARD -d <metadata-ip>/32 -p tcp -m tcp --dport <port>
//             -m conntrack ! --ctstate DNAT -j REJECT --reject-with tcp-reset
// The guard resets pods' metadata connections that were not DNATed (a flushed or missing nat
// chain fails closed); DNATed traffic is delivered locally and never traverses FORWARD.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "iptables/save_parser.h"

namespace nmi::iptables {

inline constexpr std::string_view kNatChain = "NMI-METADATA";
inline constexpr std::string_view kGuardChain = "NMI-METADATA-GUARD";

// What is intercepted and where it goes.
struct InterceptionSpec {
  std::string metadata_ip = "169.254.169.254";
  std::uint16_t metadata_port = 80;
  std::string target_ip = "127.0.0.1";
  std::uint16_t target_port = 2579;
};

// The DNAT target for nmi's listen address: the address itself, except 0.0.0.0 which becomes
// 127.0.0.1 (as the original).
std::string dnatTargetFor(std::string_view listen_address);

// What one table must hold: `chain` with exactly `rules` (specs as iptables-save prints them),
// jumped to once from built-in chain `hook` by a rule with no match.
struct DesiredTable {
  std::string table;
  std::string chain;
  std::string hook;
  std::vector<std::string> rules;
  std::string jumpSpec() const { return "-j " + chain; }
};

DesiredTable desiredNat(const InterceptionSpec& spec);
DesiredTable desiredFilter(const InterceptionSpec& spec);

// The repair of one table; empty when the table is as desired.
struct TablePlan {
  bool refill_chain = false;     // declare (flush) the chain and append the desired rules
  int delete_jumps = 0;          // `-D <hook> -j <chain>` this many times
  int insert_jump_at = 0;        // `-I <hook> <n> -j <chain>`; 0: no insert
  std::vector<std::string> why;  // what was wrong, for the log
  bool empty() const { return !refill_chain && delete_jumps == 0 && insert_jump_at == 0; }
};

struct Plan {
  TablePlan nat;
  TablePlan filter;
  bool empty() const { return nat.empty() && filter.empty(); }
};

// Compares one table as observed (null: the table is absent) with what it must hold:
//  * the chain is missing, or its rules differ in any way (flushed, edited, reordered, extra
//    rules) -> refill;
//  * no jump from the hook -> insert at position 1;
//  * the first jump is behind a rule that could take metadata traffic away (capture.h) ->
//    delete every jump and insert one at position 1;
//  * several jumps, the first one safe -> delete them all and insert one where the first was.
// A jump that only something harmless precedes is left where it is.
TablePlan planTable(const SavedTable* observed, const DesiredTable& desired,
                    const InterceptionSpec& spec);

// Both tables. `nat` and `filter` may be null (absent tables).
Plan planReconcile(const SavedTable* nat, const SavedTable* filter, const InterceptionSpec& spec);

// The iptables-restore --noflush input that applies `plan` to `desired.table` (one transaction);
// "" when the plan is empty.
std::string restoreText(const DesiredTable& desired, const TablePlan& plan);

// The iptables-restore --noflush input that removes `chain` from `observed`: every rule of any
// chain that jumps or goes to it, then the chain itself; "" when there is nothing to remove.
std::string cleanupText(const SavedTable& observed, std::string_view chain);

// A one-line description of a plan for the log ("nat: chain NMI-METADATA missing; ...").
std::string describe(const Plan& plan);

}  // namespace nmi::iptables
