#include "kube/store.h"

namespace nmi::kube {

std::string objectKey(std::string_view ns, std::string_view name) {
  // Length-prefixed, so that no two pairs share a key whatever characters they hold.
  std::string key = std::to_string(ns.size());
  key += ':';
  key += ns;
  key += name;
  return key;
}

}  // namespace nmi::kube
