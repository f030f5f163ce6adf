#!/usr/bin/env python3
"""Kubernetes scale benchmark of nmi (docs/benchmarks.md, "Kubernetes scale").

One real API server (scripts/kube-testenv, started here in a temporary directory unless
--testenv-dir names a running one) holds PODS pods of which NODE_PODS run on nmi's node,
IDENTITIES AzureIdentities, BINDINGS AzureIdentityBindings and one Assigned AzureAssignedIdentity
per pod of the node. Objects are created in parallel over kept-alive HTTPS connections with the
admin client certificate; pod addresses are set through the status subresource. Then nmi starts
(--kubeconfig, this node) and the script reports: the time until /readyz answers 200 and nmi's own
"identity caches synced" time, VmRSS and VmHWM (/proc/<pid>/status), the objects each cache holds,
and token request latencies (first request of a pod: an IMDS call; then the cached answer).

    /var/cache/nmi/venv/bin/python bench/kube_scale.py [--build build] [--pods 5000] ...

Pods of the node get addresses 127.1.x.y (loopback, so the client can send from them).
tests/kube/test_nmi_kube_scale.py runs a small version in `make test` with populate().
"""
import argparse
import base64
import concurrent.futures
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTENV = os.path.join(REPO, "scripts", "kube-testenv")
CRD = "/apis/aadpodidentity.k8s.io/v1/namespaces/%s/%s"
API = "aadpodidentity.k8s.io/v1"


class Cluster:
    """The API server through the admin kubeconfig's client certificate; one kept-alive HTTPS
    connection per calling thread."""

    def __init__(self, kubeconfig, workdir):
        with open(kubeconfig) as f:
            text = f.read()

        def field(name):
            m = re.search(r"^\s*%s: (\S+)$" % re.escape(name), text, re.M)
            assert m, "%s: no %s" % (kubeconfig, name)
            return m.group(1)

        m = re.fullmatch(r"https://([^:/]+):(\d+)/?", field("server"))
        self.host, self.port = m.group(1), int(m.group(2))
        self.ca_pem = base64.b64decode(field("certificate-authority-data"))
        paths = {}
        for name, key in (("ca.crt", None), ("admin.crt", "client-certificate-data"),
                          ("admin.key", "client-key-data")):
            paths[name] = os.path.join(workdir, "bench-" + name)
            with open(paths[name], "wb") as f:
                f.write(self.ca_pem if key is None else base64.b64decode(field(key)))
            os.chmod(paths[name], 0o600)
        self.ctx = ssl.create_default_context(cafile=paths["ca.crt"])
        self.ctx.load_cert_chain(paths["admin.crt"], paths["admin.key"])
        self.local = threading.local()
        self.requests = 0
        self.lock = threading.Lock()

    def request(self, method, path, body=None, content_type="application/json"):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                   timeout=60)
                self.local.conn = conn
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.status == 429 and attempt < 2:
                time.sleep(float(resp.getheader("Retry-After") or 1))
                continue
            break
        with self.lock:
            self.requests += 1
        if resp.status not in (200, 201):
            raise RuntimeError("%s %s: %d %s" % (method, path, resp.status, payload[:300]))
        return json.loads(payload) if payload else None


# ---------------------------------------------------------------------------------------------
# The objects
# ---------------------------------------------------------------------------------------------

def identity_obj(ns, name, client_id):
    return {"apiVersion": API, "kind": "AzureIdentity", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": 0, "resourceID": "", "clientID": client_id}}


def binding_obj(ns, name, identity, selector):
    return {"apiVersion": API, "kind": "AzureIdentityBinding",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"azureIdentity": identity, "selector": selector}}


def pod_obj(ns, name, node, selector):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"aadpodidbinding": selector,
                                                                   "app": "bench"}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]}}


def aai_obj(ns, pod, node, identity, binding):
    return {"apiVersion": API, "kind": "AzureAssignedIdentity",
            "metadata": {"name": "%s-%s-%s" % (pod, ns, identity["metadata"]["name"]),
                         "namespace": ns, "labels": {"nodename": node}},
            "spec": {"azureIdentityRef": identity, "azureBindingRef": binding, "pod": pod,
                     "podNamespace": ns, "nodename": node, "replicas": 1},
            "status": {"status": "Assigned", "availableReplicas": 1}}


def plan(namespaces, node, node_ips, other_pods, identities, bindings, client_id, other_ips=True):
    """The objects, as (kind, ns, object, status-IP or None) in creation order. Node pod i uses
    binding i % bindings, which names identity i % identities."""
    out = []
    ids = []
    for i in range(identities):
        ns = namespaces[i % len(namespaces)]
        ids.append(identity_obj(ns, "id-%d" % i, client_id(i)))
        out.append(("azureidentities", ns, ids[-1], None))
    binds = []
    for i in range(bindings):
        identity = ids[i % identities]
        ns = identity["metadata"]["namespace"]
        binds.append(binding_obj(ns, "bind-%d" % i, identity["metadata"]["name"], "sel-%d" % i))
        out.append(("azureidentitybindings", ns, binds[-1], None))
    for i, ip in enumerate(node_ips):
        binding = binds[i % bindings]
        ns = binding["metadata"]["namespace"]
        identity = ids[(i % bindings) % identities]
        name = "node-pod-%d" % i
        out.append(("pods", ns, pod_obj(ns, name, node, binding["spec"]["selector"]), ip))
        out.append(("azureassignedidentities", ns, aai_obj(ns, name, node, identity, binding),
                    None))
    for i in range(other_pods):
        ns = namespaces[i % len(namespaces)]
        ip = None
        if other_ips:
            ip = "10.%d.%d.%d" % (100 + i // 62500, (i // 250) % 250, i % 250 + 1)
        out.append(("pods", ns, pod_obj(ns, "other-pod-%d" % i, "other-node-%d" % (i % 40),
                                        "sel-%d" % (i % max(1, bindings))), ip))
    return out


def populate(cluster, objects, workers=8):
    """Creates the objects with `workers` parallel connections; pods get their address through the
    status subresource. Returns the seconds it took."""
    def create(item):
        kind, ns, obj, ip = item
        if kind == "pods":
            cluster.request("POST", "/api/v1/namespaces/%s/pods" % ns, obj)
            if ip is not None:
                cluster.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status"
                                % (ns, obj["metadata"]["name"]),
                                {"status": {"phase": "Running", "podIP": ip,
                                            "podIPs": [{"ip": ip}]}},
                                content_type="application/merge-patch+json")
        else:
            cluster.request("POST", CRD % (ns, kind), obj)

    t0 = time.monotonic()
    # Identities and bindings first (pods' assignments refer to them), then the rest.
    first = [o for o in objects if o[0] in ("azureidentities", "azureidentitybindings")]
    rest = [o for o in objects if o[0] not in ("azureidentities", "azureidentitybindings")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in (first, rest):
            for f in [pool.submit(create, o) for o in batch]:
                f.result()
    return time.monotonic() - t0


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
    return out


def synced_counts(log):
    m = re.search(r"identity caches synced in (\d+) ms:((?: \w+=\d+)+)", log)
    if not m:
        return None, {}
    return int(m.group(1)), {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(REPO, "build"), help="build directory")
    p.add_argument("--testenv-dir", help="use this running kube-testenv (default: start one)")
    p.add_argument("--pods", type=int, default=5000, help="pods in the cluster")
    p.add_argument("--node-pods", type=int, default=250, help="of which on nmi's node")
    p.add_argument("--identities", type=int, default=1000)
    p.add_argument("--bindings", type=int, default=1000)
    p.add_argument("--namespaces", type=int, default=20)
    p.add_argument("--workers", type=int, default=8, help="parallel API connections")
    p.add_argument("--samples", type=int, default=250, help="token requests per pass")
    args = p.parse_args()

    sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
    os.environ.setdefault("NMI_BINARY", os.path.join(args.build, "bin", "nmi"))
    os.environ.setdefault("NMI_EMULATOR", os.path.join(args.build, "bin", "azure-emulator"))
    from nmi_pytest import harness  # noqa: E402 - after NMI_BINARY is set

    work = tempfile.mkdtemp(prefix="nmi-kube-scale-")
    own_env = args.testenv_dir is None
    env_dir = args.testenv_dir or os.path.join(work, "testenv")
    nmi = emu = None
    try:
        if own_env:
            t = time.monotonic()
            subprocess.run([TESTENV, "up", "--dir", env_dir], check=True)
            print("API server up in %.1f s" % (time.monotonic() - t), file=sys.stderr)
        run_id = os.urandom(3).hex()
        namespaces = ["scale-%s-%d" % (run_id, i) for i in range(args.namespaces)]
        subprocess.run([TESTENV, "ns", "--dir", env_dir] + namespaces, check=True)
        cluster = Cluster(os.path.join(env_dir, "admin.kubeconfig"), work)
        node = "scale-node-" + run_id
        node_ips = ["127.1.%d.%d" % (i // 250, i % 250 + 1) for i in range(args.node_pods)]
        objects = plan(namespaces, node, node_ips, args.pods - args.node_pods, args.identities,
                       args.bindings, lambda i: harness.client_id_for("scale-%d" % i))
        took = populate(cluster, objects, args.workers)
        print("created %d objects (%d requests) in %.1f s: %.0f requests/s" % (
            len(objects), cluster.requests, took, cluster.requests / took), file=sys.stderr)

        ua = [{"client_id": harness.client_id_for("scale-%d" % i),
               "resource_id": "/subscriptions/0/rg/scale/providers/"
                              "Microsoft.ManagedIdentity/userAssignedIdentities/id-%d" % i}
              for i in range(args.identities)]
        emu = harness.start_emulator(ua)
        nmi = ScaleNmi(harness, emu, node, os.path.join(env_dir, "admin.kubeconfig"))
        t0 = time.monotonic()
        nmi.start(ready_timeout=120)
        ready = time.monotonic() - t0
        pid = nmi.proc.pid
        mem_ready = proc_status(pid)
        synced_ms, counts = synced_counts(nmi.log())
        pods_metric = nmi.metric_value("nmi_pod_cache_pods")

        by_ip = {}
        for o in objects:
            if o[0] == "azureassignedidentities":
                by_ip[o[2]["spec"]["pod"]] = o[2]["spec"]["azureIdentityRef"]["spec"]["clientID"]
        pod_ips = [(o[2]["metadata"]["name"], o[3]) for o in objects
                   if o[0] == "pods" and o[2]["spec"]["nodeName"] == node]
        samples = pod_ips[:args.samples]
        cold, warm = [], []
        for out in (cold, warm):
            for name, ip in samples:
                t = time.monotonic()
                r = nmi.token(ip, resource="https://vault.azure.net", timeout=30)
                out.append((time.monotonic() - t) * 1000)
                assert r.status == 200 and r.json()["client_id"] == by_ip[name], (r, name)
        mem_end = proc_status(pid)

        def q(values, f):
            values = sorted(values)
            return values[min(len(values) - 1, int(round(f * (len(values) - 1))))]

        print("| figure | value |")
        print("|---|---|")
        print("| cluster | %d pods (%d on nmi's node), %d AzureIdentities, %d bindings, "
              "%d AzureAssignedIdentities, %d namespaces |" % (
                  args.pods, args.node_pods, args.identities, args.bindings, args.node_pods,
                  args.namespaces))
        print("| objects created | %d in %.1f s (%d requests, %.0f/s, %d connections) |" % (
            len(objects), took, cluster.requests, cluster.requests / took, args.workers))
        print("| nmi start to /readyz 200 | %.0f ms |" % (ready * 1000))
        print("| nmi's \"identity caches synced\" | %s ms |" % synced_ms)
        print("| objects held | %s; nmi_pod_cache_pods %s |" % (
            ", ".join("%s %d" % kv for kv in counts.items()), pods_metric))
        print("| VmRSS / VmHWM when ready | %.1f / %.1f MiB |" % (
            mem_ready["VmRSS"] / 1024, mem_ready["VmHWM"] / 1024))
        print("| VmRSS / VmHWM after %d token requests | %.1f / %.1f MiB |" % (
            len(cold) + len(warm), mem_end["VmRSS"] / 1024, mem_end["VmHWM"] / 1024))
        print("| token latency, first request of a pod (IMDS call) | median %.2f ms, p99 %.2f ms "
              "(%d pods) |" % (statistics.median(cold), q(cold, 0.99), len(cold)))
        print("| token latency, cached | median %.2f ms, p99 %.2f ms (%d pods) |" % (
            statistics.median(warm), q(warm, 0.99), len(warm)))
        assert counts.get("pods") == args.node_pods, counts
    finally:
        if nmi is not None:
            nmi.stop(check=False)
            shutil.rmtree(nmi.dir, ignore_errors=True)
        if emu is not None:
            emu.stop()
            emu.remove_workdir()
        if own_env:
            subprocess.run([TESTENV, "down", "--dir", env_dir], check=False)
        shutil.rmtree(work, ignore_errors=True)


def ScaleNmi(harness, emulator, node, kubeconfig, file_index=24, extra_args=()):
    """A harness.Nmi using the API server instead of an identity file."""

    class _Nmi(harness.Nmi):
        def argv(self):
            a = super().argv()
            i = a.index("--identity-file")
            del a[i:i + 2]
            return a + ["--kubeconfig", kubeconfig] + list(extra_args)

    return _Nmi(emulator, [], file_index, node=node, verbosity=2)


if __name__ == "__main__":
    main()
