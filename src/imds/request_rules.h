#pragma once

#include <optional>
#include <string>

#include <boost/asio/ip/address.hpp>

#include "http/server.h"
#include "imds/responses.h"

namespace nmi::imds {

// Rules about a request that every endpoint of the IMDS port shares. Pure, thread-safe.

// IMDS's rules for every /metadata request: exactly one Metadata header whose value is exactly
// "true" (unless --metadata-header-required=false), and never X-Forwarded-For (IMDS refuses
// requests that went through a proxy). Nullopt when the request passes.
std::optional<Reply> metadataCheck(const http::Request& request, bool header_required);

// The caller's address as the pod cache indexes it (IPv4-mapped IPv6 as IPv4).
std::string peerAddress(const boost::asio::ip::address& peer);

// Whether the caller is on the node itself (127.0.0.0/8, ::1, or their IPv4-mapped forms).
bool isLoopback(const boost::asio::ip::address& peer);

}  // namespace nmi::imds
