#pragma once

// Dropping connections to the metadata address that existed before the rules (conntrack(8)).

#include <chrono>
#include <cstdint>
#include <string>

#include "common/result.h"
#include "iptables/command_runner.h"

namespace nmi::iptables {

// `conntrack -D -p tcp --orig-dst <ip> --orig-port-dst <port> --reply-src <ip>`: the flows that
// reach the metadata address itself. A flow redirected by the DNAT answers from nmi's address
// (its reply source is nmi's), so it is left alone: deleting it would cut a request in flight to
// nmi (on a hand-over the new nmi's first pass ran beside the old one's live connections, and the
// un-NATed answers of those flows were lost: requests timed out on the real node).
Command conntrackDeleteCommand(const std::string& ip, std::uint16_t port,
                               std::chrono::milliseconds timeout);

// Pure. The number of entries deleted, from conntrack's "N flow entries have been deleted." (exit
// code 1 with N = 0 is success too). Errors: Unavailable with conntrack's first line otherwise.
Result<int> parseConntrackDelete(const CommandOutput& output);

// Runs the deletion on the caller's thread. Errors: as CommandRunner::run, or
// parseConntrackDelete.
Result<int> deleteMetadataConnections(CommandRunner& runner, const std::string& ip,
                                      std::uint16_t port, std::chrono::milliseconds timeout);

}  // namespace nmi::iptables
