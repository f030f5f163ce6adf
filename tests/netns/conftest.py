"""The interception suite: the shared plugin (tests/lib/nmi_pytest), one lab (namespaces + IMDS
stand-in) per test module and backend, and an nmi in its node namespace that later tests find
running."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nmi_pytest.plugin import require  # noqa: E402
from netns_lab import Lab, NodeNmi, POD_IPS, harness  # noqa: E402

pytest_plugins = ["nmi_pytest.plugin"]

BACKEND = os.environ.get("NMI_IPT_BACKEND", "nft")
UA = {"a": harness.client_id_for("ua-a"), "b": harness.client_id_for("ua-b")}


def identity_objects():
    """podA -> identity a, podB -> identity b, podC: no identity."""
    objs = []
    for pod_ns, short in (("podA", "a"), ("podB", "b")):
        p = harness.pod("pod-" + short, "default", POD_IPS[pod_ns],
                        labels={"aadpodidbinding": short})
        ident = harness.azure_identity("id-" + short, "default", client_id=UA[short])
        b = harness.binding("binding-" + short, "default", "id-" + short, selector=short)
        objs += [p, ident, b, harness.assigned(p, ident, binding_obj=b)]
    objs.append(harness.pod("pod-c", "default", POD_IPS["podC"]))
    return objs


@pytest.fixture(scope="module")
def lab():
    require("network namespaces",
            programs=("ip", "iptables-%s" % BACKEND, "iptables-%s-save" % BACKEND,
                      "iptables-%s-restore" % BACKEND, "conntrack", "curl"),
            files=(harness.NMI_BINARY, harness.NMI_EMULATOR))
    lab = Lab(BACKEND, BACKEND).up()
    try:
        lab.start_emulator([{"client_id": cid} for cid in UA.values()])
        yield lab
    finally:
        lab.down()


class NmiHolder:
    """The module's nmi: tests may stop or kill it; the `nmi` fixture brings it back."""

    def __init__(self, lab):
        self.lab = lab
        self.nmi = None

    def ensure(self):
        if self.nmi is None:
            self.nmi = NodeNmi(self.lab, identity_objects())
        if not self.nmi.running():
            self.nmi.start()
        return self.nmi

    def stop(self):
        """Stops the module's nmi (SIGTERM) if it runs; returns it (for cleanup())."""
        if self.nmi is None:
            self.nmi = NodeNmi(self.lab, identity_objects())
        if self.nmi.running():
            self.nmi.stop()
        return self.nmi

    def close(self):
        if self.nmi is not None:
            self.nmi.stop(check=False)


@pytest.fixture(scope="module")
def holder(lab):
    h = NmiHolder(lab)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def nmi(holder):
    return holder.ensure()
