"""`make demo`'s script (scripts/demo) end to end, through the scripts/devenv command line: up,
kubectl, exec in a pod, host, env, down. Its output must show the pod's and the host's tokens
carrying the demo pod's identity, a clear error for the pod without one, and `down` must leave
no namespace, process or directory behind.

ctest sets NMI_BINARY and NMI_EMULATOR (scripts/devenv uses them).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import devenv  # noqa: E402


def claims_blocks(out):
    """The JSON objects printed after each 'claims of ...' line."""
    blocks = []
    for m in re.finditer(r"^claims of [^\n]*\n(\{.*?\n\})", out, re.S | re.M):
        blocks.append(json.loads(m.group(1)))
    return blocks


def test_demo_shows_whose_identity_each_token_carries_and_leaves_nothing():
    d = tempfile.mkdtemp(prefix="nmi-e2e-demo-%d-" % os.getpid())
    os.rmdir(d)
    prefix = "nmi-e2e-%d-demo-" % os.getpid()
    env = dict(os.environ, NMI_DEVENV_DIR=d, NMI_DEVENV_PREFIX=prefix, KEEP="0")
    r = subprocess.run([os.path.join(REPO, "scripts", "demo")], env=env, capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    kv = devenv.ua("kv-int")
    pod_claims, host_claims = claims_blocks(out)
    assert pod_claims["appid"] == kv["client_id"], pod_claims
    assert pod_claims["xms_mirid"] == kv["resource_id"], pod_claims
    assert pod_claims["aud"] == "https://management.azure.com/", pod_claims
    assert host_claims["appid"] == kv["client_id"], host_claims
    assert host_claims["aud"] == "https://vault.azure.net", host_claims
    assert "No identity is assigned to this pod" in out and "(HTTP 404 in" in out, out
    # nmi saw the pod's own address (interception keeps it), and the host call from loopback.
    assert re.search(r"status=200 .*route=token remote=10\.244\.0\.11 ", out), out
    assert re.search(r"status=200 .*route=host_token remote=127\.0\.0\.1 ", out), out
    # No whole token is ever printed.
    assert not re.search(r"eyJ[\w-]{20,}\.[\w-]{20,}\.", out), "a token was printed"
    # down left nothing behind.
    up = re.search(r"devenv: up in ([\d.]+) s", out)
    print("MEASURE demo devenv_up = %s s" % up.group(1), flush=True)
    assert "nmi-e2e-%d-demo-node" % os.getpid() in out, out  # the demo's namespaces were ours
    assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    assert not os.path.exists(d)
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert d not in procs, [line for line in procs.splitlines() if d in line]
