"""Smoke tests of nmi's Kubernetes identity source against the real API server (kube-testenv).

nmi runs with --kubeconfig (the test environment's admin) or in-cluster (a TokenRequest token of a
ServiceAccount bound to exactly the original NMI's ClusterRole), watches the objects this file
creates through the API, and answers token requests sent from the pods' addresses (127.0.20.x,
bound as the source address, as tests/integration/harness.py does).

ctest sets KUBE_TESTENV_DIR, NMI_KUBE_TESTENV, NMI_BINARY and NMI_EMULATOR.
"""
import base64
import http.client
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402
from harness import client_id_for  # noqa: E402

FILE_INDEX = 20  # pod addresses 127.0.20.x, ports 28000-28399
TESTENV = os.environ.get("NMI_KUBE_TESTENV", os.path.join(REPO, "scripts", "kube-testenv"))
API = "aadpodidentity.k8s.io/v1"
CRD_BASE = "/apis/aadpodidentity.k8s.io/v1/namespaces"
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


# ---------------------------------------------------------------------------------------------
# The API server, through the admin client certificate (no kubectl in the timed paths)
# ---------------------------------------------------------------------------------------------

def load_testenv_env():
    out = subprocess.run([TESTENV, "env"], check=True, capture_output=True, text=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        m = re.fullmatch(r"export (\w+)=(.*)", line)
        assert m, line
        value = m.group(2).replace("$PATH", os.environ.get("PATH", ""))
        env[m.group(1)] = value.strip("'\"")
    return env


class KubeApi:
    """HTTPS to the API server with the admin's client certificate, one kept-alive connection."""

    def __init__(self, kubeconfig, workdir):
        view = json.loads(subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "config", "view", "--raw", "-o", "json"],
            check=True, capture_output=True, text=True, env=ENV).stdout)
        cluster = view["clusters"][0]["cluster"]
        user = view["users"][0]["user"]
        m = re.fullmatch(r"https://([^:/]+):(\d+)/?", cluster["server"])
        self.host, self.port = m.group(1), int(m.group(2))
        self.ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        paths = {}
        for name, data in (("ca.crt", self.ca_pem),
                           ("admin.crt", base64.b64decode(user["client-certificate-data"])),
                           ("admin.key", base64.b64decode(user["client-key-data"]))):
            paths[name] = os.path.join(workdir, name)
            with open(paths[name], "wb") as f:
                f.write(data)
        self.ctx = ssl.create_default_context(cafile=paths["ca.crt"])
        self.ctx.load_cert_chain(paths["admin.crt"], paths["admin.key"])
        self.conn = None
        self.lock = threading.Lock()

    def request(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        with self.lock:
            for attempt in range(2):
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                            timeout=30)
                try:
                    self.conn.request(method, path, body=data, headers=headers)
                    resp = self.conn.getresponse()
                    payload = resp.read()
                    break
                except (http.client.HTTPException, OSError):
                    self.conn.close()
                    self.conn = None
                    if attempt == 1:
                        raise
        if ok and resp.status not in ok:
            raise AssertionError("%s %s: %d %s" % (method, path, resp.status, payload[:500]))
        return resp.status, (json.loads(payload) if payload else None)

    def create(self, path, obj):
        return self.request("POST", path, obj)[1]


ENV = load_testenv_env()


@pytest.fixture(scope="module")
def api():
    work = tempfile.mkdtemp(prefix="nmi-kube-smoke-")
    try:
        kubeconfig = os.path.join(os.environ.get("KUBE_TESTENV_DIR", "/tmp/nmi-kube-testenv"),
                                  "admin.kubeconfig")
        a = KubeApi(kubeconfig, work)
        a.kubeconfig = kubeconfig
        a.workdir = work
        yield a
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def ns(request):
    name = "nmi-smoke-%s-%s" % (re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:30],
                                uuid.uuid4().hex[:6])
    subprocess.run([TESTENV, "ns", name], check=True, env=ENV)
    return name


@pytest.fixture(scope="module")
def emulator():
    ua = [{"client_id": ua_client_id(n), "resource_id": ua_resource_id(n)} for n in UA]
    apps = [{"tenant_id": harness.TENANT, "client_id": SP_ID, "secret": SP_SECRET}]
    emu = harness.start_emulator(ua, apps)
    try:
        yield emu
    finally:
        emu.stop()
        emu.remove_workdir()


ips = harness.PodIps(FILE_INDEX)


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------

def create_pod(api, ns, name, node, ip, selector):
    api.create("/api/v1/namespaces/%s/pods" % ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"aadpodidbinding": selector}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]},
    })
    api.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, name),
                {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
                content_type="application/merge-patch+json")


def delete_pod(api, ns, name, grace=0):
    """Deletes a pod. With a grace period the API server only sets deletionTimestamp (now + grace)
    and deletionGracePeriodSeconds: there is no kubelet here to finish the deletion, so the pod
    stays, Running and being deleted. Returns the API server's answer (the pod, or a Status)."""
    return api.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % (ns, name),
                       {"apiVersion": "v1", "kind": "DeleteOptions",
                        "gracePeriodSeconds": grace})[1]


def identity_obj(ns, name, client_id, type=0, secret=None, ad_endpoint=""):
    spec = {"type": type, "clientID": client_id}
    if type == 0:
        spec["resourceID"] = ""
    if secret:
        spec.update({"clientPassword": {"name": secret, "namespace": ns},
                     "tenantID": harness.TENANT, "adEndpoint": ad_endpoint})
    return {"apiVersion": API, "kind": "AzureIdentity",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def binding_obj(ns, name, identity, selector):
    return {"apiVersion": API, "kind": "AzureIdentityBinding",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"azureIdentity": identity, "selector": selector}}


def create_assignment(api, ns, pod, node, identity, binding, status):
    """An identity, its binding and the AzureAssignedIdentity MIC would write for `pod`."""
    api.create("%s/%s/azureidentities" % (CRD_BASE, ns), identity)
    api.create("%s/%s/azureidentitybindings" % (CRD_BASE, ns), binding)
    return create_aai(api, ns, pod, node, identity, binding, status)


def create_aai(api, ns, pod, node, identity, binding, status):
    name = "%s-%s-%s" % (pod, ns, identity["metadata"]["name"])
    api.create("%s/%s/azureassignedidentities" % (CRD_BASE, ns), {
        "apiVersion": API, "kind": "AzureAssignedIdentity",
        "metadata": {"name": name, "namespace": ns, "labels": {"nodename": node}},
        "spec": {"azureIdentityRef": identity, "azureBindingRef": binding, "pod": pod,
                 "podNamespace": ns, "nodename": node, "replicas": 1},
        "status": {"status": status, "availableReplicas": 1},
    })
    return name


def set_aai_status(api, ns, name, status):
    """As MIC does: a JSON patch of /status/status on the main resource."""
    api.request("PATCH", "%s/%s/azureassignedidentities/%s" % (CRD_BASE, ns, name),
                [{"op": "replace", "path": "/status/status", "value": status}],
                content_type="application/json-patch+json")


# ---------------------------------------------------------------------------------------------
# nmi against the API server
# ---------------------------------------------------------------------------------------------

class KubeNmi(harness.Nmi):
    """harness.Nmi with the Kubernetes identity source instead of --identity-file."""

    def __init__(self, emulator, node, kube_args, env=None, extra_args=()):
        super().__init__(emulator, [], FILE_INDEX, extra_args=list(extra_args), env=env, node=node)
        self.kube_args = list(kube_args)

    def argv(self):
        args = super().argv()
        i = args.index("--identity-file")
        del args[i:i + 2]
        return args + self.kube_args


def start_nmi(emulator, node, kube_args, env=None, extra_args=()):
    n = KubeNmi(emulator, node, kube_args, env=env,
                extra_args=["--pod-wait-timeout-ms=%d" % POD_WAIT_MS] + list(extra_args))
    n.start(ready_timeout=30.0)
    return n


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


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
        create_pod(api, ns, pod, node, ip, "sel-" + tag)
        identity = identity_obj(ns, "id-" + tag, ua_client_id(tag))
        binding = binding_obj(ns, "bind-" + tag, "id-" + tag, "sel-" + tag)
        aai = create_assignment(api, ns, pod, node, identity, binding, "Created")
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
            wait_for(lambda: (n.metric_value("nmi_requests_waiting") or 0.0) > waiting_before,
                     what="the request to wait")
            time.sleep(0.05)
            assert "resp" not in out, out
            sent = time.monotonic()
            set_aai_status(api, ns, aai, "Assigned")
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
        delete_pod(api, ns, pod_a)
        wait_for(lambda: n.metric_value("nmi_pod_cache_pods") == 4.0, what="the deletion")
        r = n.token(ip_a, resource=RESOURCE)
        harness.assert_json_error(r, 500, "No pod on this node has the request's source address")
        assert r.elapsed >= POD_WAIT_MS / 1000 * 0.9, r.elapsed

        # Pod D takes A's address with another identity: D's identity, never A's.
        create_pod(api, ns, "pod-d", node, ip_a, "sel-d")
        create_assignment(api, ns, "pod-d", node, identity_obj(ns, "id-d", ua_client_id("d")),
                          binding_obj(ns, "bind-d", "id-d", "sel-d"), "Assigned")
        # Until nmi has seen D's assignment its address gets a clear error (no identity yet),
        # never A's token; once it has, D's.
        deadline = time.monotonic() + 10
        while True:
            r = n.token(ip_a, resource=RESOURCE)
            if r.status == 200 or time.monotonic() > deadline:
                break
            assert r.status in (404, 500), r
            time.sleep(0.02)
        assert client_id_of(r) == ua_client_id("d")
        harness.assert_token(r, RESOURCE, ua_client_id("d"))

        # A pod with no identity at all: a fast, clear answer, never another pod's token.
        ip_none = ips.next()
        create_pod(api, ns, "pod-none", node, ip_none, "sel-none")
        wait_for(lambda: n.metric_value("nmi_pod_cache_pods") == 6.0, what="pod-none")
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
    identity_a = identity_obj(ns, "id-a", ua_client_id("a"))
    binding_a = binding_obj(ns, "bind-a", "id-a", "sel-a")
    ip_short, ip_long = ips.next(), ips.next()
    create_pod(api, ns, "pod-short", node, ip_short, "sel-a")
    create_assignment(api, ns, "pod-short", node, identity_a, binding_a, "Assigned")
    create_pod(api, ns, "pod-long", node, ip_long, "sel-a")
    create_aai(api, ns, "pod-long", node, identity_a, binding_a, "Assigned")
    sentinels = [0]

    def seen_by_nmi(pods_before):
        """Creates a pod after the change just made and waits until nmi holds it: the pods watch
        delivers events in order, so nmi has then applied the change too."""
        sentinels[0] += 1
        create_pod(api, ns, "sentinel-%d" % sentinels[0], node, ips.next(), "none")
        wait_for(lambda: n.metric_value("nmi_pod_cache_pods") == pods_before + 1,
                 what="nmi to see the change")
        return pods_before + 1

    n = start_nmi(emulator, node, ["--kubeconfig", api.kubeconfig])
    try:
        pods = n.metric_value("nmi_pod_cache_pods")
        assert pods == 2.0
        assert client_id_of(n.token(ip_short, resource=RESOURCE)) == ua_client_id("a")

        # 1. Deleted with a grace period of 6 s, nobody else at its address: served inside the
        #    window, refused after it.
        grace = 6
        deleted = delete_pod(api, ns, "pod-short", grace=grace)
        deadline = rfc3339_epoch(deleted["metadata"]["deletionTimestamp"])
        pods = seen_by_nmi(pods)
        assert time.time() < deadline - 2, "the API server and nmi were too slow for this test"
        r = n.token(ip_short, resource=RESOURCE)
        assert client_id_of(r) == ua_client_id("a"), r
        served_at = time.time()
        # The window ends 1 s before deletionTimestamp (the clock allowance).
        time.sleep(max(0.0, deadline - 1.0 - time.time()) + 0.05)
        r = n.token(ip_short, resource=RESOURCE)
        harness.assert_json_error(r, 500, "No pod on this node has the request's source address")
        assert re.search(r"no pod with ip %s may be served: %s/pod-short \(being deleted; its "
                         r"grace period ended at " % (re.escape(ip_short), ns), n.log()), \
            n.log()[-3000:]
        print("\ndeleting pod: served %.2f s before its deletionTimestamp, refused from %.2f s "
              "before it" % (deadline - served_at, deadline - (time.time() - r.elapsed)))

        # 2. Deleted with a long grace period: served while alone at its address ...
        deleted = delete_pod(api, ns, "pod-long", grace=300)
        assert deleted["metadata"]["deletionTimestamp"]
        pods = seen_by_nmi(pods)
        assert client_id_of(n.token(ip_long, resource=RESOURCE)) == ua_client_id("a")
        # ... until another pod's status shows the address (a new pod the CNI gave it to).
        create_pod(api, ns, "pod-b", node, ip_long, "sel-b")
        create_assignment(api, ns, "pod-b", node, identity_obj(ns, "id-b", ua_client_id("b")),
                          binding_obj(ns, "bind-b", "id-b", "sel-b"), "Assigned")
        wait_for(lambda: n.metric_value("nmi_pod_cache_pods") == pods + 1, what="pod-b")
        pods += 1
        assert client_id_of(n.token(ip_long, resource=RESOURCE)) == ua_client_id("b")
        # The new pod goes away again: the old one does not get its address back, although its
        # grace window is still open.
        delete_pod(api, ns, "pod-b")
        wait_for(lambda: n.metric_value("nmi_pod_cache_pods") == pods - 1, what="pod-b's deletion")
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
    api.create("/api/v1/namespaces/%s/serviceaccounts" % ns,
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nmi"}})
    api.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": role},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            {"apiGroups": ["aadpodidentity.k8s.io"],
             "resources": ["azureidentitybindings", "azureidentities",
                           "azurepodidentityexceptions", "azureassignedidentities"],
             "verbs": ["get", "list", "watch"]},
        ]})
    api.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "nmi", "namespace": ns}]})
    token = subprocess.run(["kubectl", "create", "token", "nmi", "-n", ns, "--duration=1h"],
                           check=True, capture_output=True, text=True, env=ENV).stdout.strip()
    sa_dir = tempfile.mkdtemp(prefix="nmi-kube-sa-")
    with open(os.path.join(sa_dir, "token"), "w") as f:
        f.write(token)
    with open(os.path.join(sa_dir, "ca.crt"), "wb") as f:
        f.write(api.ca_pem)

    # A user-assigned identity, and a service principal with its secret.
    ip_mi, ip_sp = ips.next(), ips.next()
    create_pod(api, ns, "pod-mi", node, ip_mi, "sel-mi")
    create_assignment(api, ns, "pod-mi", node, identity_obj(ns, "id-mi", ua_client_id("rbac")),
                      binding_obj(ns, "bind-mi", "id-mi", "sel-mi"), "Assigned")
    api.create("/api/v1/namespaces/%s/secrets" % ns, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sp-secret"},
        "data": {"clientSecret": base64.b64encode(SP_SECRET.encode()).decode()}})
    create_pod(api, ns, "pod-sp", node, ip_sp, "sel-sp")
    create_assignment(api, ns, "pod-sp", node,
                      identity_obj(ns, "id-sp", SP_ID, type=1, secret="sp-secret",
                                   ad_endpoint=emulator.aad_url + "/"),
                      binding_obj(ns, "bind-sp", "id-sp", "sel-sp"), "Assigned")

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
        api.request("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/" + role)
        api.request("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles/" + role)


def test_missing_rbac_is_named_in_readyz(api, ns, emulator):
    """A token without the aadpodidentity verbs: nmi stays unready and /readyz says why."""
    node = "smoke-node-" + uuid.uuid4().hex[:8]
    role = "nmi-smoke-pods-only-" + uuid.uuid4().hex[:8]
    api.create("/api/v1/namespaces/%s/serviceaccounts" % ns,
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nmi"}})
    api.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": role},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]})
    api.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "nmi", "namespace": ns}]})
    token = subprocess.run(["kubectl", "create", "token", "nmi", "-n", ns, "--duration=1h"],
                           check=True, capture_output=True, text=True, env=ENV).stdout.strip()
    kubeconfig = os.path.join(api.workdir, "pods-only-%s.kubeconfig" % ns)
    with open(os.path.join(api.workdir, "token-" + ns), "w") as f:
        f.write(token)
    with open(kubeconfig, "w") as f:
        f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                "clusters:\n- name: k\n  cluster:\n    server: https://%s:%d\n"
                "    certificate-authority: ca.crt\n"
                "users:\n- name: u\n  user:\n    tokenFile: token-%s\n"
                "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"
                % (api.host, api.port, ns))
    n = KubeNmi(emulator, node, ["--kubeconfig", kubeconfig])
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
        wait_for(lambda: reason() is not None, timeout=15,
                 what="a 403 in /readyz, with the pods cache synced")
        text = reason().text()
        assert "azureidentitybindings" in text, text
        assert "is forbidden" in text, text
        assert "pods" not in text.split(";")[0], text  # the pods cache synced
        assert re.search(r"the API server refused to list azure\w+: .*403 Forbidden", n.log()), \
            n.log()
    finally:
        n.stop()
        api.request("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/" + role)
        api.request("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles/" + role)


def test_node_is_required(emulator):
    env = dict(os.environ)
    env.pop("NODE_NAME", None)
    argv = [harness.NMI_BINARY, "--kubeconfig", "/nonexistent"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=10)
    assert r.returncode != 0
    lines = [line for line in (r.stdout + r.stderr).splitlines() if "error" in line]
    assert len(lines) == 1, r.stdout + r.stderr
    assert "give --node" in lines[0], lines
