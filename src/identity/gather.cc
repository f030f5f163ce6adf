#include "identity/gather.h"

#include <set>
#include <utility>

namespace nmi::identity {

ResolveInput gatherInput(const IdentitySource& source, const PodInfo& pod, Mode mode) {
  ResolveInput input;
  input.pod = pod;
  if (mode == Mode::Standard) {
    input.assigned = source.assignedIdentities(pod.ns, pod.name);
  }
  for (auto& binding : source.bindingsBySelector(bindingSelector(pod))) {
    if (mode == Mode::Managed && binding.ns != pod.ns) {
      continue;
    }
    input.bindings_selecting_pod.push_back(std::move(binding));
  }
  std::set<std::pair<std::string, std::string>> looked_up;
  for (const auto& binding : input.bindings_selecting_pod) {
    if (!looked_up.emplace(binding.ns, binding.azure_identity).second) {
      continue;
    }
    if (auto id = source.identity(binding.ns, binding.azure_identity)) {
      input.bound_identities.push_back(std::move(*id));
    }
  }
  input.exceptions = source.exceptions(pod.ns);
  return input;
}

}  // namespace nmi::identity
