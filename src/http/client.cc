#include "http/client.h"

#include <boost/beast/core/string.hpp>

namespace nmi::http {

std::optional<std::string_view> findHeader(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (boost::beast::iequals(key, name)) {
      return std::string_view(value);
    }
  }
  return std::nullopt;
}

}  // namespace nmi::http
