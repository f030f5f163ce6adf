#include "token/types.h"

#include <functional>
#include <string_view>

#include "common/identifier.h"

namespace nmi::token {

namespace {

void combine(std::size_t& seed, std::size_t value) {
  // boost::hash_combine's mixing step.
  seed ^= value + 0x9e3779b97f4a7c15ULL + (seed << 6U) + (seed >> 2U);
}

}  // namespace

bool TokenRequestKeyEqual::operator()(const TokenRequest& a, const TokenRequest& b) const {
  return a.kind == b.kind && a.selector == b.selector && a.resource == b.resource &&
         sameIdentifier(a.selector_value, b.selector_value) &&
         sameIdentifier(a.client_id, b.client_id) && a.tenant_id == b.tenant_id &&
         a.ad_endpoint == b.ad_endpoint && a.credential == b.credential;
}

std::size_t TokenRequestHash::operator()(const TokenRequest& r) const {
  const std::hash<std::string_view> h;
  std::size_t seed = static_cast<std::size_t>(r.kind) * 31U + static_cast<std::size_t>(r.selector);
  combine(seed, identifierHash(r.selector_value));
  combine(seed, identifierHash(r.client_id));
  for (const std::string_view part :
       {std::string_view{r.resource}, std::string_view{r.tenant_id},
        std::string_view{r.ad_endpoint}, std::string_view{r.credential.ns},
        std::string_view{r.credential.name}}) {
    combine(seed, h(part));
  }
  return seed;
}

}  // namespace nmi::token
