"""The end-to-end tests' node: one devenv (tests/lib/devenv.py) for the session, in namespaces
named nmi-e2e-<pid>-*, with its state in a directory of its own, and the identities of each pod
created as a user and MIC would. Its teardown checks that `down` left nothing behind.

ctest sets NMI_BINARY and NMI_EMULATOR; the kube binaries come from scripts/kube-testenv's cache.
"""
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

import devenv  # noqa: E402
from nmi_pytest.plugin import require  # noqa: E402

pytest_plugins = ["nmi_pytest.plugin"]

NS = "e2e"
UA = {name: devenv.ua("e2e-" + name) for name in ("ua1", "m1", "m2")}
SP = devenv.sp("e2e-sp", "e2e-sp-s3cret")
# pod -> (selector, identities bound to it)
PODS = {"app-ua1": ("ua1", ["ua1"]), "app-multi": ("multi", ["m1", "m2"]),
        "app-sp": ("sp", ["sp"]), "app-none": ("none", [])}


def identity_objects(env):
    """What a user applies (AzureIdentity, AzureIdentityBinding, the SP's Secret) and what MIC
    would write (an Assigned AzureAssignedIdentity per pod and identity)."""
    objs = [devenv.secret("sp-secret", NS, SP["secret"])]
    for pod_name, (selector, names) in PODS.items():
        pod = env.pod(NS + "/" + pod_name)
        for name in names:
            if name == "sp":
                ident = devenv.azure_identity("id-sp", NS, SP["client_id"], type=1,
                                              secret_name="sp-secret",
                                              ad_endpoint=env.state["aad_endpoint"])
            else:
                ident = devenv.azure_identity("id-" + name, NS, UA[name]["client_id"],
                                              resource_id=UA[name]["resource_id"])
            b = devenv.binding("bind-" + name, NS, ident["metadata"]["name"], selector)
            objs += [ident, b, devenv.assigned(pod, ident, b)]
    return objs


@pytest.fixture(scope="session")
def node():
    require("network namespaces",
            programs=("ip", "iptables-nft", "setpriv", "unshare", "nsenter", "curl"),
            env_files=("NMI_BINARY", "NMI_EMULATOR"))
    config = {
        "pods": [{"name": name, "namespace": NS, "selector": sel}
                 for name, (sel, _) in PODS.items()],
        "user_assigned": list(UA.values()),
        "apps": [SP],
    }
    d = tempfile.mkdtemp(prefix="nmi-e2e-%d-" % os.getpid())
    os.rmdir(d)  # up creates it
    env = devenv.Devenv(d, prefix="nmi-e2e-%d-" % os.getpid(),
                        nmi_binary=os.environ["NMI_BINARY"],
                        emulator_binary=os.environ["NMI_EMULATOR"], config=config)
    up_seconds = env.up()
    print("MEASURE devenv_up = %.1f s" % up_seconds, flush=True)
    pids = env.all_pids()
    try:
        env.create(identity_objects(env))
        yield env
    finally:
        env.down()
        left = env.leftovers(pids)
        assert left == [], "devenv down left: %s" % left
