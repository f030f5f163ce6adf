#!/usr/bin/env python3
"""Smoke tests of the Kubernetes test environment (scripts/kube-testenv) against the real API server.

Usage: testenv_smoke.py CASE   (KUBE_TESTENV_DIR names a running environment; ctest sets it.)
Each case works in a namespace of its own, created through `kube-testenv ns`.
"""
import base64
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import uuid

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
TESTDATA = HERE / "testdata" / "aad-pod-identity-v1.8.17"
sys.path.insert(0, str(REPO / "tests" / "lib"))

from nmi_pytest import kube  # noqa: E402

TESTENV = kube.TESTENV


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


ENV = kube.testenv_env()  # `kube-testenv env` applied to a copy of our environment


def kubectl(*args, stdin=None, check_rc=True, env=None):
    proc = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                          env=env or ENV)
    if check_rc and proc.returncode != 0:
        raise Failure(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def kjson(*args, **kw):
    return json.loads(kubectl(*args, "-o", "json", **kw).stdout)


def new_namespace(case):
    name = f"smoke-{re.sub(r'[^a-z0-9]+', '-', case.lower())[:40]}-{uuid.uuid4().hex[:6]}"
    subprocess.run([TESTENV, "ns", name], check=True, env=ENV)
    sa = kjson("get", "serviceaccount", "default", "-n", name)
    check(sa["metadata"]["name"] == "default", "the namespace has no default ServiceAccount")
    return name


def expected_version():
    gomod = (REPO / "tools" / "kube" / "go.mod").read_text()
    m = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", gomod, re.M)
    check(m is not None, "k8s.io/kubernetes is not pinned in tools/kube/go.mod")
    return m.group(1)


# ----------------------------------------------------------------------------------------------


def KubectlReportsRealServerVersion(ns):
    v = kjson("version")
    want = expected_version()
    server = v["serverVersion"]
    check(server["gitVersion"] == want, f"server version {server['gitVersion']}, want {want}")
    check(server["major"] == want[1:].split(".")[0] and server["minor"] == want.split(".")[1],
          f"server major/minor {server['major']}.{server['minor']} do not match {want}")
    check(v["clientVersion"]["gitVersion"] == want,
          f"kubectl version {v['clientVersion']['gitVersion']}, want {want}")
    helm = subprocess.run(["helm", "version", "--short"], capture_output=True, text=True, env=ENV)
    check(helm.returncode == 0 and helm.stdout.startswith("v"), f"helm version: {helm.stdout}{helm.stderr}")


def PodStatusIsPatchedThroughStatusSubresource(ns):
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": ns, "labels": {"aadpodidbinding": "demo"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "nginx"}]},
    }
    kubectl("create", "-f", "-", stdin=json.dumps(pod))
    status = {"status": {"phase": "Running", "podIP": "10.244.0.11",
                         "podIPs": [{"ip": "10.244.0.11"}]}}
    kubectl("patch", "pod", "web", "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps(status))
    got = kjson("get", "pod", "web", "-n", ns)
    check(got["status"].get("podIP") == "10.244.0.11", f"podIP is {got['status'].get('podIP')}")
    check(got["status"].get("phase") == "Running", f"phase is {got['status'].get('phase')}")
    # A status change on the main resource is ignored: that is what the subresource is for.
    kubectl("patch", "pod", "web", "-n", ns, "--type=merge",
            "-p", json.dumps({"status": {"podIP": "10.244.0.99"}}))
    got = kjson("get", "pod", "web", "-n", ns)
    check(got["status"].get("podIP") == "10.244.0.11", "a main-resource patch changed pod status")
    kubectl("delete", "pod", "web", "-n", ns, "--grace-period=0", "--force", "--wait=true")
    gone = kubectl("get", "pod", "web", "-n", ns, check_rc=False)
    check(gone.returncode != 0 and "NotFound" in gone.stderr, "the pod still exists after deletion")


def _sent(path):
    """The object a user's file describes, as JSON, without sending it anywhere."""
    return kjson("create", "--dry-run=client", "-f", str(path))


def AadPodIdentityObjectsReadBackUnchanged(ns):
    files = sorted(TESTDATA.glob("*.yaml"))
    check(len(files) >= 6, f"testdata missing: {files}")
    for path in files:
        sent = _sent(path)
        kubectl("create", "-n", ns, "-f", str(path))
        kind, name = sent["kind"], sent["metadata"]["name"]
        got = kjson("get", f"{kind.lower()}.aadpodidentity.k8s.io", name, "-n", ns)
        for field in ("apiVersion", "kind", "spec", "status"):
            check(got.get(field) == sent.get(field),
                  f"{path.name}: {field} changed:\n sent {json.dumps(sent.get(field), sort_keys=True)}\n"
                  f"  got {json.dumps(got.get(field), sort_keys=True)}")
        for field in ("name", "labels", "annotations", "finalizers"):
            check(got["metadata"].get(field) == sent["metadata"].get(field),
                  f"{path.name}: metadata.{field} changed: sent {sent['metadata'].get(field)}, "
                  f"got {got['metadata'].get(field)}")
    # The CRDs match aad-pod-identity's: names, no short names, no status subresource.
    for plural in ("azureidentities", "azureidentitybindings", "azureassignedidentities",
                   "azurepodidentityexceptions"):
        crd = kjson("get", "crd", f"{plural}.aadpodidentity.k8s.io")
        check(crd["spec"]["group"] == "aadpodidentity.k8s.io", f"{plural}: group")
        check(crd["spec"]["scope"] == "Namespaced", f"{plural}: scope")
        check("shortNames" not in crd["spec"]["names"], f"{plural}: has short names")
        versions = crd["spec"]["versions"]
        check([v["name"] for v in versions] == ["v1"], f"{plural}: versions {versions}")
        check(not versions[0].get("subresources", {}).get("status"), f"{plural}: status subresource")


def AssignedIdentityStatusPatchOnMainResourcePersists(ns):
    path = TESTDATA / "azureassignedidentity.yaml"
    name = _sent(path)["metadata"]["name"]
    kubectl("create", "-n", ns, "-f", str(path))
    resource = "azureassignedidentity.aadpodidentity.k8s.io"
    # What MIC sends: a JSON patch of /status/status on the main resource.
    patch = [{"op": "replace", "path": "/status/status", "value": "Assigned"}]
    kubectl("patch", resource, name, "-n", ns, "--type=json", "-p", json.dumps(patch))
    got = kjson("get", resource, name, "-n", ns)
    check(got["status"]["status"] == "Assigned", f"status is {got['status']}")
    # There is no status subresource to write instead.
    sub = kubectl("patch", resource, name, "-n", ns, "--subresource=status", "--type=json",
                  "-p", json.dumps(patch), check_rc=False)
    check(sub.returncode != 0 and "NotFound" in sub.stderr,
          f"a status subresource answered: {sub.stdout}{sub.stderr}")


def TokenRequestIssuesAuthenticatingToken(ns):
    kubectl("create", "serviceaccount", "nmi", "-n", ns)
    token = kubectl("create", "token", "nmi", "-n", ns, "--duration=10m").stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    check(claims["sub"] == f"system:serviceaccount:{ns}:nmi", f"token subject {claims['sub']}")
    cfg = json.loads(kubectl("config", "view", "--raw", "-o", "json").stdout)
    cluster = cfg["clusters"][0]["cluster"]
    with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
        ca.write(base64.b64decode(cluster["certificate-authority-data"]).decode())
        ca.flush()
        env = dict(ENV, KUBECONFIG=os.devnull)
        common = ["--server", cluster["server"], "--certificate-authority", ca.name,
                  "--token", token]
        who = kjson("auth", "whoami", *common, env=env)
        check(who["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:nmi",
              f"authenticated as {who['status']['userInfo']}")
        bad = kubectl("auth", "whoami", *common[:-1], token[:-4] + "AAAA", env=env, check_rc=False)
        check(bad.returncode != 0 and "Unauthorized" in bad.stderr, "a forged token authenticated")


def RbacIsEnforced(ns):
    kubectl("create", "serviceaccount", "reader", "-n", ns)
    who = f"--as=system:serviceaccount:{ns}:reader"
    can = kubectl("auth", "can-i", "list", "pods", "-n", ns, who, check_rc=False)
    check(can.stdout.strip() == "no", f"an unbound ServiceAccount may list pods: {can.stdout}")
    kubectl("create", "role", "pod-reader", "-n", ns, "--verb=get,list,watch", "--resource=pods")
    kubectl("create", "rolebinding", "reader", "-n", ns, "--role=pod-reader",
            f"--serviceaccount={ns}:reader")
    can = kubectl("auth", "can-i", "list", "pods", "-n", ns, who, check_rc=False)
    check(can.stdout.strip() == "yes", f"the bound ServiceAccount may not list pods: {can.stdout}")
    can = kubectl("auth", "can-i", "get", "secrets", "-n", ns, who, check_rc=False)
    check(can.stdout.strip() == "no", f"the ServiceAccount may read secrets: {can.stdout}")


CASES = {f.__name__: f for f in (
    KubectlReportsRealServerVersion, PodStatusIsPatchedThroughStatusSubresource,
    AadPodIdentityObjectsReadBackUnchanged, AssignedIdentityStatusPatchOnMainResourcePersists,
    TokenRequestIssuesAuthenticatingToken, RbacIsEnforced)}


def main(argv):
    names = argv[1:] or list(CASES)
    failed = 0
    for name in names:
        case = CASES.get(name)
        if case is None:
            print(f"unknown case {name}; known: {', '.join(CASES)}")
            return 2
        try:
            case(new_namespace(name))
            print(f"PASS {name}")
        except Failure as e:
            failed += 1
            print(f"FAIL {name}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
