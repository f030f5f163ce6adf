"""The real node of tests/node (tests/lib/nodeenv.py): one for the session, in namespaces named
nmi-rn-<pid>-*, with nmi's image ($NMI_IMAGE, from `make image`) imported into its containerd.
Its teardown checks that `down` left the host as it found it (host_snapshot before and after).
"""
import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

import devenv  # noqa: E402
import nodeenv  # noqa: E402
from nmi_pytest.plugin import require  # noqa: E402

pytest_plugins = ["nmi_pytest.plugin"]

UA = {name: devenv.ua("node-" + name) for name in ("std", "mgd", "host")}


def image_ref(archive):
    """The ref annotation of an OCI archive (what `ctr images import` tags it as)."""
    r = devenv._run(["tar", "-xOf", archive, "index.json"])
    return json.loads(r.stdout)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]


@pytest.fixture(scope="session")
def node():
    require("the real node", programs=("ip", "nsenter", "iptables-nft", "iptables-nft-save",
                                       "iptables-legacy", "iptables-legacy-save", "runc", "tar"),
            env_files=("NMI_EMULATOR", "NMI_IMAGE"))
    prefix = "nmi-rn-%d-" % os.getpid()
    before = nodeenv.host_snapshot(prefix)
    d = tempfile.mkdtemp(prefix="nmi-rn-%d-" % os.getpid())
    os.rmdir(d)
    env = nodeenv.NodeEnv(d, prefix=prefix, emulator_binary=os.environ["NMI_EMULATOR"],
                          config={"pods": [], "user_assigned": list(UA.values()), "apps": []},
                          iptables=os.environ.get("NMI_NODE_IPTABLES", "nft"))
    up = env.up()
    print("MEASURE node_up = %.1f s (%s)" % (up, env.state["up_times"]), flush=True)
    try:
        archive = os.environ["NMI_IMAGE"]
        env.import_image(archive)
        env.state["nmi_image"] = image_ref(archive)
        yield env
    finally:
        env.down()
        after = nodeenv.host_snapshot(prefix)
        diff = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert not diff, "nodeenv down left the host changed: %s" % json.dumps(diff)[:4000]


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
