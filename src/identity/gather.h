#pragma once

#include "identity/options.h"
#include "identity/resolver.h"
#include "identity/source.h"

namespace nmi::identity {

// Collects what resolve() needs about `pod` from `source`: its AzureAssignedIdentities (standard
// mode only), the bindings selecting it (by its aadpodidbinding value; in managed mode only those
// of the pod's namespace), the identities those bindings name (each in its binding's namespace,
// once each) and the exceptions of its namespace.
ResolveInput gatherInput(const IdentitySource& source, const PodInfo& pod, Mode mode);

}  // namespace nmi::identity
