"""nmi's Kubernetes identity source against the real API server: managed mode, exceptions and the
namespaced rules through the API, and faults — a black-holed API server connection, a forced 410
Gone (etcd compaction with the API server's watch cache off, then a restart) and a rotated
service-account token.

Black-holing: nmi runs in a network namespace of this test and reaches the API server (and the
IMDS emulator) through TCP relays whose listening sockets live in that namespace; a DROP rule there
on the relay's port cuts nmi off while the test's own client keeps talking to the API server
directly. Pod addresses are 127.0.23.x (nmi sees the source address the client binds).

ctest sets KUBE_TESTENV_DIR, NMI_KUBE_TESTENV, NMI_BINARY and NMI_EMULATOR.
"""
import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from nmi_pytest import harness, kube, objects
from nmi_pytest.harness import client_id_for
from nmi_pytest.kube import Relay
from nmi_pytest.waits import wait_until

FILE_INDEX = 23  # pod addresses 127.0.23.x, ports 29200-29599
NAMESPACE_PREFIX = "nmi-kf"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-kube-faults"
UA = ["a", "b", "c", "d", "e", "f", "g", "h"]
SYSTEM_ID = client_id_for("kube-faults-system")
SP_ID = client_id_for("kube-faults-sp")
SP_SECRET = "kube-faults-sp-s3cret"
SILENCE_SEC = 3
IDENTITY_NOT_FOUND = "No identity is assigned to this pod for this request"
POD_NOT_FOUND = "No pod on this node has the request's source address"


def ua_client_id(name):
    return client_id_for("kube-faults-ua-" + name)


def ua_resource_id(name):
    return SUB + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-" + name


ips = harness.PodIps(FILE_INDEX)
_resource_n = [0]


def fresh_resource():
    """A resource never asked for before: nmi must resolve the identity and call IMDS again (no
    answer from its token cache)."""
    _resource_n[0] += 1
    return "https://faults.example/%d/%s" % (_resource_n[0], uuid.uuid4().hex[:6])


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

def new_namespace(tag, testenv_dir=None):
    return kube.new_namespace(kube.unique_name(NAMESPACE_PREFIX, tag), testenv_dir)


@pytest.fixture(scope="module")
def emulator_identities():
    return {"user_assigned": [{"client_id": ua_client_id(n), "resource_id": ua_resource_id(n)}
                              for n in UA],
            "apps": [{"tenant_id": harness.TENANT, "client_id": SP_ID, "secret": SP_SECRET}],
            "system_assigned": {"client_id": SYSTEM_ID}}


class PrivateApiServer:
    """An API server of this test alone (kube-testenv up --dir), so that it can be restarted and
    its etcd compacted without disturbing other tests."""

    def __init__(self, workdir, apiserver_args=()):
        # kube-testenv picks free ports, which another suite running beside this one (ctest -j)
        # may take before the server binds them: a server that exits at start gets one more try,
        # on new ports.
        for attempt in (1, 2):
            self.dir = os.path.join(workdir, "testenv-%s" % uuid.uuid4().hex[:6])
            argv = [kube.TESTENV, "up", "--dir", self.dir]
            argv += ["--apiserver-arg=" + a for a in apiserver_args]
            try:
                subprocess.run(argv, check=True, env=kube.testenv_env())
                break
            except subprocess.CalledProcessError:
                self.down()  # whatever `up` started before it failed
                if attempt == 2:
                    raise
        self.kubeconfig = os.path.join(self.dir, "admin.kubeconfig")
        self.api = kube.KubeApi(self.kubeconfig, workdir)
        state = {}
        with open(os.path.join(self.dir, "state")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                state[k] = v
        self.etcd = "http://127.0.0.1:%s" % state["etcd_port"]

    def etcd_call(self, path, body):
        req = urllib.request.Request(self.etcd + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def compact(self):
        """Compacts etcd at its current revision (the v3 HTTP gateway); returns the revision."""
        rev = int(self.etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/").decode(),
                                                  "limit": 1})["header"]["revision"])
        self.etcd_call("/v3/kv/compaction", {"revision": rev, "physical": True})
        return rev

    def restart(self):
        subprocess.run([kube.TESTENV, "restart-apiserver", "--dir", self.dir], check=True,
                       env=kube.testenv_env())

    def down(self):
        subprocess.run([kube.TESTENV, "down", "--dir", self.dir], check=False,
                       env=kube.testenv_env())


# ---------------------------------------------------------------------------------------------
# The black hole (in the namespace of the relays, nmi_pytest.kube.Relay)
# ---------------------------------------------------------------------------------------------

def black_hole(netns, port, on):
    """DROP every packet to or from `port` inside the namespace (both directions: connections in
    progress and new ones)."""
    op = "-I" if on else "-D"
    for match in ("--dport", "--sport"):
        subprocess.run(netns.prefix() + ["iptables", "-w", op, "INPUT", "-p", "tcp", match,
                                         str(port), "-j", "DROP"], check=True)


# ---------------------------------------------------------------------------------------------
# nmi
# ---------------------------------------------------------------------------------------------

def start_nmi(emulator, node, kube_args, **kw):
    return kube.start_nmi(emulator, node, kube_args, FILE_INDEX, **kw)


def start_netns_nmi(emulator, netns, node, kubeconfig, api_port, workdir, extra_args=(),
                    pod_wait_ms=400):
    """nmi inside `netns`, reaching the API server and IMDS through relays in that namespace.
    Returns (nmi, api relay, imds relay)."""
    api_relay = Relay(api_port, netns)
    imds_port = int(emulator.imds_addr.rsplit(":", 1)[1])
    imds_relay = Relay(imds_port, netns)
    kc = kube.relayed_kubeconfig(kubeconfig, api_relay.port,
                                 os.path.join(workdir, "relay-%d.kubeconfig" % api_relay.port))
    n = start_nmi(emulator, node, ["--kubeconfig", kc], netns=netns,
                  imds_endpoint="127.0.0.1:%d" % imds_relay.port, pod_wait_ms=pod_wait_ms,
                  extra_args=["--watch-silence-timeout-sec=%d" % SILENCE_SEC] + list(extra_args))
    return n, api_relay, imds_relay


def client_id_of(resp):
    assert resp.status == 200, resp
    return resp.json()["client_id"]


def token_for(n, ip, **params):
    return n.token(ip, resource=fresh_resource(), timeout=30, **params)


def assert_gets(n, ip, expected, **params):
    r = token_for(n, ip, **params)
    assert r.status == 200, (r, r.body)
    harness.assert_token(r, r.json()["resource"], expected)


def assert_refused(n, ip, status=404, description=IDENTITY_NOT_FOUND, **params):
    r = token_for(n, ip, **params)
    harness.assert_json_error(r, status, description)
    return r


MANAGED_WATCHES = ["azureidentities", "azureidentitybindings", "azurepodidentityexceptions",
                   "pods"]


def silenced(n, offset, resources):
    """Every watch of `resources` has logged its silence (and been closed) since `offset`."""
    seen = set(re.findall(r"watch (\w+): no data for \d+ ms", n.log_since(offset)))
    return set(resources) <= seen


class Converge:
    """Polls named conditions in parallel threads from now on; records when each first held: the
    time a check returns (a request nmi held until it saw the change), or the time it gives."""

    def __init__(self, checks, timeout=30.0):
        self.t0 = time.monotonic()
        self.done = {}
        self.errors = {}
        self.threads = []
        for name, check in checks.items():
            t = threading.Thread(target=self._run, args=(name, check, timeout))
            t.start()
            self.threads.append(t)

    def _run(self, name, check, timeout):
        def held():
            try:
                return check()
            except Exception as e:  # noqa: BLE001 - reported if it never converges
                self.errors[name] = repr(e)
                return None
        try:
            value = wait_until(held, timeout=self.t0 + timeout - time.monotonic(), message=name)
        except AssertionError:
            return  # not in self.done: the caller's assertion names it
        at = value if isinstance(value, float) else time.monotonic()
        self.done[name] = at - self.t0

    def wait(self):
        for t in self.threads:
            t.join()
        return self.done


# Polls ask for one resource: nmi resolves the identity on every request (its token cache is keyed
# by identity), and a pod's cache misses are rate-limited.
POLL_RESOURCE = "https://poll.faults.example/"


def gets(n, ip, expected, **params):
    """The pod at `ip` gets `expected`'s token now (a short wait for the pod at most)."""
    r = n.token(ip, resource=POLL_RESOURCE, timeout=10, **params)
    return r.status == 200 and r.json()["client_id"] == expected


def held_or_gone(n, ip):
    """Once nmi no longer has a pod at `ip`, the time the request was sent: the request is held
    (nmi waits for a pod to claim the address) or refused, never answered with a token."""
    sent = time.monotonic()
    try:
        r = n.token(ip, resource=POLL_RESOURCE, timeout=1.0)
    except (socket.timeout, TimeoutError, harness.ConnectionClosed):
        return sent
    return sent if r.status == 500 else None


# ---------------------------------------------------------------------------------------------
# a. Managed mode, exceptions and the namespaced rules, through the API
# ---------------------------------------------------------------------------------------------

def test_managed_mode_bindings_and_exceptions(api, emulator):
    """--operation-mode=managed --forceNamespaced: AzureIdentity + AzureIdentityBinding matched by
    the pod's aadpodidbinding label, no AzureAssignedIdentity; bindings and identities of other
    namespaces do not apply; AzurePodIdentityException passes the pod through to IMDS (node
    identities) in its namespace only; objects created later are picked up from the watch."""
    node = "kf-node-" + uuid.uuid4().hex[:8]
    ns, other = new_namespace("mgd"), new_namespace("mgd-other")
    ip = {k: ips.next() for k in ("single", "foreign", "two", "pending", "exc", "exc-other",
                                  "late", "nolabel")}
    id_a = objects.azure_identity("id-a", ns, ua_client_id("a"))
    id_a["spec"]["resourceID"] = ua_resource_id("a")
    api.crd(ns, id_a)
    api.crd(ns, objects.binding("bind-a", ns, "id-a", "sel-single"))
    api.create_pod(ns, "pod-single", node, ip["single"], {"aadpodidbinding": "sel-single"})
    # A binding (and its identity) with the pod's selector, but in another namespace.
    api.crd(other, objects.azure_identity("id-b", other, ua_client_id("b")))
    api.crd(other, objects.binding("bind-b", other, "id-b", "sel-foreign"))
    api.create_pod(ns, "pod-foreign", node, ip["foreign"], {"aadpodidbinding": "sel-foreign"})
    # Two bindings with one selector: two identities for one pod.
    for tag in ("c", "d"):
        api.crd(ns, objects.azure_identity("id-" + tag, ns, ua_client_id(tag)))
        api.crd(ns, objects.binding("bind-" + tag, ns, "id-" + tag, "sel-two"))
    api.create_pod(ns, "pod-two", node, ip["two"], {"aadpodidbinding": "sel-two"})
    # A binding whose identity does not exist yet.
    api.crd(ns, objects.binding("bind-e", ns, "id-e", "sel-pending"))
    api.create_pod(ns, "pod-pending", node, ip["pending"], {"aadpodidbinding": "sel-pending"})
    # Exceptions: one label of the exception matches (its value ignoring case).
    api.crd(ns, objects.exception("exc", ns, {"app": "legacy", "tier": "unused"}))
    api.create_pod(ns, "pod-exc", node, ip["exc"], {"app": "LEGACY"})
    api.create_pod(other, "pod-exc-other", node, ip["exc-other"], {"app": "legacy"})
    api.create_pod(ns, "pod-late", node, ip["late"], {"app": "late"})
    api.create_pod(ns, "pod-nolabel", node, ip["nolabel"], {"x": "y"})

    n = start_nmi(emulator, node, ["--kubeconfig", api.kubeconfig],
                  extra_args=["--operation-mode=managed", "--forceNamespaced"])
    try:
        log = n.log()
        assert "azureassignedidentities" not in log.split("identity caches synced")[1].split(
            "\n")[0], log  # managed mode does not watch them
        assert_gets(n, ip["single"], ua_client_id("a"))
        assert_gets(n, ip["single"], ua_client_id("a"), client_id=ua_client_id("a"))
        assert_gets(n, ip["single"], ua_client_id("a"), msi_res_id=ua_resource_id("a"))
        assert_refused(n, ip["single"], client_id=ua_client_id("b"))
        assert_refused(n, ip["foreign"])
        assert_refused(n, ip["foreign"], client_id=ua_client_id("b"))
        assert_gets(n, ip["two"], ua_client_id("c"))  # no request: the first by name
        assert_gets(n, ip["two"], ua_client_id("d"), client_id=ua_client_id("d"))
        assert_refused(n, ip["nolabel"])

        # Exceptions: any identity of the node, straight from IMDS.
        assert_gets(n, ip["exc"], SYSTEM_ID)
        assert_gets(n, ip["exc"], ua_client_id("h"), client_id=ua_client_id("h"))
        assert_refused(n, ip["exc-other"])  # the exception is in another namespace
        assert_refused(n, ip["late"])

        # The identity of a pending binding appears: the waiting request gets it.
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "r", n.token(ip["pending"], resource=fresh_resource(), timeout=60)))
        waiting = n.metric_value("nmi_requests_waiting") or 0.0
        t.start()
        wait_until(lambda: (n.metric_value("nmi_requests_waiting") or 0.0) > waiting,
                   message="the request for pod-pending to wait")
        api.crd(ns, objects.azure_identity("id-e", ns, ua_client_id("e")))
        t.join(30)
        assert client_id_of(out["r"]) == ua_client_id("e")

        # Objects that change: a new exception, a binding that now names another identity, a
        # deleted binding.
        api.crd(ns, objects.exception("exc-late", ns, {"app": "late"}))
        wait_until(lambda: gets(n, ip["late"], SYSTEM_ID), message="the new exception")
        api.crd_patch(ns, "azureidentitybindings", "bind-a", {"spec": {"azureIdentity": "id-c"}})
        wait_until(lambda: gets(n, ip["single"], ua_client_id("c")), message="the changed binding")
        assert_refused(n, ip["single"], client_id=ua_client_id("a"))
        api.crd_delete(ns, "azureidentitybindings", "bind-d")
        wait_until(lambda: n.token(ip["two"], resource=POLL_RESOURCE,
                                 client_id=ua_client_id("d")).status == 404,
                   message="the deleted binding")
        assert_gets(n, ip["two"], ua_client_id("c"), client_id=ua_client_id("c"))
    finally:
        n.stop()


def test_standard_mode_namespaced_rules(api, emulator):
    """Standard mode: an AzureAssignedIdentity whose identity lives in another namespace serves
    the pod unless the identity is namespaced — by its aadpodidentity.k8s.io/Behavior annotation,
    by --forceNamespaced or by env FORCENAMESPACED=true (as the Helm chart sets it)."""
    node = "kf-node-" + uuid.uuid4().hex[:8]
    ns, other = new_namespace("std"), new_namespace("std-other")
    ip_plain, ip_annotated, ip_same = ips.next(), ips.next(), ips.next()
    plain = objects.azure_identity("id-f", other, ua_client_id("f"))
    annotated = objects.azure_identity("id-g", other, ua_client_id("g"))
    annotated["metadata"]["annotations"] = {"aadpodidentity.k8s.io/Behavior": "namespaced"}
    same = objects.azure_identity("id-a", ns, ua_client_id("a"))
    same["metadata"]["annotations"] = {"aadpodidentity.k8s.io/Behavior": "namespaced"}
    for pod, ip, identity in (("pod-plain", ip_plain, plain),
                              ("pod-annotated", ip_annotated, annotated),
                              ("pod-same", ip_same, same)):
        sel = "sel-" + pod
        api.create_pod(ns, pod, node, ip, {"aadpodidbinding": sel})
        api.crd(identity["metadata"]["namespace"], identity)
        binding = objects.binding("bind-" + pod, identity["metadata"]["namespace"],
                                  identity["metadata"]["name"], sel)
        api.crd(identity["metadata"]["namespace"], binding)
        api.create_aai(ns, pod, node, identity, binding, "Assigned")

    n = start_nmi(emulator, node, ["--kubeconfig", api.kubeconfig])
    try:
        assert_gets(n, ip_plain, ua_client_id("f"))
        assert_refused(n, ip_annotated)
        assert_gets(n, ip_same, ua_client_id("a"))
    finally:
        n.stop()
    for how in (dict(extra_args=["--forceNamespaced"]), dict(env={"FORCENAMESPACED": "true"})):
        n = start_nmi(emulator, node, ["--kubeconfig", api.kubeconfig], **how)
        try:
            assert "namespaced=true" in n.log(), n.log()
            assert_refused(n, ip_plain)
            assert_refused(n, ip_plain, client_id=ua_client_id("f"))
            assert_refused(n, ip_annotated)
            assert_gets(n, ip_same, ua_client_id("a"))
        finally:
            n.stop()


# ---------------------------------------------------------------------------------------------
# b. Black hole
# ---------------------------------------------------------------------------------------------

def test_blackhole_keeps_serving_and_converges(api, emulator, netns, workdir):
    """nmi's connections to the API server are black-holed (DROP in nmi's namespace) for longer
    than --watch-silence-timeout-sec while pods, assignments, bindings and exceptions change. nmi
    keeps answering from its caches and stays ready; once the rule is removed it converges to
    every change."""
    node = "kf-node-" + uuid.uuid4().hex[:8]
    ns = new_namespace("bh")
    pods = {}
    for tag, identity in (("keep", "a"), ("gone", "b"), ("switch", "c")):
        pod, ip = "pod-" + tag, ips.next()
        api.create_pod(ns, pod, node, ip, {"aadpodidbinding": "sel-" + tag})
        ident = objects.azure_identity("id-" + identity, ns, ua_client_id(identity))
        binding = objects.binding("bind-" + tag, ns, "id-" + identity, "sel-" + tag)
        api.crd(ns, ident)
        api.crd(ns, binding)
        pods[tag] = (pod, ip, api.create_aai(ns, pod, node, ident, binding, "Assigned"))
    ip_exc = ips.next()
    api.create_pod(ns, "pod-exc", node, ip_exc, {"app": "bypass"})

    n, api_relay, _ = start_netns_nmi(emulator, netns, node, api.kubeconfig, api.port, workdir,
                                      pod_wait_ms=2000)
    try:
        for tag, identity in (("keep", "a"), ("gone", "b"), ("switch", "c")):
            assert_gets(n, pods[tag][1], ua_client_id(identity))
        assert_refused(n, ip_exc)
        offset = n.log_size()

        black_hole(netns, api_relay.port, True)
        cut = time.monotonic()
        try:
            # Changes nmi cannot see yet: a new pod and its assignment, a deleted pod, a binding
            # switched to another identity (and MIC's matching assignments), a new exception.
            ip_new = ips.next()
            api.create_pod(ns, "pod-new", node, ip_new, {"aadpodidbinding": "sel-new"})
            ident_d = objects.azure_identity("id-d", ns, ua_client_id("d"))
            ident_e = objects.azure_identity("id-e", ns, ua_client_id("e"))
            api.crd(ns, ident_d)
            api.crd(ns, ident_e)
            bind_new = objects.binding("bind-new", ns, "id-d", "sel-new")
            api.crd(ns, bind_new)
            api.create_aai(ns, "pod-new", node, ident_d, bind_new, "Assigned")
            api.delete_pod(ns, pods["gone"][0])
            api.crd_patch(ns, "azureidentitybindings", "bind-switch",
                          {"spec": {"azureIdentity": "id-e"}})
            api.crd_delete(ns, "azureassignedidentities", pods["switch"][2])
            api.create_aai(ns, pods["switch"][0], node, ident_e,
                           objects.binding("bind-switch", ns, "id-e", "sel-switch"), "Assigned")
            api.crd(ns, objects.exception("exc", ns, {"app": "bypass"}))

            # nmi notices the silence, stays ready and serves what it knows; /readyz and the
            # metrics say that its caches are stale (issue 10, seam 4).
            assert n.wait_for_log(r"watch \w+: no data for %d ms" % (SILENCE_SEC * 1000), offset,
                                  timeout=SILENCE_SEC + 10), n.log_since(offset)
            wait_until(lambda: (n.metric_value("nmi_identity_source_staleness_seconds") or 0)
                       >= SILENCE_SEC + 1, timeout=15, message="staleness to grow")
            wait_until(lambda: n.metric_value("nmi_identity_source_stale", resource="pods") == 1.0,
                       timeout=15, message="the pods cache to show as stale")
            stale_seen = time.monotonic() - cut
            assert n.metric_value("nmi_identity_source_stale") >= 1.0
            r = n.probe("/readyz")
            assert r.status == 200, r.text()
            assert r.text().startswith("ok\n"), r.text()
            assert re.search(r"^warning: stale: (.*; )?pods: (in backoff after \d+ failed "
                             r"attempts? \(.+\); last heard from the API server [\d.]+ s ago|"
                             r"no word from the API server for )", r.text(), re.M), r.text()
            print("\nblack hole: caches shown stale %.1f s after the cut (silence timeout %d s); "
                  "/readyz: %r" % (stale_seen, SILENCE_SEC, r.text()))
            assert_gets(n, pods["keep"][1], ua_client_id("a"))
            assert_gets(n, pods["switch"][1], ua_client_id("c"))  # the change is not seen yet
            assert_gets(n, pods["gone"][1], ua_client_id("b"))
            assert_refused(n, ip_exc)
            # Past the silence timeout, with reconnection attempts failing meanwhile: nmi has
            # had no word from the API server for 2 s more than the silence timeout.
            wait_until(lambda: (n.metric_value("nmi_identity_source_staleness_seconds") or 0)
                       >= SILENCE_SEC + 2, timeout=SILENCE_SEC + 20,
                       message="staleness past the silence timeout + 2 s")
        finally:
            black_hole(netns, api_relay.port, False)
        restored_after = time.monotonic() - cut

        conv = Converge({
            "new_pod": lambda: gets(n, ip_new, ua_client_id("d")),
            "deleted_pod": lambda: held_or_gone(n, pods["gone"][1]),
            "changed_binding": lambda: gets(n, pods["switch"][1], ua_client_id("e")),
            "exception": lambda: gets(n, ip_exc, SYSTEM_ID),
        })
        done = conv.wait()
        assert set(done) == {"new_pod", "deleted_pod", "changed_binding", "exception"}, \
            (done, conv.errors)
        print("\nblack hole: %.1f s (silence timeout %d s); converged after restore in %.2f s "
              "(%s)" % (restored_after, SILENCE_SEC, max(done.values()),
                        ", ".join("%s %.2f s" % kv for kv in sorted(done.items()))))
        assert max(done.values()) < 15, done

        # And for good: the deleted pod's address gets no token, the other pods theirs.
        harness.assert_json_error(n.token(pods["gone"][1], resource=fresh_resource()), 500,
                                  POD_NOT_FOUND)
        assert_gets(n, pods["keep"][1], ua_client_id("a"))
        assert_refused(n, pods["switch"][1], client_id=ua_client_id("c"))
        wait_until(lambda: n.metric_value("nmi_identity_source_staleness_seconds") == 0,
                   message="staleness back to 0")
        wait_until(lambda: n.metric_value("nmi_identity_source_stale") == 0.0,
                   message="every cache current again")
        r = n.probe("/readyz")
        assert r.status == 200 and "stale" not in r.text(), r.text()
        assert n.metric_value("aadpodidentity_kubernetes_api_operations_errors_count",
                              operation_type="watch") >= 1
    finally:
        n.stop()
        api_relay.stop()


# ---------------------------------------------------------------------------------------------
# c. 410 Gone
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def private_apiserver(workdir):
    s = PrivateApiServer(workdir, ["--watch-cache=false"])
    try:
        yield s
    finally:
        s.down()


def test_gone_410_relists_and_loses_no_change(emulator, netns, workdir, private_apiserver):
    """An API server without watch cache (watches read etcd): nmi (managed mode) is cut off, the
    objects change and etcd is compacted past every version nmi has seen. On reconnection its
    watches get 410 Gone, it lists again and ends with every change; then the API server restarts
    and nmi picks up what changes next."""
    srv = private_apiserver
    api = srv.api
    node = "kf-node-" + uuid.uuid4().hex[:8]
    ns = new_namespace("gone", srv.dir)
    pods = {}
    for tag, identity in (("keep", "a"), ("gone", "b"), ("switch", "c")):
        pod, ip = "pod-" + tag, ips.next()
        api.create_pod(ns, pod, node, ip, {"aadpodidbinding": "sel-" + tag})
        api.crd(ns, objects.azure_identity("id-" + identity, ns, ua_client_id(identity)))
        api.crd(ns, objects.binding("bind-" + tag, ns, "id-" + identity, "sel-" + tag))
        pods[tag] = (pod, ip)
    ip_exc = ips.next()
    api.create_pod(ns, "pod-exc", node, ip_exc, {"app": "bypass"})

    n, api_relay, _ = start_netns_nmi(emulator, netns, node, srv.kubeconfig, api.port, workdir,
                                      pod_wait_ms=2000,
                                      extra_args=["--operation-mode=managed", "--forceNamespaced"])
    try:
        for tag, identity in (("keep", "a"), ("gone", "b"), ("switch", "c")):
            assert_gets(n, pods[tag][1], ua_client_id(identity))
        offset = n.log_size()

        black_hole(netns, api_relay.port, True)
        cut = time.monotonic()
        try:
            ip_new = ips.next()
            api.create_pod(ns, "pod-new", node, ip_new, {"aadpodidbinding": "sel-new"})
            api.crd(ns, objects.azure_identity("id-d", ns, ua_client_id("d")))
            api.crd(ns, objects.binding("bind-new", ns, "id-d", "sel-new"))
            api.delete_pod(ns, pods["gone"][0])
            api.crd(ns, objects.azure_identity("id-e", ns, ua_client_id("e")))
            api.crd_patch(ns, "azureidentitybindings", "bind-switch",
                          {"spec": {"azureIdentity": "id-e"}})
            api.crd(ns, objects.exception("exc", ns, {"app": "bypass"}))
            compacted = srv.compact()
            assert_gets(n, pods["keep"][1], ua_client_id("a"))  # from the caches
            # Every watch open before the cut has gone silent and been closed.
            wait_until(lambda: silenced(n, offset, MANAGED_WATCHES), timeout=SILENCE_SEC + 15,
                       message="every watch to go silent: " + ", ".join(MANAGED_WATCHES))
        finally:
            black_hole(netns, api_relay.port, False)

        conv = Converge({
            "new_pod": lambda: gets(n, ip_new, ua_client_id("d")),
            "deleted_pod": lambda: held_or_gone(n, pods["gone"][1]),
            "changed_binding": lambda: gets(n, pods["switch"][1], ua_client_id("e")),
            "exception": lambda: gets(n, ip_exc, SYSTEM_ID),
        })
        done = conv.wait()
        assert set(done) == {"new_pod", "deleted_pod", "changed_binding", "exception"}, \
            (done, conv.errors)
        log = n.log_since(offset)
        gone = sorted(set(re.findall(r"watch (\w+): resourceVersion \d+ is gone \(410\), "
                                     r"listing again", log)))
        # Every watch nmi had was older than the compaction: each one relisted.
        assert gone == MANAGED_WATCHES, log
        after_gone = log[log.index("is gone (410)"):]
        for resource in gone:
            assert re.search(r"list %s: \d+ objects kept of \d+ listed" % resource, after_gone), log
        print("\n410: etcd compacted at revision %d; relisted %s; converged after restore in "
              "%.2f s (%s)" % (compacted, ", ".join(gone), max(done.values()),
                               ", ".join("%s %.2f s" % kv for kv in sorted(done.items()))))
        harness.assert_json_error(n.token(pods["gone"][1], resource=fresh_resource()), 500,
                                  POD_NOT_FOUND)

        # The API server restarts: every watch must reconnect.
        accepted = api_relay.accepted
        srv.restart()
        api.crd(ns, objects.azure_identity("id-f", ns, ua_client_id("f")))
        api.crd(ns, objects.binding("bind-after", ns, "id-f", "sel-after"))
        ip_after = ips.next()
        t0 = time.monotonic()
        api.create_pod(ns, "pod-after", node, ip_after, {"aadpodidbinding": "sel-after"})
        wait_until(lambda: gets(n, ip_after, ua_client_id("f")), timeout=20,
                   message="the pod created after the restart")
        print("after the API server's restart: new pod served %.2f s after its creation"
              % (time.monotonic() - t0))
        assert api_relay.accepted >= accepted + 4, (accepted, api_relay.accepted)  # reconnected
        assert_gets(n, pods["keep"][1], ua_client_id("a"))
    finally:
        n.stop()
        api_relay.stop()


# ---------------------------------------------------------------------------------------------
# d. Service-account token rotation
# ---------------------------------------------------------------------------------------------

def write_projected_token(sa_dir, token, ca_pem):
    """As the kubelet writes a projected volume: files in a timestamped directory, `..data` an
    atomically swapped symlink to it, `token` and `ca.crt` symlinks through `..data`."""
    stamp = "..%d_%s" % (time.time_ns(), uuid.uuid4().hex[:6])
    os.mkdir(os.path.join(sa_dir, stamp))
    with open(os.path.join(sa_dir, stamp, "token"), "w") as f:
        f.write(token)
    with open(os.path.join(sa_dir, stamp, "ca.crt"), "wb") as f:
        f.write(ca_pem)
    tmp = os.path.join(sa_dir, "..data_tmp")
    os.symlink(stamp, tmp)
    old = os.readlink(os.path.join(sa_dir, "..data")) if os.path.islink(
        os.path.join(sa_dir, "..data")) else None
    os.rename(tmp, os.path.join(sa_dir, "..data"))
    for name in ("token", "ca.crt"):
        if not os.path.islink(os.path.join(sa_dir, name)):
            os.symlink(os.path.join("..data", name), os.path.join(sa_dir, name))
    if old:
        shutil.rmtree(os.path.join(sa_dir, old))


def bearer_status(api, token, path):
    ctx = ssl.create_default_context(cadata=api.ca_pem.decode())
    req = urllib.request.Request("https://%s:%d%s" % (api.host, api.port, path),
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_service_account_token_rotation(api, emulator, workdir):
    """nmi in-cluster with a TokenRequest token bound to a Secret. A new token is written (an
    atomic ..data swap, as the kubelet does), then the old token's Secret is deleted (the old token
    is rejected from then on) and the API server's connections end: nmi reconnects every watch
    with the new token, sees what changed, reads a service principal's Secret with it, and never
    logs either token."""
    node = "kf-node-" + uuid.uuid4().hex[:8]
    ns = new_namespace("rot")
    role = "nmi-kf-" + uuid.uuid4().hex[:8]
    api.grant(ns, role)
    tokens = []
    for i in (1, 2):
        api.create_secret(ns, objects.secret("bound-%d" % i, ns))
        tokens.append(kube.service_account_token(ns, "nmi", bound_secret="bound-%d" % i))
    pods_path = "/api/v1/namespaces/%s/pods" % ns
    assert bearer_status(api, tokens[0], pods_path) == 200
    sa_dir = os.path.join(workdir, "sa-" + ns)
    os.mkdir(sa_dir)
    write_projected_token(sa_dir, tokens[0], api.ca_pem)

    ip_mi, ip_sp = ips.next(), ips.next()
    ident = objects.azure_identity("id-a", ns, ua_client_id("a"))
    binding = objects.binding("bind-a", ns, "id-a", "sel-a")
    api.crd(ns, ident)
    api.crd(ns, binding)
    api.create_pod(ns, "pod-mi", node, ip_mi, {"aadpodidbinding": "sel-a"})
    api.create_aai(ns, "pod-mi", node, ident, binding, "Assigned")
    api.create_secret(ns, objects.secret("sp-secret", ns, data={"clientSecret": SP_SECRET}))
    sp = objects.azure_identity("id-sp", ns, SP_ID, type=1, tenant_id=harness.TENANT,
                                ad_endpoint=emulator.aad_url + "/", secret_ref=(ns, "sp-secret"))
    sp_binding = objects.binding("bind-sp", ns, "id-sp", "sel-sp")
    api.crd(ns, sp)
    api.crd(ns, sp_binding)
    api.create_pod(ns, "pod-sp", node, ip_sp, {"aadpodidbinding": "sel-sp"})
    api.create_aai(ns, "pod-sp", node, sp, sp_binding, "Assigned")

    relay = Relay(api.port, port=harness.free_port(FILE_INDEX))
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(relay.port),
           "KUBECONFIG": ""}
    n = start_nmi(emulator, node, ["--service-account-dir", sa_dir],
                  extra_args=["--secret-cache-ttl-sec=0"], env=env, pod_wait_ms=2000)
    try:
        assert "in-cluster" in n.log(), n.log()
        assert_gets(n, ip_mi, ua_client_id("a"))
        assert_gets(n, ip_sp, SP_ID)

        write_projected_token(sa_dir, tokens[1], api.ca_pem)
        api.request("DELETE", "/api/v1/namespaces/%s/secrets/bound-1" % ns)
        # The API server caches a successful authentication for a few seconds.
        wait_until(lambda: bearer_status(api, tokens[0], pods_path) == 401, timeout=30,
                   message="the old token to be rejected")
        assert bearer_status(api, tokens[1], pods_path) == 200
        accepted = relay.accepted
        offset = n.log_size()
        relay.close_all()  # the API server goes away: every watch must be opened again

        ip_new = ips.next()
        api.create_pod(ns, "pod-new", node, ip_new, {"aadpodidbinding": "sel-a"})
        api.create_aai(ns, "pod-new", node, ident, binding, "Assigned")
        wait_until(lambda: gets(n, ip_new, ua_client_id("a")), timeout=20,
                   message="the pod created after the rotation")
        # Every watch (five kinds) comes back on a connection of its own, each after its own
        # backoff: the new pod may be served before the last of them is open again.
        wait_until(lambda: relay.accepted >= accepted + 5, timeout=20,
                   message="every watch to open a new connection (%d before)" % accepted)
        # The Secret is read through the API with the new token (secret cache off).
        errors = n.metric_value("aadpodidentity_kubernetes_api_operations_errors_count",
                                operation_type="get_secret")
        assert_gets(n, ip_sp, SP_ID)
        assert n.metric_value("aadpodidentity_kubernetes_api_operations_errors_count",
                              operation_type="get_secret") == errors == 0.0
        assert n.probe("/readyz").status == 200
        log = n.log()
        # No request forbidden: 403 as a status, never digits that happen to sit inside a
        # timestamp or a duration ("05.564032Z").
        refused = re.search(r"(?<![\d.])403(?![\d.])", n.log_since(offset))
        assert refused is None, n.log_since(offset)
        for t in tokens:
            assert t not in log
            assert t.split(".")[2][:16] not in log  # no part of the signature either
    finally:
        n.stop()
        relay.stop()
        api.revoke(role)
