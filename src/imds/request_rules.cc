#include "imds/request_rules.h"

#include <iterator>

namespace nmi::imds {

namespace {

boost::asio::ip::address unmapped(const boost::asio::ip::address& peer) {
  if (peer.is_v6() && peer.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, peer.to_v6());
  }
  return peer;
}

}  // namespace

std::optional<Reply> metadataCheck(const http::Request& request, bool header_required) {
  if (header_required) {
    const auto range = request.equal_range("Metadata");
    if (std::distance(range.first, range.second) != 1 || range.first->value() != "true") {
      return Reply::MetadataHeaderMissing;
    }
  }
  if (request.count("X-Forwarded-For") > 0) {
    return Reply::ForwardedHeader;
  }
  return std::nullopt;
}

std::string peerAddress(const boost::asio::ip::address& peer) {
  return unmapped(peer).to_string();
}

bool isLoopback(const boost::asio::ip::address& peer) {
  return unmapped(peer).is_loopback();
}

}  // namespace nmi::imds
