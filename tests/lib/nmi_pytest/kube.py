"""The Kubernetes test environment (scripts/kube-testenv) as the kube and deploy suites use it: its
environment for kubectl and helm, an API client with the admin's client certificate, namespaces,
RBAC set-up and ServiceAccount tokens, objects created through the API, a TCP relay (into a
network namespace, cut or black-holed at will), and nmi with the Kubernetes identity source.

ctest sets KUBE_TESTENV_DIR and NMI_KUBE_TESTENV.
"""
import base64
import functools
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import uuid

from nmi_pytest import harness, objects

TESTENV = os.environ.get("NMI_KUBE_TESTENV",
                         os.path.join(harness.REPO, "scripts", "kube-testenv"))
TESTENV_DIR = os.environ.get("KUBE_TESTENV_DIR", "/tmp/nmi-kube-testenv")
CRD_BASE = "/apis/aadpodidentity.k8s.io/v1/namespaces"
RBAC_BASE = "/apis/rbac.authorization.k8s.io/v1"
CRD_PLURALS = {"AzureIdentity": "azureidentities", "AzureIdentityBinding": "azureidentitybindings",
               "AzureAssignedIdentity": "azureassignedidentities",
               "AzurePodIdentityException": "azurepodidentityexceptions"}
# The verbs of aad-pod-identity v1.8.17's NMI ClusterRole.
NMI_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["aadpodidentity.k8s.io"],
     "resources": ["azureidentitybindings", "azureidentities", "azurepodidentityexceptions",
                   "azureassignedidentities"],
     "verbs": ["get", "list", "watch"]},
]


# ---------------------------------------------------------------------------------------------
# kubectl, helm and kube-testenv
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def testenv_env():
    """os.environ with `kube-testenv env` applied (KUBECONFIG, PATH with kubectl and helm), and
    helm's cache and configuration kept out of the home directory."""
    out = subprocess.run([TESTENV, "env"], check=True, capture_output=True, text=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        m = re.fullmatch(r"export (\w+)=(.*)", line)
        assert m, line
        env[m.group(1)] = m.group(2).replace("$PATH", os.environ.get("PATH", "")).strip("'\"")
    state = os.path.join(os.path.dirname(env["KUBECONFIG"]), "helm")
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[name] = os.path.join(state, name.split("_")[1].lower())
    return env


def run(*argv, stdin=None, check=True, env=None):
    p = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                       env=env or testenv_env(), cwd=harness.REPO, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(argv), p.returncode, p.stdout,
                                                       p.stderr))
    return p


def helm(*args, **kw):
    return run("helm", *args, **kw)


def kubectl(*args, **kw):
    return run("kubectl", *args, **kw)


def kjson(*args):
    return json.loads(kubectl(*args, "-o", "json").stdout)


def shared_kubeconfig():
    """The admin kubeconfig of the API server ctest's kube_api fixture started."""
    return os.path.join(TESTENV_DIR, "admin.kubeconfig")


def new_namespace(name, testenv_dir=None):
    """Creates namespace `name` with its default ServiceAccount (`kube-testenv ns`)."""
    argv = [TESTENV, "ns", name] + (["--dir", testenv_dir] if testenv_dir else [])
    subprocess.run(argv, check=True, env=testenv_env(), capture_output=True)
    return name


def unique_name(prefix, tag=""):
    tag = re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")
    return "%s-%s%s" % (prefix, tag + "-" if tag else "", uuid.uuid4().hex[:6])


# ---------------------------------------------------------------------------------------------
# The API server, through the admin client certificate (no kubectl in the timed paths)
# ---------------------------------------------------------------------------------------------

class KubeApi:
    """HTTPS to the API server with the admin's client certificate, one kept-alive connection."""

    def __init__(self, kubeconfig, workdir):
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        view = json.loads(subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "config", "view", "--raw", "-o", "json"],
            check=True, capture_output=True, text=True, env=testenv_env()).stdout)
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

    # -- objects ---------------------------------------------------------------------------------
    def create_pod(self, ns, name, node, ip, labels):
        """A pod bound to `node`, then Running at `ip` through the status subresource (there is
        no kubelet)."""
        self.create("/api/v1/namespaces/%s/pods" % ns, objects.api_pod(name, ns, node, labels))
        self.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, name),
                     objects.pod_status(ip), content_type="application/merge-patch+json")

    def delete_pod(self, ns, name, grace=0):
        """Deletes a pod. With a grace period the API server only sets deletionTimestamp (now +
        grace) and deletionGracePeriodSeconds: there is no kubelet here to finish the deletion,
        so the pod stays, Running and being deleted. Returns the API server's answer (the pod,
        or a Status)."""
        return self.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % (ns, name),
                            {"apiVersion": "v1", "kind": "DeleteOptions",
                             "gracePeriodSeconds": grace})[1]

    def create_secret(self, ns, obj):
        return self.create("/api/v1/namespaces/%s/secrets" % ns, obj)

    def crd(self, ns, obj):
        """Creates an aad-pod-identity object in `ns`."""
        return self.create("%s/%s/%s" % (CRD_BASE, ns, CRD_PLURALS[obj["kind"]]), obj)

    def crd_delete(self, ns, plural, name):
        self.request("DELETE", "%s/%s/%s/%s" % (CRD_BASE, ns, plural, name))

    def crd_patch(self, ns, plural, name, patch):
        self.request("PATCH", "%s/%s/%s/%s" % (CRD_BASE, ns, plural, name), patch,
                     content_type="application/merge-patch+json")

    def create_aai(self, ns, pod, node, identity, binding, status):
        """The AzureAssignedIdentity MIC would write for pod ns/`pod` (in `ns`)."""
        obj = objects.assigned({"name": pod, "namespace": ns}, identity, status,
                               binding_obj=binding, node=node, replicas=1, namespace=ns)
        self.crd(ns, obj)
        return obj["metadata"]["name"]

    def create_assignment(self, ns, pod, node, identity, binding, status):
        """An identity and its binding in `ns`, and the AzureAssignedIdentity MIC would write
        for pod ns/`pod`."""
        self.crd(ns, identity)
        self.crd(ns, binding)
        return self.create_aai(ns, pod, node, identity, binding, status)

    def set_aai_status(self, ns, name, status):
        """As MIC does: a JSON patch of /status/status on the main resource."""
        self.request("PATCH", "%s/%s/azureassignedidentities/%s" % (CRD_BASE, ns, name),
                     [{"op": "replace", "path": "/status/status", "value": status}],
                     content_type="application/json-patch+json")

    # -- RBAC --------------------------------------------------------------------------------------
    def grant(self, ns, role, rules=None, service_account="nmi"):
        """ServiceAccount ns/<service_account>, bound by ClusterRoleBinding `role` to a
        ClusterRole `role` with `rules` (default: the original NMI's). revoke(role) removes
        the cluster-scoped two."""
        self.create("/api/v1/namespaces/%s/serviceaccounts" % ns,
                    {"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": service_account}})
        self.create(RBAC_BASE + "/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": role}, "rules": NMI_RULES if rules is None else rules})
        self.create(RBAC_BASE + "/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": ns}]})

    def revoke(self, role):
        self.request("DELETE", RBAC_BASE + "/clusterrolebindings/" + role)
        self.request("DELETE", RBAC_BASE + "/clusterroles/" + role)


def service_account_token(ns, sa, bound_secret=None, kubeconfig=None):
    """A TokenRequest token (1 h) of ServiceAccount ns/sa, bound to a Secret if asked."""
    args = ["create", "token", sa, "-n", ns, "--duration=1h"]
    if bound_secret:
        args += ["--bound-object-kind", "Secret", "--bound-object-name", bound_secret]
    if kubeconfig:
        args += ["--kubeconfig", kubeconfig]
    return kubectl(*args).stdout.strip()


def token_kubeconfig(path, server, token_file, ca_file="ca.crt"):
    """A kubeconfig that authenticates with the token in `token_file` only (paths relative to
    the kubeconfig's directory)."""
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                "clusters:\n- name: k\n  cluster:\n    server: %s\n"
                "    certificate-authority: %s\n"
                "users:\n- name: u\n  user:\n    tokenFile: %s\n"
                "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"
                % (server, ca_file, token_file))
    return path


def relayed_kubeconfig(kubeconfig, port, path):
    """A copy of `kubeconfig` whose server is https://127.0.0.1:<port> (a Relay)."""
    with open(kubeconfig) as f:
        text = f.read()
    text, n = re.subn(r"server: https://[^\s]+", "server: https://127.0.0.1:%d" % port, text)
    assert n == 1, text
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------------------------------------
# A TCP relay, into a network namespace
# ---------------------------------------------------------------------------------------------

class Relay:
    """Listens on 127.0.0.1:<port> (inside `netns` when given: anything with a .path) and relays
    every connection to `upstream` ((host, port), or a port of 127.0.0.1) of this process's
    namespace. close_all() ends the relayed connections (an API server going away), swallow()
    also leaves new ones accepted and never answered (a black hole), stop() ends everything."""

    def __init__(self, upstream, netns=None, port=0):
        self.upstream = upstream if isinstance(upstream, tuple) else ("127.0.0.1", upstream)

        def listen():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            return s

        self.sock = harness.in_netns(netns.path, listen) if netns is not None else listen()
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = set()
        self.swallowed = []
        self.accepted = 0
        self.black_hole = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.black_hole:  # accepted, never answered
                    self.swallowed.append(down)
                    continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            pair = (down, up)
            with self.lock:
                if self.closed:
                    down.close()
                    up.close()
                    return
                self.pairs.add(pair)
                self.accepted += 1
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(pair)

    def _close(self, pair):
        with self.lock:
            if pair not in self.pairs:
                return
            self.pairs.discard(pair)
        _close_sockets(pair)

    def close_all(self):
        """Ends every relayed connection, as an API server going away does."""
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._close(pair)

    def swallow(self):
        """The upstream stops answering (a black hole): relayed connections are cut, new ones
        are accepted and never answered."""
        with self.lock:
            self.black_hole = True
        self.close_all()

    def stop(self):
        """The upstream becomes unreachable: the listener and every connection go."""
        with self.lock:
            self.closed = True
            swallowed, self.swallowed = self.swallowed, []
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.close_all()
        _close_sockets(swallowed)


def _close_sockets(socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


# ---------------------------------------------------------------------------------------------
# nmi against the API server
# ---------------------------------------------------------------------------------------------

class KubeNmi(harness.Nmi):
    """harness.Nmi with the Kubernetes identity source (`kube_args`: --kubeconfig or
    --service-account-dir ...) instead of --identity-file."""

    def __init__(self, emulator, node, kube_args, file_index, env=None, extra_args=(),
                 netns=None, imds_endpoint=None):
        super().__init__(emulator, [], file_index, extra_args=list(extra_args), env=env,
                         node=node, netns=netns, imds_endpoint=imds_endpoint)
        self.kube_args = list(kube_args)

    def argv(self):
        args = super().argv()
        i = args.index("--identity-file")
        del args[i:i + 2]
        return args + self.kube_args


def start_nmi(emulator, node, kube_args, file_index, env=None, extra_args=(), netns=None,
              imds_endpoint=None, pod_wait_ms=400):
    """A KubeNmi, started and ready (its caches synced)."""
    n = KubeNmi(emulator, node, kube_args, file_index, env=env, netns=netns,
                imds_endpoint=imds_endpoint,
                extra_args=["--pod-wait-timeout-ms=%d" % pod_wait_ms] + list(extra_args))
    n.start(ready_timeout=30.0)
    return n
