"""Uninstall without leftovers and without a fail-open window (issue 6 item 3, issue 10 seam 3),
against the real API server: nmi runs with the chart's arguments and environment (POD_NAMESPACE,
POD_NAME of a pod object this file creates on nmi's node, controlled by the DaemonSet) and a token
of the chart's ServiceAccount, with interception on, in a network namespace this file creates
(nmi-cb-<pid>-node), so its iptables rules really exist there. On SIGTERM the rules go away only
when nmi saw its DaemonSet exist and then saw it gone or being deleted; on a plain SIGTERM
(restart, upgrade, drain) they stay, also when the API server cannot be asked, and so they do when
nmi never saw its DaemonSet (a misspelt --daemonset-name, a DaemonSet in another namespace), which
/readyz and the log say.

The API server listens on the root namespace's loopback; nmi reaches it through a TCP forwarder
whose listening socket lives in the test namespace (no interface or firewall change in the root
namespace). There is no controller manager here, and the test environment's API server runs with
--enable-garbage-collector=false, so it neither adds the foregroundDeletion/orphan finalizers nor
deletes pods: the test deletes the DaemonSet as helm and kubectl do (Background), or holds it
in the "being deleted" state Foreground and Orphan deletion leave on a real cluster (a
deletionTimestamp and a finalizer; docs/operations.md, "Uninstall") with a finalizer of its own,
and then sends nmi the SIGTERM the kubelet would send.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

import test_chart as chart
from nmi_pytest import harness, kube
from nmi_pytest.kube import Relay, helm, kjson, kubectl

FILE_INDEX = 22  # ports 28800-29199
NAMESPACE_PREFIX = "uninst"
NAT_CHAIN = "NMI-METADATA"
GUARD_CHAIN = "NMI-METADATA-GUARD"
BACKEND = "nft"


def ns_run(name, *argv, check=True):
    assert name.startswith("nmi-cb-%d-" % os.getpid())  # never the root namespace
    p = subprocess.run(["ip", "netns", "exec", name] + list(argv), capture_output=True, text=True,
                       timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("%s failed: %s%s" % (argv, p.stdout, p.stderr))
    return p


@pytest.fixture(scope="module")
def netns():
    """The node's namespace (overrides the plugin's unnamed one: nmi's rules live here)."""
    ns = harness.NamedNetns("nmi-cb-%d-node" % os.getpid(), create=True)
    try:
        # nmi DNATs to 127.0.0.1 (its default listen address), which needs route_localnet.
        ns_run(ns.name, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
        yield ns
    finally:
        ns.close()


def api_server():
    server = kjson("config", "view", "--raw")["clusters"][0]["cluster"]["server"]
    m = re.fullmatch(r"https://([\d.]+):(\d+)/?", server)
    assert m, server
    return m.group(1), int(m.group(2))


class UninstallNmi(harness.Nmi):
    """nmi with the DaemonSet's arguments, in the namespace, with interception on (the default
    metadata address 169.254.169.254), its API server reached through the forwarder."""

    def __init__(self, netns, node, chart_args, kubeconfig, pod_namespace, workdir,
                 pod_name=None):
        env = {"POD_NAMESPACE": pod_namespace}
        if pod_name:
            env["POD_NAME"] = pod_name
        super().__init__(None, [], FILE_INDEX, netns=netns, node=node, env=env)
        self.chart_args = [a.replace("$(NODE_NAME)", node) for a in chart_args]
        self.kubeconfig = kubeconfig
        self.workdir = workdir

    def argv(self):
        return ([harness.NMI_BINARY] + self.chart_args +
                ["--nmi-port=%d" % self.port, "--http-probe-port=%d" % self.probe_port,
                 "--prometheus-port=%d" % self.metrics_port,
                 "--iptables-backend=" + BACKEND,
                 "--iptables-lock-file=" + os.path.join(self.workdir, "xtables.lock"),
                 "--kubelet-config=" + os.path.join(self.workdir, "kubelet"),
                 "--imds-token-endpoint=127.0.0.1:9",
                 # No DaemonSet pod follows these nmis: on SIGTERM they drain at once instead of
                 # serving on until a successor serves (tests/node shows the hand-over).
                 "--handover-wait-sec=0",
                 "--kubeconfig=" + self.kubeconfig, "-v=4"])


def rules(netns, port=None):
    """nmi's rules in the namespace (with `port`: only if they DNAT to it)."""
    nat = ns_run(netns.name, "iptables-%s-save" % BACKEND, "-t", "nat").stdout
    flt = ns_run(netns.name, "iptables-%s-save" % BACKEND, "-t", "filter").stdout
    out = [line for line in (nat + flt).splitlines() if NAT_CHAIN in line or GUARD_CHAIN in line]
    if port is not None:
        assert any(line.endswith("--to-destination 127.0.0.1:%d" % port) for line in out), out
    return out


class Setup:
    """A release of the chart in namespace `ns`, a kubeconfig with a token of its
    ServiceAccount whose server is the forwarder."""

    def __init__(self, ns, netns, forwarder, *helm_args):
        self.ns = ns
        self.netns = netns
        self.release = "nmi-" + uuid.uuid4().hex[:8]
        helm("install", self.release, chart.CHART, "-n", ns, *helm_args)
        self.installed = True
        ds = kjson("get", "daemonset", self.release, "-n", ns)
        self.args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--daemonset-name=" + self.release in self.args, self.args
        self.work = tempfile.mkdtemp(prefix="nmi-uninstall-")
        kubeconfig, self.token = chart.sa_kubeconfig(ns, self.release, self.work)
        self.kubeconfig = kube.relayed_kubeconfig(kubeconfig, forwarder.port, kubeconfig)
        self.node = "uninstall-node-" + uuid.uuid4().hex[:6]
        # nmi's own pod, as the DaemonSet controller would create it on the node (there is no
        # controller manager here): the chart passes its name as POD_NAME.
        self.ds_uid = ds["metadata"]["uid"]
        self.pod_name = self.release + "-" + uuid.uuid4().hex[:5]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": self.pod_name, "namespace": ns,
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                                 "name": self.release, "uid": self.ds_uid,
                                                 "controller": True}]},
               "spec": {"nodeName": self.node, "hostNetwork": True,
                        "containers": [{"name": "nmi", "image": "nmi"}]}}
        kubectl("create", "-f", "-", stdin=json.dumps(pod))

    def nmi(self, args=None, pod_namespace=None, pod_name=True):
        n = UninstallNmi(self.netns, self.node, args or self.args, self.kubeconfig,
                         pod_namespace or self.ns, self.work,
                         self.pod_name if pod_name else None)
        return n.start(ready_timeout=30.0)

    def close(self):
        if self.installed:
            helm("uninstall", self.release, "-n", self.ns, check=False)
        kubectl("delete", "pod", self.pod_name, "-n", self.ns, "--grace-period=0", "--force",
                "--wait=false", check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def stop_timed(n):
    t0 = time.monotonic()
    rc = n.stop(check=False, timeout=20.0)
    return rc, time.monotonic() - t0


@pytest.fixture
def forwarder(netns):
    """A relay in the namespace to the API server on the root namespace's loopback."""
    f = Relay(api_server(), netns, port=harness.free_port(FILE_INDEX))
    yield f
    f.stop()


def test_plain_sigterm_keeps_the_rules(ns, netns, forwarder):
    """A restart, an upgrade or a drain: the DaemonSet is there, the rules stay. Then the same
    with the API server black-holed: nmi cannot tell, so the rules
    stay (fail closed), and the check is bounded (2 s)."""
    s = Setup(ns, netns, forwarder)
    n = None
    try:
        n = s.nmi()
        assert n.wait_for_log(r"daemonset %s/%s present \(uid %s\)" % (ns, s.release, s.ds_uid),
                              timeout=10), n.log()
        assert "uninstall detection:" not in n.log()
        r = n.probe("/readyz")
        assert r.status == 200 and "warning" not in r.text(), r.text()
        before = rules(netns, n.port)
        assert any(GUARD_CHAIN in r for r in before), before
        rc, took = stop_timed(n)
        log = n.log()
        assert rc == 0, log[-3000:]
        assert "the API server says present" in log and "keeping the iptables rules" in log, log
        assert rules(netns) == before
        assert "uninstall:" not in log

        n = s.nmi()
        before = rules(netns, n.port)
        forwarder.swallow()
        rc, took = stop_timed(n)
        log = n.log()
        assert rc == 0, log[-3000:]
        assert "cannot read daemonset" in log and "keeping the iptables rules" in log, log
        assert 1.9 < took < 6.0, took  # the 2 s check, then the drain
        assert rules(netns) == before
        harness_report("uninstall_check_black_hole_exit_seconds", took)
        assert s.token not in n.log()
    finally:
        if n is not None:
            n.stop(check=False)
        s.close()


HOLD = "nmi.test.example.com/hold"


def test_daemonset_being_deleted_removes_the_rules(ns, netns, forwarder):
    """Foreground or Orphan deletion (kubectl delete --cascade=foreground|orphan): the DaemonSet
    stays, with a deletionTimestamp and a finalizer, until the garbage collector is done. nmi's
    watch sees it; SIGTERM then removes the rules."""
    s = Setup(ns, netns, forwarder)
    n = None
    try:
        kubectl("patch", "daemonset", s.release, "-n", ns, "--type=merge", "-p",
                json.dumps({"metadata": {"finalizers": [HOLD]}}))
        n = s.nmi()
        assert rules(netns, n.port)
        kubectl("delete", "daemonset", s.release, "-n", ns, "--wait=false",
                "--cascade=foreground")
        ds = kjson("get", "daemonset", s.release, "-n", ns)
        assert ds["metadata"].get("deletionTimestamp"), ds["metadata"]
        assert n.wait_for_log(r"daemonset %s/%s being deleted" % (ns, s.release), timeout=10), \
            n.log()
        rc, took = stop_timed(n)
        log = n.log()
        assert rc == 0, log[-3000:]
        assert "the API server says being deleted" in log, log
        assert re.search(r"uninstall: .*nat", log), log
        assert rules(netns) == []
        harness_report("uninstall_being_deleted_exit_seconds", took)
    finally:
        if n is not None:
            n.stop(check=False)
        kubectl("patch", "daemonset", s.release, "-n", ns, "--type=merge", "-p",
                json.dumps({"metadata": {"finalizers": None}}), check=False)
        s.close()


@pytest.mark.parametrize("how", ["helm", "kubectl", "helm-without-pod-name"])
def test_uninstall_removes_the_rules_although_the_service_account_is_gone(ns, netns, forwarder,
                                                                          how):
    """helm uninstall, or kubectl delete -f of the plain manifests (Background propagation): the
    DaemonSet is deleted at once, and the ServiceAccount and RBAC objects with it (helm: right
    after it; kubectl: in file order, right before it), all before the garbage collector gets to
    the pods: the GET nmi makes on SIGTERM is refused (401 or 403), and the watch, opened while
    the RBAC objects existed and kept open by the API server, saw the DELETED event and
    decides."""
    s = Setup(ns, netns, forwarder)
    n = None
    try:
        # Without POD_NAME (manifests of an older chart) nmi's DaemonSet is the first one of the
        # name it sees.
        n = s.nmi(pod_name=how != "helm-without-pod-name")
        assert rules(netns, n.port)
        if how.startswith("helm"):
            helm("uninstall", s.release, "-n", ns)
        else:
            manifest = helm("get", "manifest", s.release, "-n", ns).stdout
            kinds = re.findall(r"^kind: (\w+)$", manifest, re.M)
            assert kinds.index("ServiceAccount") < kinds.index("DaemonSet"), kinds
            kubectl("delete", "--wait=false", "-n", ns, "-f", "-", stdin=manifest)
            # helm's record of the release stays; it is forgotten without touching anything.
            helm("uninstall", s.release, "-n", ns, "--no-hooks", check=False)
        s.installed = False
        p = kubectl("get", "daemonset", s.release, "-n", ns, check=False)
        assert p.returncode != 0 and "NotFound" in p.stderr
        p = kubectl("get", "serviceaccount", s.release, "-n", ns, check=False)
        assert p.returncode != 0 and "NotFound" in p.stderr
        assert n.wait_for_log(r"daemonset %s/%s gone" % (ns, s.release), timeout=10), n.log()
        rc, took = stop_timed(n)
        log = n.log()
        assert rc == 0, log[-3000:]
        assert re.search(r"cannot read daemonset .* HTTP 40[13]", log), log
        assert "last watched: gone (uid %s, seen present since nmi started: an uninstall): " \
               "removing the iptables rules" % s.ds_uid in log, log
        assert rules(netns) == []
        harness_report("uninstall_%s_exit_seconds" % how, took)
        assert s.token not in log
    finally:
        if n is not None:
            n.stop(check=False)
        s.close()


def assert_kept_on_exit(n, netns, before, *reasons):
    rc, took = stop_timed(n)
    log = n.log()
    assert rc == 0, log[-3000:]
    for reason in reasons:
        assert reason in log, (reason, log[-3000:])
    assert "keeping the iptables rules" in log and "uninstall:" not in log, log[-3000:]
    assert rules(netns) == before
    return took


@pytest.mark.parametrize("pod_name", [False, True], ids=["fallback", "pod-name"])
def test_misspelt_daemonset_name_keeps_the_rules(ns, netns, forwarder, pod_name):
    """Issue 10, seam 3: --daemonset-name names no DaemonSet (a typo). nmi says so loudly (log at
    warn, /readyz detail, still ready) and, on SIGTERM, keeps its rules although the API server
    answers 404 for that name. With POD_NAME, nmi's pod names the DaemonSet it belongs to, and
    the message says which one that is."""
    s = Setup(ns, netns, forwarder)
    n = None
    try:
        typo = s.release + "-typo"
        kubectl("create", "role", typo, "-n", ns, "--verb=get,list,watch",
                "--resource=daemonsets.apps", "--resource-name=" + typo)
        kubectl("create", "rolebinding", typo, "-n", ns, "--role=" + typo,
                "--serviceaccount=%s:%s" % (ns, s.release))
        args = ["--daemonset-name=" + typo if a.startswith("--daemonset-name=") else a
                for a in s.args]
        n = s.nmi(args=args, pod_name=pod_name)
        if pod_name:
            problem = "nmi's pod is controlled by DaemonSet %s, not daemonset %s/%s" % (
                s.release, ns, typo)
        else:
            problem = "daemonset %s/%s not found (never seen since nmi started)" % (ns, typo)
        assert n.wait_for_log(r"warn.*uninstall detection: " + re.escape(problem), timeout=10), \
            n.log()[-3000:]
        r = n.probe("/readyz")
        assert r.status == 200, r.text()
        assert "warning: uninstall: " + problem in r.text(), r.text()
        p = kubectl("get", "daemonset", typo, "-n", ns, check=False)
        assert p.returncode != 0 and "NotFound" in p.stderr
        before = rules(netns, n.port)
        assert_kept_on_exit(n, netns, before, problem if pod_name else "never seen present")
    finally:
        if n is not None:
            n.stop(check=False)
        s.close()


def test_daemonset_in_another_namespace_keeps_the_rules(ns, netns, forwarder):
    """Issue 10, seam 3: POD_NAMESPACE names another namespace, where nmi may read DaemonSets but
    there is no DaemonSet of its name. The 404 there is not an uninstall: the rules stay, and
    /readyz says why. With the chart's RBAC only (no access to that namespace) the same."""
    s = Setup(ns, netns, forwarder)
    n = None
    other = None
    try:
        other = "uninst-other-" + uuid.uuid4().hex[:6]
        kube.new_namespace(other)
        n = s.nmi(pod_namespace=other, pod_name=False)
        problem = "daemonset %s/%s cannot be read" % (other, s.release)
        assert n.wait_for_log(r"uninstall detection: " + re.escape(problem), timeout=10), \
            n.log()[-3000:]
        assert "HTTP 403" in n.probe("/readyz").text()
        before = rules(netns, n.port)
        assert_kept_on_exit(n, netns, before, "state unknown")

        # Readable there (an operator granted it): the name is simply not found.
        kubectl("create", "role", "nmi-read", "-n", other, "--verb=get,list,watch",
                "--resource=daemonsets.apps")
        kubectl("create", "rolebinding", "nmi-read", "-n", other, "--role=nmi-read",
                "--serviceaccount=%s:%s" % (ns, s.release))
        n = s.nmi(pod_namespace=other, pod_name=False)
        problem = "daemonset %s/%s not found (never seen since nmi started)" % (other, s.release)
        assert n.wait_for_log(r"uninstall detection: " + re.escape(problem), timeout=10), \
            n.log()[-3000:]
        assert "warning: uninstall: " + problem in n.probe("/readyz").text()
        before = rules(netns, n.port)
        assert_kept_on_exit(n, netns, before, "never seen present", "the API server says gone")
    finally:
        if n is not None:
            n.stop(check=False)
        s.close()


def harness_report(name, value):
    print("\nMEASURED %s=%.2f" % (name, value))
