"""The 250-pod smoke version of bench/kube_scale.py, against the shared API server: 250 pods on
nmi's node (each with an Assigned AzureAssignedIdentity) and 300 elsewhere, 50 identities and
bindings. nmi becomes ready, holds exactly the node's pods, and serves the 250th pod its identity.
No timing assertions (the benchmark reports the figures).

ctest sets KUBE_TESTENV_DIR, NMI_KUBE_TESTENV, NMI_BINARY and NMI_EMULATOR.
"""
import os
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))

from nmi_pytest import harness  # noqa: E402
import kube_scale  # noqa: E402

FILE_INDEX = 24  # addresses 127.0.24.x, ports 29600-29999
TESTENV = os.environ.get("NMI_KUBE_TESTENV", os.path.join(REPO, "scripts", "kube-testenv"))
ENV_DIR = os.environ.get("KUBE_TESTENV_DIR", "/tmp/nmi-kube-testenv")
NODE_PODS, OTHER_PODS, IDENTITIES = 250, 300, 50


def client_id(i):
    return harness.client_id_for("kube-scale-smoke-%d" % i)


def test_250_pods_on_the_node_among_550(tmp_path):
    run = uuid.uuid4().hex[:6]
    namespaces = ["nmi-scale-%s-%d" % (run, i) for i in range(2)]
    subprocess.run([TESTENV, "ns", "--dir", ENV_DIR] + namespaces, check=True)
    cluster = kube_scale.Cluster(os.path.join(ENV_DIR, "admin.kubeconfig"), str(tmp_path))
    node = "scale-node-" + run
    # Pod addresses: only the last node pod's is one the client can send from.
    last_ip, other_ip = "127.0.%d.10" % FILE_INDEX, "127.0.%d.11" % FILE_INDEX
    node_ips = ["10.24.%d.%d" % (i // 200, i % 200 + 1) for i in range(NODE_PODS - 1)] + [last_ip]
    objects = kube_scale.plan(namespaces, node, node_ips, OTHER_PODS, IDENTITIES, IDENTITIES,
                              client_id, other_ips=False)
    # A pod of another node with an address the client can send from.
    objects.append(("pods", namespaces[0],
                    kube_scale.pod_obj(namespaces[0], "elsewhere", "other-" + node, "sel-0"),
                    other_ip))
    took = kube_scale.populate(cluster, objects, workers=8)
    print("\ncreated %d objects (%d requests) in %.1f s" % (len(objects), cluster.requests, took))
    last_pod = "node-pod-%d" % (NODE_PODS - 1)
    expected = next(o[2]["spec"]["azureIdentityRef"]["spec"]["clientID"] for o in objects
                    if o[0] == "azureassignedidentities" and o[2]["spec"]["pod"] == last_pod)

    emu = harness.start_emulator([{"client_id": client_id(i), "resource_id": ""}
                                  for i in range(IDENTITIES)])
    n = kube_scale.ScaleNmi(harness, emu, node, os.path.join(ENV_DIR, "admin.kubeconfig"),
                            file_index=FILE_INDEX, extra_args=["--pod-wait-timeout-ms=300"])
    try:
        n.start(ready_timeout=60)
        synced_ms, counts = kube_scale.synced_counts(n.log())
        assert counts["pods"] == NODE_PODS, n.log()
        assert counts["azureassignedidentities"] == NODE_PODS, n.log()
        assert counts["azureidentities"] >= IDENTITIES, counts
        assert counts["azureidentitybindings"] >= IDENTITIES, counts
        assert n.metric_value("nmi_pod_cache_pods") == NODE_PODS
        r = n.token(last_ip, resource="https://vault.azure.net", timeout=30)
        harness.assert_token(r, "https://vault.azure.net", expected)
        harness.assert_json_error(n.token(other_ip, resource="https://vault.azure.net"), 500,
                                  "No pod on this node has the request's source address")
        mem = kube_scale.proc_status(n.proc.pid)
        print("caches synced in %s ms: %s; VmRSS %.1f MiB, VmHWM %.1f MiB"
              % (synced_ms, counts, mem["VmRSS"] / 1024, mem["VmHWM"] / 1024))
    finally:
        n.stop()
        emu.stop()
        emu.remove_workdir()
