"""Smoke tests of nmi's Kubernetes identity source against the real API server (kube-testenv).

nmi runs with --kubeconfig (the test environment's admin) or in-cluster (a TokenRequest token of a
ServiceAccount bound to exactly the original NMI's ClusterRole), watches the objects this file
creates through the API, and answers token requests sent from the pods' addresses (127.0.20.x,
bound as the source address, as nmi_pytest.harness does).

ctest sets KUBE_TESTENV_DIR, NMI_KUBE_TESTENV, NMI_BINARY and NMI_EMULATOR.
"""
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from nmi_pytest import harness, kube, objects
from nmi_pytest.harness import client_id_for
from nmi_pytest.waits import wait_until

FILE_INDEX = 20  # pod addresses 127.0.20.x, ports 28000-28399
NAMESPACE_PREFIX = "nmi-smoke"
RESOURCE = "https://vault.azure.net"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-kube"
UA = ["a", "b", "c", "d", "e", "f", "g", "rbac"]
SP_ID = client_id_for("kube-sp")
SP_SECRET = "kube-sp-s3cret"
POD_WAIT_MS = 400


def ua_client_id(name):
    return client_id_for("kube-ua-" + name)


def ua_resource_id(name):
    return SUB + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-" + name


@pytest.fixture(scope="module")
def emulator_identities():
    return {"user_assigned": [{"client_id": ua_client_id(n), "resource_id": ua_resource_id(n)}
                              for n in UA],
            "apps": [{"tenant_id": harness.TENANT, "client_id": SP_ID, "secret": SP_SECRET}]}


ips = harness.PodIps(FILE_INDEX)


def start_nmi(emulator, node, kube_args, env=None):
    return kube.start_nmi(emulator, node, kube_args, FILE_INDEX, env=env, pod_wait_ms=POD_WAIT_MS)


def token_in_background(n, ip):
    out = {}

    def run():
        try:
            out["resp"] = n.token(ip, resource=RESOURCE, timeout=60)
        finally:
            out["at"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    return t, out


def client_id_of(resp):
    assert resp.status == 200, resp
    return resp.json()["client_id"]


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

def test_assigned_to_200_latency_and_ip_reuse(api, ns, emulator):
    node = "smoke-node-" + uuid.uuid4().hex[:8]
    samples = ["a", "b", "c", "e", "f"]
    pods = {}
    for tag in samples:
        ip = ips.next()
        pod = "pod-" + tag
        api.create_pod(ns, pod, node, ip, {"aadpodidbinding": "sel-" + tag})
        identity = objects.azure_identity("id-" + tag, ns, ua_client_id(tag))
        binding = objects.binding("bind-" + tag, ns, "id-" + tag, "sel-" + tag)
        aai = api.create_assignment(ns, pod, node, identity, binding, "Created")
        pods[tag] = (pod, ip, aai)

    n = start_nmi(emulator, node, ["--kubeconfig", api.kubeconfig])
    try:
        assert re.search(r"identity caches synced in \d+ ms: pods=5 azureassignedidentities=5 ",
                         n.log()), n.log()
        assert n.metric_value("nmi_pod_cache_pods") == 5.0

        # Each pod's request waits while its identity is Created; the Assigned patch answers it.
        from_sent, from_ack = [], []
        for tag in samples:
            pod, ip, aai = pods[tag]
            waiting_before = n.metric_value("nmi_requests_waiting") or 0.0
            t, out = token_in_background(n, ip)
            wait_until(lambda: (n.metric_value("nmi_requests_waiting") or 0.0) > waiting_before,
                       message="the request to wait")
            # A negative check: for 50 ms while the identity is Created, nothing answers it.
            time.sleep(0.05)
            assert "resp" not in out, out
            sent = time.monotonic()
            api.set_aai_status(ns, aai, "Assigned")
            acked = time.monotonic()
            t.join(30)
            assert client_id_of(out["resp"]) == ua_client_id(tag)
            from_sent.append((out["at"] - sent) * 1000)
            from_ack.append(max(0.0, out["at"] - acked) * 1000)
        print("\nAssigned->200 latency, ms from sending the status patch: %s (median %.1f); "
              "after the API server acknowledged it: %s (median %.1f)"
              % (", ".join("%.1f" % v for v in from_sent), statistics.median(from_sent),
                 ", ".join("%.1f" % v for v in from_ack), statistics.median(from_ack)))
        assert statistics.median(from_sent) < 1000, from_sent

        # IP reuse: pod A deleted (grace 0); once nmi has seen it, its address gets no token.
        pod_a, ip_a, _ = pods["a"]
        api.delete_pod(ns, pod_a)
        wait_until(lambda: n.metric_value("nmi_pod_cache_pods") == 4.0, message="the deletion")
        r = n.token(ip_a, resource=RESOURCE)
        harness.assert_json_error(r, 500, "No pod on this node has the request's source address")
        assert r.elapsed >= POD_WAIT_MS / 1000 * 0.9, r.elapsed

        # Pod D takes A's address with another identity: D's identity, never A's.
        api.create_pod(ns, "pod-d", node, ip_a, {"aadpodidbinding": "sel-d"})
        api.create_assignment(ns, "pod-d", node,
                              objects.azure_identity("id-d", ns, ua_client_id("d")),
                              objects.binding("bind-d", ns, "id-d", "sel-d"), "Assigned")
        # Until nmi has seen D's assignment its address gets a clear error (no identity yet),
        # never A's token; once it has, D's.
        def answered():
            r = n.token(ip_a, resource=RESOURCE)
            assert r.status in (200, 404, 500), r
            return r if r.status == 200 else None
        r = wait_until(answered, timeout=10, message="pod D's identity at A's address")
        assert client_id_of(r) == ua_client_id("d")
        harness.assert_token(r, RESOURCE, ua_client_id("d"))

        # A pod with no identity at all: a fast, clear answer, never another pod's token.
        ip_none = ips.next()
        api.create_pod(ns, "pod-none", node, ip_none, {"aadpodidbinding": "sel-none"})
        wait_until(lambda: n.metric_value("nmi_pod_cache_pods") == 6.0, message="pod-none")
        r = n.token(ip_none, resource=RESOURCE, timeout=120)
        assert r.status == 404, r
        assert "kubernetes_api_operations_errors_count" in n.metrics()
    finally:
        n.stop()


def rfc3339_epoch(text):
    """A Kubernetes timestamp ("2026-01-02T03:04:05Z") as Unix seconds."""
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_deleting_pod_grace_window_and_claimed_address(api, ns, emulator):
    """Issue 10, seam 4: a pod being deleted is served only inside its deletion grace window
    (deletionTimestamp, less nmi's 1 s clock allowance), and never again once another pod has
    claimed its address, even after that pod is gone."""
    node = "smoke-node-" + uuid.uuid4().hex[:8]
    identity_a = objects.azure_identity("id-a", ns, ua_client_id("a"))
    binding_a = objects.binding("bind-a", ns, "id-a", "sel-a")
    ip_short, ip_long = ips.next(), ips.next()
    api.create_pod(ns, "pod-short", node, ip_short, {"aadpodidbinding": "sel-a"})
    api.create_assignment(ns, "pod-short", node, identity_a, binding_a, "Assigned")
    api.create_pod(ns, "pod-long", node, ip_long, {"aadpodidbinding": "sel-a"})
    api.create_aai(ns, "pod-long", node, identity_a, binding_a, "Assigned")
    sentinels = [0]

    def seen_by_nmi(pods_before):
        """Creates a pod after the change just made and waits until nmi holds it: the pods watch
        delivers events in order, so nmi has then applied the change too."""
        sentinels[0] += 1
        api.create_pod(ns, "sentinel-%d" % sentinels[0], node, ips.next(),
                       {"aadpodidbinding": "none"})
        wait_until(lambda: n.metric_value("nmi_pod_cache_pods") == pods_before + 1,
                   message="nmi to see the change")
        return pods_before + 1

    n = start_nmi(emulator, node, ["--kubeconfig", api.kubeconfig])
    try:
        pods = n.metric_value("nmi_pod_cache_pods")
        assert pods == 2.0
        assert client_id_of(n.token(ip_short, resource=RESOURCE)) == ua_client_id("a")

        # 1. Deleted with a grace period of 6 s, nobody else at its address: served inside the
        #    window, refused after it.
        grace = 6
        deleted = api.delete_pod(ns, "pod-short", grace=grace)
        deadline = rfc3339_epoch(deleted["metadata"]["deletionTimestamp"])
        pods = seen_by_nmi(pods)
        assert time.time() < deadline - 2, "the API server and nmi were too slow for this test"
        r = n.token(ip_short, resource=RESOURCE)
        assert client_id_of(r) == ua_client_id("a"), r
        served_at = time.time()
        # The window ends 1 s before deletionTimestamp (the clock allowance): served until then
        # (never a token asked for after it), refused from then on.
        def refused():
            sent = time.time()
            r = n.token(ip_short, resource=RESOURCE)
            if r.status != 200:
                return r
            assert sent < deadline - 1.0 + 0.05, \
                "served %.2f s after the window ended" % (sent - deadline + 1.0)
            assert client_id_of(r) == ua_client_id("a"), r
            return None
        r = wait_until(refused, timeout=grace + 5, interval=0.05,
                       message="the end of pod-short's grace window")
        assert time.time() >= deadline - 1.0 - 0.2, "refused %.2f s before the window ended" % (
            deadline - 1.0 - time.time())
        harness.assert_json_error(r, 500, "No pod on this node has the request's source address")
        assert re.search(r"no pod with ip %s may be served: %s/pod-short \(being deleted; its "
                         r"grace period ended at " % (re.escape(ip_short), ns), n.log()), \
            n.log()[-3000:]
        print("\ndeleting pod: served %.2f s before its deletionTimestamp, refused from %.2f s "
              "before it" % (deadline - served_at, deadline - (time.time() - r.elapsed)))

        # 2. Deleted with a long grace period: served while alone at its address ...
        deleted = api.delete_pod(ns, "pod-long", grace=300)
        assert deleted["metadata"]["deletionTimestamp"]
        pods = seen_by_nmi(pods)
        assert client_id_of(n.token(ip_long, resource=RESOURCE)) == ua_client_id("a")
        # ... until another pod's status shows the address (a new pod the CNI gave it to).
        api.create_pod(ns, "pod-b", node, ip_long, {"aadpodidbinding": "sel-b"})
        api.create_assignment(ns, "pod-b", node,
                              objects.azure_identity("id-b", ns, ua_client_id("b")),
                              objects.binding("bind-b", ns, "id-b", "sel-b"), "Assigned")
        wait_until(lambda: n.metric_value("nmi_pod_cache_pods") == pods + 1, message="pod-b")
        pods += 1
        assert client_id_of(n.token(ip_long, resource=RESOURCE)) == ua_client_id("b")
        # The new pod goes away again: the old one does not get its address back, although its
        # grace window is still open.
        api.delete_pod(ns, "pod-b")
        wait_until(lambda: n.metric_value("nmi_pod_cache_pods") == pods - 1,
                   message="pod-b's deletion")
        r = n.token(ip_long, resource=RESOURCE)
        harness.assert_json_error(r, 500, "No pod on this node has the request's source address")
        assert re.search(r"%s/pod-long \(being deleted; another pod has claimed the address\)"
                         % ns, n.log()), n.log()[-3000:]
        api_pod = api.request("GET", "/api/v1/namespaces/%s/pods/pod-long" % ns)[1]
        assert api_pod["status"]["phase"] == "Running"
        assert rfc3339_epoch(api_pod["metadata"]["deletionTimestamp"]) > time.time() + 200
    finally:
        n.stop()


def test_rbac_of_the_original_is_enough_in_cluster(api, ns, emulator):
    """nmi in-cluster with a TokenRequest token of a ServiceAccount bound to exactly the verbs of
    aad-pod-identity's NMI ClusterRole: it syncs (no forbidden answer) and serves, including a
    service principal whose secret it reads through the API."""
    node = "smoke-node-" + uuid.uuid4().hex[:8]
    role = "nmi-smoke-" + uuid.uuid4().hex[:8]
    api.grant(ns, role)
    token = kube.service_account_token(ns, "nmi")
    sa_dir = tempfile.mkdtemp(prefix="nmi-kube-sa-")
    with open(os.path.join(sa_dir, "token"), "w") as f:
        f.write(token)
    with open(os.path.join(sa_dir, "ca.crt"), "wb") as f:
        f.write(api.ca_pem)

    # A user-assigned identity, and a service principal with its secret.
    ip_mi, ip_sp = ips.next(), ips.next()
    api.create_pod(ns, "pod-mi", node, ip_mi, {"aadpodidbinding": "sel-mi"})
    api.create_assignment(ns, "pod-mi", node,
                          objects.azure_identity("id-mi", ns, ua_client_id("rbac")),
                          objects.binding("bind-mi", ns, "id-mi", "sel-mi"), "Assigned")
    api.create_secret(ns, objects.secret("sp-secret", ns, data={"clientSecret": SP_SECRET}))
    api.create_pod(ns, "pod-sp", node, ip_sp, {"aadpodidbinding": "sel-sp"})
    api.create_assignment(ns, "pod-sp", node,
                          objects.azure_identity("id-sp", ns, SP_ID, type=1,
                                                 tenant_id=harness.TENANT,
                                                 ad_endpoint=emulator.aad_url + "/",
                                                 secret_ref=(ns, "sp-secret")),
                          objects.binding("bind-sp", ns, "id-sp", "sel-sp"), "Assigned")

    env = {"KUBERNETES_SERVICE_HOST": api.host, "KUBERNETES_SERVICE_PORT": str(api.port),
           "KUBECONFIG": ""}
    n = start_nmi(emulator, node, ["--service-account-dir", sa_dir], env=env)
    try:
        assert n.probe("/readyz").status == 200
        log = n.log()
        assert "in-cluster" in log, log
        assert "403 Forbidden" not in log and "forbidden" not in log.lower(), log
        assert client_id_of(n.token(ip_mi, resource=RESOURCE)) == ua_client_id("rbac")
        assert client_id_of(n.token(ip_sp, resource=RESOURCE)) == SP_ID
        assert n.metric_value("aadpodidentity_kubernetes_api_operations_errors_count",
                              operation_type="get_secret") == 0.0
        assert token not in n.log()
    finally:
        n.stop()
        shutil.rmtree(sa_dir, ignore_errors=True)
        api.revoke(role)


def test_missing_rbac_is_named_in_readyz(api, ns, emulator):
    """A token without the aadpodidentity verbs: nmi stays unready and /readyz says why."""
    node = "smoke-node-" + uuid.uuid4().hex[:8]
    role = "nmi-smoke-pods-only-" + uuid.uuid4().hex[:8]
    api.grant(ns, role, rules=[{"apiGroups": [""], "resources": ["pods"],
                                "verbs": ["get", "list", "watch"]}])
    token = kube.service_account_token(ns, "nmi")
    with open(os.path.join(api.workdir, "token-" + ns), "w") as f:
        f.write(token)
    kubeconfig = kube.token_kubeconfig(os.path.join(api.workdir, "pods-only-%s.kubeconfig" % ns),
                                       "https://%s:%d" % (api.host, api.port), "token-" + ns)
    n = kube.KubeNmi(emulator, node, ["--kubeconfig", kubeconfig], FILE_INDEX)
    n.port, n.probe_port, n.metrics_port = (harness.free_port(FILE_INDEX) for _ in range(3))
    env = dict(os.environ)
    env.pop("NODE_NAME", None)
    log = open(n.log_path, "ab")
    n._log = log
    n.proc = subprocess.Popen(n.argv(), stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    try:
        def reason():
            try:
                r = n.probe("/readyz", timeout=1.0)
            except (OSError, harness.ConnectionClosed):
                return None
            # The refused lists can be reported before the (allowed) pods list has completed on
            # a loaded machine: wait until it has.
            return (r if r.status == 503 and "403" in r.text()
                    and "pods" not in r.text().split(";")[0] else None)
        wait_until(lambda: reason() is not None, timeout=15,
                   message="a 403 in /readyz, with the pods cache synced")
        text = reason().text()
        assert "azureidentitybindings" in text, text
        assert "is forbidden" in text, text
        assert "pods" not in text.split(";")[0], text  # the pods cache synced
        assert re.search(r"the API server refused to list azure\w+: .*403 Forbidden", n.log()), \
            n.log()
    finally:
        n.stop()
        api.revoke(role)


def test_node_is_required(emulator):
    env = dict(os.environ)
    env.pop("NODE_NAME", None)
    argv = [harness.NMI_BINARY, "--kubeconfig", "/nonexistent"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=10)
    assert r.returncode != 0
    lines = [line for line in (r.stdout + r.stderr).splitlines() if "error" in line]
    assert len(lines) == 1, r.stdout + r.stderr
    assert "give --node" in lines[0], lines
