"""The deployment artefacts (charts/nmi, deploy/*.yaml) against the real API server (kube-testenv).

helm and kubectl are the test environment's pinned builds (`kube-testenv env`). Every test that
creates objects works in a namespace of its own and installs releases under a unique name, so that
the cluster-scoped objects of the chart (ClusterRole, ClusterRoleBinding) never collide; releases
are uninstalled at the end (namespaces stay, as everywhere in the test environment).

ctest sets KUBE_TESTENV_DIR, NMI_KUBE_TESTENV, NMI_BINARY and NMI_EMULATOR.
"""
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(REPO, "charts", "nmi")
CRD_SOURCE = os.path.join(REPO, "deploy", "crds", "aadpodidentity.k8s.io.yaml")
CRD_COPY = os.path.join(CHART, "crds", "aadpodidentity.k8s.io.yaml")
TESTDATA = os.path.join(REPO, "tests", "kube", "testdata", "aad-pod-identity-v1.8.17")

from nmi_pytest import harness, kube
from nmi_pytest.kube import helm, kjson, kubectl, run
from nmi_pytest.objects import api_pod, assigned, binding, pod_status

FILE_INDEX = 21  # pod addresses 127.0.21.x and 127.0.22.x, ports 28400-29199
NAMESPACE_PREFIX = "deploy"
CRD_PLURALS = ["azureassignedidentities", "azureidentities", "azureidentitybindings",
               "azurepodidentityexceptions"]
AAD_GROUP = "aadpodidentity.k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]


def json_stream(text):
    """Objects printed one after another (kubectl -o json with several objects)."""
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.extend(obj["items"] if obj.get("kind") == "List" else [obj])


def objects(yaml_text):
    """The objects of a YAML stream, as JSON (kubectl parses; the API server is only asked for
    the kinds' REST mappings)."""
    return json_stream(kubectl("create", "--dry-run=client", "-o", "json", "-f", "-",
                               stdin=yaml_text).stdout)


def render(*args, release="nmi", namespace="default"):
    return helm("template", release, CHART, "--namespace", namespace, *args).stdout


def by_kind(objs, kind):
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, "%d objects of kind %s" % (len(found), kind)
    return found[0]


@pytest.fixture
def release():
    """A release name unique to the test; uninstalled (if installed) afterwards."""
    name = "nmi-" + uuid.uuid4().hex[:8]
    installed = []
    yield type("Release", (), {"name": name, "installed": installed})
    for namespace in installed:
        helm("uninstall", name, "-n", namespace, check=False)


def install(rel, namespace, *args):
    helm("install", rel.name, CHART, "-n", namespace, *args)
    rel.installed.append(namespace)


# ---------------------------------------------------------------------------------------------
# nmi's flags and the chart's values
# ---------------------------------------------------------------------------------------------

NOT_VALUES = {"help", "version", "node", "daemonset-name"}  # set by the chart itself


def nmi_flags():
    """{flag: (type word, default text or None)} of `nmi --help`, without the compatibility
    group (klog flags that have no effect)."""
    text = subprocess.run([harness.NMI_BINARY, "--help"], check=True, capture_output=True,
                          text=True).stdout
    flags, group = {}, None
    for line in text.splitlines():
        if re.fullmatch(r"[A-Z][^:]*:", line):
            group = line[:-1]
            continue
        m = re.match(r"^\s+(?:-\w,)?--([A-Za-z][\w-]*)(?: (\S+))?\s{2,}(.*)$", line)
        if not m or group is None or group.startswith("Compatibility"):
            continue
        d = re.search(r"\(default (.*?)\)(?: \[|$)", m.group(3))
        flags[m.group(1)] = (m.group(2) or "bool", d.group(1) if d else None)
    assert "nmi-port" in flags and "log-format" in flags, text
    return flags


def camel(flag):
    """The values key of a flag: --nmi-port -> nmiPort, --MICNamespace -> micNamespace."""
    parts = re.split(r"[-_]", flag)
    first = re.sub(r"^[A-Z]+(?=[A-Z][a-z])|^[A-Z]+$|^[A-Z]", lambda m: m.group().lower(), parts[0])
    return first + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def flag_values():
    """{key: (value text, documented nmi default)} of the flag section of values.yaml."""
    out = {}
    with open(os.path.join(CHART, "values.yaml")) as f:
        for line in f:
            m = re.match(r"^(\w+): (\S+)\s+# nmi: (.*?)(?:\. |\.?$)", line)
            if m:
                out[m.group(1)] = (m.group(2), m.group(3))
    return out


# A valid value for every flag, none of them nmi's default: rendering it must produce every flag.
ALL_FLAGS = {
    "nmiListenAddress": "127.0.0.1", "nmiPort": 2600, "httpProbePort": 2601, "prometheusPort": 2602,
    "ioThreads": 3, "maxConnections": 1000000, "maxConnectionsPerPeer": 100,
    "headerReadTimeoutSec": 11, "idleTimeoutSec": 61, "shutdownGraceSec": 6, "handoverWaitSec": 21,
    "metadataIp": "127.0.0.1", "metadataPort": 8081, "imdsTokenEndpoint": "127.0.0.1:8081",
    "metadataHeaderRequired": False, "blockInstanceMetadata": True, "disableHostToken": True,
    "setRetryAfterHeader": True, "proxyMaxConcurrent": 33, "proxyMaxConcurrentPerPod": 5,
    "operationMode": "standard", "forceNamespaced": True,
    "micNamespace": "aad-pod-identity", "enableScaleFeatures": False,
    "retryAttemptsForCreated": 17, "retryAttemptsForAssigned": 5, "findIdentityRetryInterval": 6,
    "podWaitTimeoutMs": 2500, "identityFile": "/etc/nmi/identities.json",
    "kubeconfig": "/etc/nmi/kubeconfig", "serviceAccountDir": "/etc/nmi/sa",
    "watchSilenceTimeoutSec": 91, "secretCacheTtlSec": 0, "aadCaFile": "/etc/nmi/aad-ca.pem",
    "aadAllowedHosts": "adfs.contoso.com,login.azurestack.example:8443",
    "customUserAgent": "contoso nmi/1", "tokenRetryBudgetSec": 31, "tokenRefreshAheadSec": 301,
    "tokenMinLifetimeSec": 61, "tokenCacheMaxEntries": 4097, "imdsMaxConcurrent": 6,
    "perPodMaxTokens": 33, "perPodMissRate": 2.5, "perPodMissBurst": 21,
    "iptUpdateIntervalSec": 61, "iptCheckIntervalSec": 4, "iptablesBackend": "legacy",
    "iptablesLockFile": "/run/nmi-xtables.lock", "disableInterception": True,
    "enableConntrackDeletion": True, "allowNetworkPluginKubenet": True,
    "kubeletConfig": "/etc/kubelet-defaults", "logFormat": "json", "v": 4,
}
EVERYTHING = dict(ALL_FLAGS, **{
    "rbac": {"allowAccessToSecrets": True},
    "metrics": {"service": {"enabled": True}, "serviceMonitor": {"enabled": True}},
    "extraArgs": ["--enableProfile=false"],
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}],
    "extraVolumes": [{"name": "nmi-config", "configMap": {"name": "nmi-config"}}],
    "extraVolumeMounts": [{"name": "nmi-config", "mountPath": "/etc/nmi", "readOnly": True}],
    "podAnnotations": {"example.com/a": "b"}, "podLabels": {"team": "identity"},
})


def values_file(tmp_path, values):
    path = os.path.join(str(tmp_path), "values.json")
    with open(path, "w") as f:
        json.dump(values, f)  # JSON is YAML
    return path


def daemonset_args(objs):
    return by_kind(objs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"]


SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors,
          singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""


def ensure_service_monitor_crd():
    """A stand-in for prometheus-operator's CRD (its schema is not checked, only the kind)."""
    kubectl("apply", "-f", "-", stdin=SERVICE_MONITOR_CRD)
    kubectl("wait", "--for=condition=Established", "--timeout=30s",
            "crd/servicemonitors.monitoring.coreos.com")


# ---------------------------------------------------------------------------------------------
# Lint, render, schema
# ---------------------------------------------------------------------------------------------

def test_helm_lint_strict(tmp_path):
    full = values_file(tmp_path, EVERYTHING)
    for args in ([], ["--set", "operationMode=managed"], ["-f", full],
                 ["-f", full, "--set", "operationMode=managed"]):
        out = helm("lint", "--strict", CHART, *args).stdout
        assert "1 chart(s) linted, 0 chart(s) failed" in out, out
        assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_values_cover_every_flag(tmp_path):
    flags = nmi_flags()
    wanted = {f: camel(f) for f in flags if f not in NOT_VALUES}
    documented = flag_values()
    schema = json.load(open(os.path.join(CHART, "values.schema.json")))["properties"]
    missing = sorted(k for k in wanted.values() if k not in documented)
    assert not missing, "flags of nmi without a key in values.yaml: %s" % missing
    extra = sorted(k for k in documented if k not in wanted.values())
    assert not extra, "keys in values.yaml for flags nmi does not have: %s" % extra
    assert sorted(k for k in wanted.values() if k not in schema) == []
    assert sorted(k for k in wanted.values() if k not in ALL_FLAGS) == []
    # The documented default ("nmi: ...") is the one `nmi --help` shows.
    for flag, key in wanted.items():
        shown = flags[flag][1]
        if shown is None:
            shown = "false" if flags[flag][0] == "bool" else '""'
        assert documented[key][1] == shown, \
            "values.yaml says %s defaults to %s, nmi --help says %s" % (
                key, documented[key][1], shown)
    # Every flag reaches the command line, once, from its key.
    args = daemonset_args(objects(render("-f", values_file(tmp_path, ALL_FLAGS))))
    given = {}
    for a in args:
        m = re.fullmatch(r"--([\w-]+)=(.*)", a)
        assert m, a
        given.setdefault(m.group(1), []).append(m.group(2))
    for flag, key in wanted.items():
        assert len(given.get(flag, [])) == 1, "--%s given %s times" % (flag, given.get(flag))
        value = ALL_FLAGS[key]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        assert given[flag][0] == text, (flag, given[flag], text)
    assert given["node"] == ["$(NODE_NAME)"]
    assert given["daemonset-name"] == ["nmi"]
    chart_set = {"node", "daemonset-name"}
    assert set(given) == set(wanted) | chart_set, set(given) ^ (set(wanted) | chart_set)


def test_default_args_are_minimal_and_modes_differ():
    std = daemonset_args(objects(render()))
    assert std == ["--node=$(NODE_NAME)", "--daemonset-name=nmi", "--nmi-port=2579",
                   "--http-probe-port=8085",
                   "--prometheus-port=9090", "--operation-mode=standard",
                   "--forceNamespaced=false"], std
    managed = daemonset_args(objects(render("--set", "operationMode=managed")))
    assert managed[-2:] == ["--operation-mode=managed", "--forceNamespaced=true"], managed
    forced = daemonset_args(objects(render("--set", "forceNamespaced=true")))
    assert forced[-1] == "--forceNamespaced=true", forced


def test_rendered_args_are_accepted_by_nmi(tmp_path):
    """The command line of a chart with every flag set is one nmi accepts: it gets past its
    configuration and fails only at the identity file, which does not exist here."""
    args = daemonset_args(objects(render("-f", values_file(tmp_path, ALL_FLAGS))))
    args = [a.replace("$(NODE_NAME)", "node-args") for a in args]
    # Safety: no interception rules, whatever the values say (the last occurrence wins).
    args += ["--disable-interception", "--identity-file=%s/none.json" % tmp_path]
    p = subprocess.run([harness.NMI_BINARY] + args, capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "invalid value" not in out and "unknown flag" not in out, out
    assert re.search(r"starting nmi version=\S+ mode=standard namespaced=true", out) or \
        '"starting nmi' in out, out
    assert "none.json" in out, out


BAD_VALUES = [
    (["--set", "nmiPort=0"], "/nmiPort': minimum"),
    (["--set", "httpProbePort=65536"], "/httpProbePort': maximum"),
    (["--set", "operationMode=Managed"], "/operationMode': value must be one of"),
    (["--set", "operationMode=managed", "--set", "forceNamespaced=false"], "/forceNamespaced'"),
    (["--set", "iptablesBackend=iptables"], "/iptablesBackend'"),
    (["--set", "logFormat=yaml"], "/logFormat'"),
    (["--set", "metadataIp=0.0.0.0"], "/metadataIp'"),
    (["--set", "nmiListenAddress=::1"], "/nmiListenAddress'"),
    (["--set", "imdsTokenEndpoint=169.254.169.254"], "/imdsTokenEndpoint'"),
    (["--set", "aadAllowedHosts=https://adfs.contoso.com/adfs"], "/aadAllowedHosts'"),
    (["--set", "ioThreads=0"], "/ioThreads'"),
    (["--set", "perPodMissRate=0"], "/perPodMissRate'"),
    (["--set-string", "v=4"], "/v'"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy'"),
    (["--set", "nmiport=2579"], "additional properties 'nmiport' not allowed"),
    (["--set", "prometheusPort=8085"], "nmi needs three different ports"),
    (["--set", "metrics.declareContainerPort=true"], "needs updateStrategy.maxSurge 0"),
    (["--set", "updateStrategy.maxSurge=0"], "cannot both be 0"),
    (["--set", "metrics.serviceMonitor.enabled=true"], "needs metrics.service.enabled"),
]


@pytest.mark.parametrize("args,message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_rejected(args, message):
    p = helm("template", "nmi", CHART, *args, check=False)
    assert p.returncode != 0, "accepted %s" % args
    assert message in p.stderr, p.stderr


def test_deploy_manifests_match_a_fresh_render(tmp_path):
    with open(CRD_SOURCE, "rb") as a, open(CRD_COPY, "rb") as b:
        assert a.read() == b.read(), \
            "charts/nmi/crds/ differs from deploy/crds/: run scripts/render-manifests"
    run(os.path.join(REPO, "scripts", "render-manifests"), "--out-dir", str(tmp_path))
    for name in ("nmi-standard.yaml", "nmi-managed.yaml"):
        with open(os.path.join(REPO, "deploy", name), "rb") as f:
            committed = f.read()
        with open(os.path.join(str(tmp_path), name), "rb") as f:
            fresh = f.read()
        assert committed == fresh, "deploy/%s is stale: run scripts/render-manifests" % name
        assert committed.startswith(b"# nmi "), name
    std = objects(open(os.path.join(REPO, "deploy", "nmi-standard.yaml")).read())
    assert sorted(o["kind"] for o in std) == sorted(
        ["CustomResourceDefinition"] * 4 + ["ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                            "Role", "RoleBinding", "DaemonSet"])
    assert {o["metadata"].get("namespace") for o in std if o["kind"] != "CustomResourceDefinition"
            and not o["kind"].startswith("Cluster")} == {"kube-system"}


# ---------------------------------------------------------------------------------------------
# The API server
# ---------------------------------------------------------------------------------------------

def server_dry_run(yaml_text, namespace):
    return json_stream(kubectl("apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f",
                               "-", stdin=yaml_text).stdout)


def test_every_object_passes_server_side_dry_run(ns, tmp_path):
    ensure_service_monitor_crd()
    variants = {
        "standard": [],
        "managed": ["--set", "operationMode=managed"],
        "everything": ["-f", values_file(tmp_path, EVERYTHING)],
    }
    for name, args in variants.items():
        text = render(*args, release="nmi-" + name, namespace=ns)
        applied = server_dry_run(text, ns)
        kinds = sorted(o["kind"] for o in applied)
        want = ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Role", "RoleBinding",
                "ServiceAccount"]
        if name == "everything":
            want += ["Service", "ServiceMonitor"]
        assert kinds == sorted(want), (name, kinds)
        ds = by_kind(applied, "DaemonSet")
        pod = ds["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
        assert pod["priorityClassName"] == "system-node-critical"
        assert pod["tolerations"] == [{"operator": "Exists"}]
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert ds["spec"]["updateStrategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"],
                                                        "add": ["NET_ADMIN", "NET_RAW"]}
        for k, v in {"runAsUser": 0, "privileged": False, "allowPrivilegeEscalation": False,
                     "readOnlyRootFilesystem": True}.items():
            assert c["securityContext"][k] == v, (k, c["securityContext"])
        assert "ports" not in c  # see test_declared_port_of_a_host_network_pod_is_a_host_port
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        probe_port = 2601 if name == "everything" else 8085
        assert c["livenessProbe"]["httpGet"]["port"] == probe_port
        assert c["readinessProbe"]["httpGet"]["port"] == probe_port
        assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "spec.nodeName"}}} in c["env"]
        assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}} in c["env"]
        assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.name"}}} in c["env"]
        assert c["args"][:2] == ["--node=$(NODE_NAME)", "--daemonset-name=nmi-" + name]
        role = by_kind(applied, "Role")
        assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["daemonsets"],
                                  "resourceNames": ["nmi-" + name],
                                  "verbs": ["get", "list", "watch"]}], role
        lock = [v for v in pod["volumes"] if v["name"] == "xtables-lock"][0]
        assert lock["hostPath"] == {"path": "/run/xtables.lock", "type": "FileOrCreate"}
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["kubelet-config"]["readOnly"] is True
        if name == "everything":
            assert mounts["xtables-lock"]["mountPath"] == "/run/nmi-xtables.lock"
            assert mounts["kubelet-config"]["mountPath"] == "/etc/kubelet-defaults"
    # The plain manifests (namespace kube-system; CRDs included): CRDs as installed.
    for name in ("nmi-standard.yaml", "nmi-managed.yaml"):
        text = open(os.path.join(REPO, "deploy", name)).read()
        applied = server_dry_run(text, "kube-system")
        assert len(applied) == 10, [o["kind"] for o in applied]
        for crd in (o for o in applied if o["kind"] == "CustomResourceDefinition"):
            live = kjson("get", "crd", crd["metadata"]["name"])
            assert crd["spec"] == live["spec"], crd["metadata"]["name"]
    # kubectl apply -l selects nmi's objects and leaves the CRDs out (switching from
    # aad-pod-identity with the plain manifests, docs/operations.md).
    applied = json_stream(kubectl(
        "apply", "--dry-run=server", "-o", "json", "-l", "app.kubernetes.io/name=nmi",
        "-f", os.path.join(REPO, "deploy", "nmi-standard.yaml")).stdout)
    assert sorted(o["kind"] for o in applied) == ["ClusterRole", "ClusterRoleBinding", "DaemonSet",
                                                  "Role", "RoleBinding", "ServiceAccount"]


def test_chart_crds_are_the_installed_crds():
    """The chart's crds/ (= deploy/crds/) describe exactly the CRDs the API server has, which
    are the ones aad-pod-identity v1.8.17's objects are accepted by (tests/kube)."""
    applied = json_stream(kubectl("apply", "--dry-run=server", "-o", "json", "-f",
                                  CRD_COPY).stdout)
    assert sorted(o["spec"]["names"]["plural"] for o in applied) == CRD_PLURALS
    for crd in applied:
        live = kjson("get", "crd", crd["metadata"]["name"])
        assert crd["spec"] == live["spec"], crd["metadata"]["name"]
        assert crd["spec"]["group"] == AAD_GROUP
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]
        assert "shortNames" not in crd["spec"]["names"]


def test_declared_port_of_a_host_network_pod_is_a_host_port(ns):
    """Why the chart declares no container port by default: with hostNetwork the API server
    turns a declared port into a hostPort, and the scheduler then refuses the surge pod of a
    rolling update (maxSurge 1) on a node where the old pod holds it."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet", "namespace": ns},
           "spec": {"hostNetwork": True, "containers": [{
               "name": "c", "image": "x", "ports": [{"name": "metrics", "containerPort": 9090}]}]}}
    got = json_stream(kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                              stdin=json.dumps(pod)).stdout)[0]
    assert got["spec"]["containers"][0]["ports"][0]["hostPort"] == 9090, got
    declared = objects(render("--set", "metrics.declareContainerPort=true",
                              "--set", "updateStrategy.maxSurge=0",
                              "--set", "updateStrategy.maxUnavailable=1"))
    c = by_kind(declared, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]


def aad_objects(namespace):
    """aad-pod-identity v1.8.17's objects, as its users apply them, created in `namespace`;
    returns {(kind, name): object as read back}."""
    created = json_stream(kubectl("create", "-n", namespace, "-o", "json", "-f", TESTDATA).stdout)
    out = {(obj["kind"], obj["metadata"]["name"]): obj for obj in created}
    assert len(out) == 6 == len(os.listdir(TESTDATA)), sorted(out)
    return out


def read_back(namespace, objs):
    """The objects as the API server has them now (one kubectl call)."""
    names = ["%s.%s/%s" % (k.lower(), AAD_GROUP, n) for (k, n) in sorted(objs)]
    got = json_stream(kubectl("get", "-n", namespace, "-o", "json", *names).stdout)
    return {(o["kind"], o["metadata"]["name"]): o for o in got}


def crd_state():
    got = json_stream(kubectl("get", "crd", "-o", "json",
                              *["%s.%s" % (p, AAD_GROUP) for p in CRD_PLURALS]).stdout)
    return {o["spec"]["names"]["plural"]: o for o in got}


def assert_crds_unchanged(before, after):
    for plural in CRD_PLURALS:
        b, a = before[plural], after[plural]
        assert a["metadata"]["uid"] == b["metadata"]["uid"], plural
        assert a["spec"] == b["spec"], plural
        for field in ("labels", "annotations", "finalizers"):
            assert a["metadata"].get(field) == b["metadata"].get(field), (plural, field)
        assert a["status"]["acceptedNames"] == b["status"]["acceptedNames"], plural
        assert a["status"]["storedVersions"] == b["status"]["storedVersions"], plural


def test_switch_over_keeps_aad_pod_identity_objects_and_crds(ns, release):
    """aad-pod-identity's objects first, then the chart (install, switch to managed mode,
    uninstall): the objects are never touched, and neither are the CRDs' definitions."""
    objs = aad_objects(ns)
    crds = crd_state()
    install(release, ns)
    assert read_back(ns, objs) == objs  # byte for byte, resourceVersion and managedFields included
    assert_crds_unchanged(crds, crd_state())
    role = kjson("get", "clusterrole", release.name)
    assert "azureassignedidentities" in role["rules"][1]["resources"]
    assert kjson("get", "daemonset", release.name, "-n", ns)["spec"]["template"]["spec"][
        "serviceAccountName"] == release.name

    helm("upgrade", release.name, CHART, "-n", ns, "--set", "operationMode=managed")
    assert read_back(ns, objs) == objs
    role = kjson("get", "clusterrole", release.name)
    assert "azureassignedidentities" not in role["rules"][1]["resources"], role["rules"]
    args = kjson("get", "daemonset", release.name, "-n", ns)["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert "--operation-mode=managed" in args and "--forceNamespaced=true" in args, args

    helm("uninstall", release.name, "-n", ns)
    release.installed.remove(ns)
    assert read_back(ns, objs) == objs
    assert_crds_unchanged(crds, crd_state())  # crds/ are never deleted by helm
    for kind, name in (("daemonset", release.name), ("clusterrole", release.name),
                       ("clusterrolebinding", release.name), ("serviceaccount", release.name),
                       ("role", release.name + "-self")):
        p = kubectl("get", kind, name, "-n", ns, check=False)
        assert p.returncode != 0 and "NotFound" in p.stderr, (kind, p.stdout)


def test_helm_v4_conflicts_with_foreign_crds_unless_skipped(ns, release, tmp_path):
    """helm v4 applies crds/ server-side (helm v3 created them and skipped existing ones). CRDs
    another tool installed with different content (aad-pod-identity's own CRDs) make
    `helm install` fail on a field conflict before it creates anything; `--skip-crds` (or
    `--server-side=false`) installs and leaves them alone. Shown on a CRD of a group of this
    test's own, so that the shared aadpodidentity.k8s.io CRDs stay untouched."""
    group = "t%s.nmi-test.example.com" % uuid.uuid4().hex[:8]
    crd = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.%s
spec:
  group: %s
  scope: Namespaced
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        description: %%s
        type: object
        x-kubernetes-preserve-unknown-fields: true
""" % (group, group)
    chart = os.path.join(str(tmp_path), "nmi")
    shutil.copytree(CHART, chart)
    os.remove(os.path.join(chart, "crds", "aadpodidentity.k8s.io.yaml"))
    with open(os.path.join(chart, "crds", "widgets.yaml"), "w") as f:
        f.write(crd % "as the chart has it")
    # As aad-pod-identity's Helm 3 chart left it: created, field manager "helm".
    kubectl("create", "--field-manager=helm", "-f", "-", stdin=crd % "as another tool left it")
    try:
        before = kjson("get", "crd", "widgets." + group)
        p = helm("install", release.name, chart, "-n", ns, check=False)
        assert p.returncode != 0 and "conflict" in p.stderr, p.stdout + p.stderr
        assert kubectl("get", "daemonset", release.name, "-n", ns, check=False).returncode != 0
        assert kjson("get", "crd", "widgets." + group)["metadata"]["resourceVersion"] == \
            before["metadata"]["resourceVersion"]
        for extra in (["--skip-crds"], ["--server-side=false"]):
            helm("install", release.name, chart, "-n", ns, *extra)
            release.installed.append(ns)
            after = kjson("get", "crd", "widgets." + group)
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
            assert after["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] == \
                "as another tool left it"
            helm("uninstall", release.name, "-n", ns)
            release.installed.remove(ns)
    finally:
        kubectl("delete", "crd", "widgets." + group, "--wait=false", check=False)


def can_i(sa, verb, resource, namespace, *extra):
    """One `kubectl auth can-i --as` (a SelfSubjectAccessReview with impersonation)."""
    p = kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", sa, *extra, check=False)
    answer = p.stdout.strip()
    assert answer in ("yes", "no"), p.stdout + p.stderr
    return answer == "yes"


def access_reviews(sa, checks):
    """The API server's answers for many checks at once: one SubjectAccessReview per check,
    created in one kubectl call (the authorizer `auth can-i` asks, without a process per check).
    A check is (verb, "resource[.group][/name]", namespace[, subresource]); returns
    {check: allowed}."""
    ns_of_sa = sa.split(":")[2]
    items = []
    for check in checks:
        verb, what, namespace = check[:3]
        resource, _, name = what.partition("/")
        resource, _, group = resource.partition(".")
        attrs = {"verb": verb, "resource": resource, "group": group, "namespace": namespace,
                 "name": name}
        if len(check) > 3:
            attrs["subresource"] = check[3]
        items.append({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "spec": {"user": sa, "groups": ["system:serviceaccounts",
                                                      "system:serviceaccounts:" + ns_of_sa,
                                                      "system:authenticated"],
                               "resourceAttributes": attrs}})
    out = json_stream(kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": items})).stdout)
    assert len(out) == len(checks), out
    return {check: bool(o["status"].get("allowed")) for check, o in zip(checks, out)}


def assert_rules_read_only(sa, namespace, release_name):
    """`auth can-i --list`: every verb is get, list or watch, apart from what every
    authenticated user may do (self reviews, discovery)."""
    out = kubectl("auth", "can-i", "--list", "-n", namespace, "--as", sa).stdout
    self_reviews = {"selfsubjectreviews.authentication.k8s.io",
                    "selfsubjectaccessreviews.authorization.k8s.io",
                    "selfsubjectrulesreviews.authorization.k8s.io"}
    resources = set()
    for line in out.splitlines()[1:]:
        if not line.strip() or line[0].isspace():
            continue  # a non-resource URL (discovery, /version, ...)
        resource, verbs = line.split()[0], re.findall(r"[\w*]+", line[line.rfind("["):])
        if resource in self_reviews:
            continue
        assert set(verbs) <= set(READ), line
        resources.add(resource)
    return resources


def expected_access(ns, release_name, standard, secrets):
    """{check: allowed} of everything the chart's ServiceAccount may and may not do."""
    other = "kube-system"
    crs = ["%s.%s" % (p, AAD_GROUP) for p in CRD_PLURALS]
    want = {}
    for where in (ns, other):
        for verb in READ:
            want[(verb, "pods", where)] = True
            for r in crs:
                want[(verb, r, where)] = standard or not r.startswith("azureassignedidentities")
        for verb in WRITE:
            for r in ["pods", "secrets", "configmaps", "daemonsets.apps", "nodes"] + crs:
                want[(verb, r, where)] = False
        want[("get", "secrets", where)] = secrets
        for verb, what in (("list", "secrets"), ("watch", "secrets"), ("get", "configmaps"),
                           ("list", "configmaps"), ("get", "nodes"), ("list", "nodes"),
                           ("get", "serviceaccounts"), ("get", "daemonsets.apps"),
                           ("list", "daemonsets.apps"), ("watch", "daemonsets.apps"),
                           ("get", "daemonsets.apps/kube-proxy"), ("create", "events"),
                           ("get", "customresourcedefinitions.apiextensions.k8s.io")):
            want[(verb, what, where)] = False
        for verb, sub, what in (("patch", "status", "pods"), ("update", "status", "pods"),
                                ("create", "exec", "pods"), ("create", "eviction", "pods"),
                                ("create", "token", "serviceaccounts")):
            want[(verb, what, where, sub)] = False
        # nmi-self: its own DaemonSet, by name, in its namespace only.
        for verb in READ:
            want[(verb, "daemonsets.apps/" + release_name, where)] = where == ns
        for verb in ("update", "patch", "delete"):
            want[(verb, "daemonsets.apps/" + release_name, where)] = False
        want[("get", "daemonsets.apps/%s-other" % release_name, where)] = False
    return want


def assert_access(sa, ns, release_name, standard, secrets):
    want = expected_access(ns, release_name, standard, secrets)
    got = access_reviews(sa, list(want))
    wrong = sorted((check, got[check]) for check in want if got[check] != want[check])
    assert not wrong, "allowed/denied unlike expected: %s" % wrong
    # The same authorizer through kubectl auth can-i, for a few of them.
    for check in (("get", "pods", ns), ("get", "secrets", ns), ("list", "secrets", ns),
                  ("get", "daemonsets.apps/" + release_name, ns),
                  ("delete", "daemonsets.apps/" + release_name, ns)):
        assert can_i(sa, *check) == want[check], check


def test_rbac_is_least_privilege(ns, release):
    install(release, ns)
    sa = "system:serviceaccount:%s:%s" % (ns, release.name)

    assert_access(sa, ns, release.name, standard=True, secrets=False)
    resources = assert_rules_read_only(sa, ns, release.name)
    assert "secrets" not in resources and "pods" in resources, resources

    helm("upgrade", release.name, CHART, "-n", ns, "--reuse-values",
         "--set", "rbac.allowAccessToSecrets=true")
    assert_access(sa, ns, release.name, standard=True, secrets=True)
    assert "secrets" in assert_rules_read_only(sa, ns, release.name)

    helm("upgrade", release.name, CHART, "-n", ns, "--reuse-values",
         "--set", "operationMode=managed")
    assert_access(sa, ns, release.name, standard=False, secrets=True)
    assert_rules_read_only(sa, ns, release.name)

    # Without removeRulesOnUninstall there is no Role for the DaemonSet, and no flag.
    helm("upgrade", release.name, CHART, "-n", ns, "--reuse-values",
         "--set", "removeRulesOnUninstall=false")
    assert not can_i(sa, "get", "daemonsets.apps/" + release.name, ns)
    args = kjson("get", "daemonset", release.name, "-n", ns)["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert not [a for a in args if a.startswith("--daemonset-name")], args


# ---------------------------------------------------------------------------------------------
# nmi itself with the chart's ServiceAccount
# ---------------------------------------------------------------------------------------------

def test_nmi_flags_include_the_kubernetes_source():
    """The Kubernetes identity source is built in (the next tests need it)."""
    flags = nmi_flags()
    assert "kubeconfig" in flags and "service-account-dir" in flags, sorted(flags)


class ChartNmi(harness.Nmi):
    """nmi with the DaemonSet's arguments as installed by the chart, then what differs on this
    machine: its own ports, the emulator as the metadata endpoint, no interception rules, a
    kubeconfig holding a TokenRequest token of the chart's ServiceAccount."""

    def __init__(self, emulator, node, chart_args, kubeconfig, file_index):
        super().__init__(emulator, [], file_index, node=node)
        self.chart_args = [a.replace("$(NODE_NAME)", node) for a in chart_args]
        self.kubeconfig = kubeconfig

    def argv(self):
        mhost, mport = self.metadata_endpoint.rsplit(":", 1)
        return ([harness.NMI_BINARY] + self.chart_args +
                ["--nmi-port=%d" % self.port, "--http-probe-port=%d" % self.probe_port,
                 "--prometheus-port=%d" % self.metrics_port,
                 "--metadata-ip=" + mhost, "--metadata-port=" + mport,
                 "--imds-token-endpoint=" + self.imds_endpoint,
                 "--aad-ca-file=" + self.emulator.aad_ca,
                 "--aad-allowed-hosts=" + self.emulator.aad_addr, "--disable-interception",
                 "--kubeconfig=" + self.kubeconfig, "--pod-wait-timeout-ms=500", "-v=4"])


SP_ID = harness.client_id_for("deploy-sp")
SP_SECRET = "deploy-sp-s3cret"
MI_ID = harness.client_id_for("deploy-mi")
RESOURCE = "https://vault.azure.net"


@pytest.fixture(scope="module")
def emulator_identities():
    return {"user_assigned": [{"client_id": MI_ID,
                               "resource_id": "/subscriptions/0/resourceGroups/rg/providers/"
                               "Microsoft.ManagedIdentity/userAssignedIdentities/deploy-mi"}],
            "apps": [{"tenant_id": harness.TENANT, "client_id": SP_ID, "secret": SP_SECRET}]}


def sa_kubeconfig(ns, sa, workdir):
    """A kubeconfig with a TokenRequest token of ServiceAccount ns/sa (nothing else in it)."""
    token = kube.service_account_token(ns, sa)
    cluster = kjson("config", "view", "--raw")["clusters"][0]["cluster"]
    with open(os.path.join(workdir, "ca.crt"), "wb") as f:
        f.write(base64.b64decode(cluster["certificate-authority-data"]))
    with open(os.path.join(workdir, "token"), "w") as f:
        f.write(token)
    return kube.token_kubeconfig(os.path.join(workdir, "kubeconfig"), cluster["server"],
                                 "token"), token


def create_pod(ns, name, node, ip, selector):
    kubectl("create", "-f", "-",
            stdin=json.dumps(api_pod(name, ns, node, {"aadpodidbinding": selector})))
    kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge", "-p",
            json.dumps(pod_status(ip)))


def create_identity(ns, name, node, pod, selector, spec, standard):
    identity = {"apiVersion": AAD_GROUP + "/v1", "kind": "AzureIdentity",
                "metadata": {"name": name, "namespace": ns}, "spec": spec}
    bind = binding(name + "-binding", ns, name, selector)
    kubectl("create", "-f", "-", stdin=json.dumps(identity))
    kubectl("create", "-f", "-", stdin=json.dumps(bind))
    if standard:  # what MIC would write
        kubectl("create", "-f", "-", stdin=json.dumps(assigned(
            {"name": pod, "namespace": ns}, identity, binding_obj=bind, node=node, replicas=1)))


@pytest.mark.parametrize("mode,secrets", [("standard", True), ("managed", False)])
def test_nmi_syncs_with_the_chart_service_account(ns, release, emulator, mode, secrets):
    """nmi with the chart's arguments and a token of the chart's ServiceAccount: every cache
    syncs (/readyz 200) with no forbidden answer, it serves a managed identity and a service
    principal when rbac.allowAccessToSecrets is true, and when it is false the Secret read is
    refused and the service principal gets no token."""
    install(release, ns, "--set", "operationMode=" + mode,
            "--set", "rbac.allowAccessToSecrets=%s" % str(secrets).lower())
    args = kjson("get", "daemonset", release.name, "-n", ns)["spec"]["template"]["spec"][
        "containers"][0]["args"]
    node = "deploy-node-" + uuid.uuid4().hex[:6]
    file_index = FILE_INDEX if mode == "standard" else FILE_INDEX + 1
    ips = harness.PodIps(file_index)
    ip_mi, ip_sp = ips.next(), ips.next()
    standard = mode == "standard"
    create_pod(ns, "pod-mi", node, ip_mi, "sel-mi")
    create_identity(ns, "id-mi", node, "pod-mi", "sel-mi",
                    {"type": 0, "clientID": MI_ID, "resourceID": ""}, standard)
    kubectl("create", "secret", "generic", "sp-secret", "-n", ns,
            "--from-literal=clientSecret=" + SP_SECRET)
    create_pod(ns, "pod-sp", node, ip_sp, "sel-sp")
    create_identity(ns, "id-sp", node, "pod-sp", "sel-sp",
                    {"type": 1, "clientID": SP_ID, "tenantID": harness.TENANT,
                     "adEndpoint": emulator.aad_url + "/",
                     "clientPassword": {"name": "sp-secret", "namespace": ns}}, standard)

    work = tempfile.mkdtemp(prefix="nmi-deploy-")
    kubeconfig, token = sa_kubeconfig(ns, release.name, work)
    n = ChartNmi(emulator, node, args, kubeconfig, file_index)
    try:
        n.start(ready_timeout=30.0)
        assert n.probe("/readyz").status == 200
        log = n.log()
        assert "forbidden" not in log.lower() and " 403" not in log, log
        assert re.search(r"starting nmi version=\S+ mode=%s namespaced=%s" % (
            mode, "true" if mode == "managed" else "false"), log), log
        r = n.token(ip_mi, resource=RESOURCE, timeout=60)
        assert r.status == 200 and r.json()["client_id"] == MI_ID, r
        r = n.token(ip_sp, resource=RESOURCE, timeout=60)
        if secrets:
            assert r.status == 200 and r.json()["client_id"] == SP_ID, r
            assert "forbidden" not in n.log().lower()
        else:
            assert r.status != 200, r
            assert re.search(r"secrets? .*forbidden|403", n.log(), re.I), n.log()[-3000:]
            assert n.probe("/readyz").status == 200  # one refused Secret is not unreadiness
        assert token not in n.log()
    finally:
        n.stop(check=False)
        shutil.rmtree(work, ignore_errors=True)
