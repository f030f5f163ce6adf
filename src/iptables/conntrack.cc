#include "iptables/conntrack.h"

#include <charconv>
#include <string_view>

namespace nmi::iptables {

namespace {

constexpr std::string_view kDeleted = " flow entries have been deleted";

std::string firstLine(std::string_view text) {
  while (!text.empty() && (text.front() == '\n' || text.front() == ' ')) {
    text.remove_prefix(1);
  }
  return std::string(text.substr(0, std::min(text.find('\n'), std::size_t{300})));
}

}  // namespace

Command conntrackDeleteCommand(const std::string& ip, std::uint16_t port,
                               std::chrono::milliseconds timeout) {
  Command c;
  c.argv = {"conntrack",          "-D",          "-p", "tcp", "--orig-dst", ip, "--orig-port-dst",
            std::to_string(port), "--reply-src", ip};
  c.timeout = timeout;
  return c;
}

Result<int> parseConntrackDelete(const CommandOutput& output) {
  const std::string_view err = output.err;
  const std::size_t at = err.find(kDeleted);
  if (at != std::string_view::npos && (output.exit_code == 0 || output.exit_code == 1)) {
    std::size_t start = at;
    while (start > 0 && err[start - 1] >= '0' && err[start - 1] <= '9') {
      --start;
    }
    int deleted = 0;
    const auto [end, ec] = std::from_chars(err.data() + start, err.data() + at, deleted);
    if (ec == std::errc() && end == err.data() + at) {
      return deleted;
    }
  }
  const std::string shown = firstLine(output.err.empty() ? output.out : output.err);
  return makeError(ErrorCode::Unavailable,
                   "conntrack -D exited " + std::to_string(output.exit_code) + ": " + shown);
}

Result<int> deleteMetadataConnections(CommandRunner& runner, const std::string& ip,
                                      std::uint16_t port, std::chrono::milliseconds timeout) {
  auto output = runner.run(conntrackDeleteCommand(ip, port, timeout));
  if (!output) {
    return output.error();
  }
  return parseConntrackDelete(*output);
}

}  // namespace nmi::iptables
