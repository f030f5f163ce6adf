"""devenv: a simulated Azure node in network namespaces, with the real API server and nmi running
as its DaemonSet would. Standard library only; scripts/devenv is its command line, tests/e2e and
scripts/demo use it.

    node   (netns)  cbr0 10.244.0.1/24, up0 10.246.0.1/30; etcd + kube-apiserver on
                    10.244.0.1:6443; nmi (root, capability bounding set NET_ADMIN + NET_RAW only,
                    /proc/sys read-only, --kubeconfig, --node devenv-node) on 127.0.0.1:2579;
                    route to 169.254.169.254/32 via the uplink; ip_forward=1;
                    route_localnet=1 (as kube-proxy sets it), so the DNAT to 127.0.0.1 works.
    imds   (netns)  up0 10.246.0.2/30; 169.254.169.254/32 on a bridge without ports; the Azure
                    emulator: IMDS on 169.254.169.254:80, Azure AD (HTTPS) on 10.246.0.2:443.
    pods   (netns)  eth0 10.244.0.11, .12, ... on cbr0, default route via the node; each is a Pod
                    in the API server (spec.nodeName = the node, status.podIP = its address).

Every namespace is named <prefix><role> (the command line's prefix is nmi-dev-<hash of --dir>-,
tests use nmi-e2e-<pid>-). State lives in one directory (state.json, logs, the API server's files);
`down` stops the processes it started by PID, deletes the namespaces and the directory.

Guard: nothing is ever run in a network namespace that is the root one (PID 1's) or this
process's own: every `ip netns exec` checks the target's inode first, so no iptables command and
no nmi with interception can reach the root namespace's firewall.
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from azure_emulator import _UnixHTTPConnection  # noqa: E402
from nmi_pytest import objects  # noqa: E402
from nmi_pytest.harness import in_netns  # noqa: E402
from nmi_pytest.waits import wait_until  # noqa: E402
KUBE_TESTENV = os.path.join(REPO, "scripts", "kube-testenv")

NODE_NAME = "devenv-node"
NODE_IP = "10.244.0.1"
UPLINK_NODE = "10.246.0.1"
UPLINK_IMDS = "10.246.0.2"
IMDS_IP = "169.254.169.254"
API_PORT = 6443
NMI_PORT, PROBE_PORT, METRICS_PORT = 2579, 8080, 9090  # the DaemonSet's defaults
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUB = "/subscriptions/00000000-0000-0000-0000-0000000000d0/resourcegroups/devenv"
API = "aadpodidentity.k8s.io/v1"
# Environment variables that point an SDK away from 169.254.169.254 (or at another credential):
# never passed to pods.
OVERRIDE_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "MSAL_")
OVERRIDE_ENV = ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "MSI_ENDPOINT", "MSI_SECRET",
                "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
                "IMDS_ENDPOINT", "MSAL_MANAGED_IDENTITY_ENDPOINT", "AZURE_CLIENT_ID",
                "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_CLIENT_CERTIFICATE_PATH",
                "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "AZURE_USERNAME",
                "AZURE_PASSWORD", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def ua(name):
    """A user-assigned identity of the simulated VM, with stable ids derived from its name."""
    import uuid
    cid = str(uuid.uuid5(uuid.NAMESPACE_URL, "nmi-devenv/client/" + name))
    return {"name": name, "client_id": cid,
            "resource_id": SUB + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
            + name}


def sp(name, secret):
    import uuid
    return {"name": name, "client_id": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                       "nmi-devenv/app/" + name)),
            "secret": secret}


def default_config():
    """Pods and the identities the emulators know (what MIC would have put on the VM, and an app
    registration). No AzureIdentity objects: those are created by whoever uses the devenv."""
    return {
        "pods": [{"name": "nginx-flex-kv-int", "namespace": "default", "selector": "kv-int"},
                 {"name": "app-b", "namespace": "default", "selector": "app-b"},
                 {"name": "no-identity", "namespace": "default", "selector": "none"}],
        "user_assigned": [ua("kv-int"), ua("app-b")],
        "apps": [sp("sp-app", "devenv-sp-s3cret")],
    }


class DevenvError(RuntimeError):
    pass


class GuardError(DevenvError):
    pass


# ---------------------------------------------------------------------------------------------
# Processes and namespaces
# ---------------------------------------------------------------------------------------------

def _run(argv, check=True, timeout=60, env=None, input=None, capture=True):
    r = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout, env=env,
                       input=input)
    if check and r.returncode != 0:
        raise DevenvError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode,
                                                  r.stdout or "", r.stderr or ""))
    return r


def _setns_net(fd):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns failed")


def _netns_inode(path):
    return os.stat(path).st_ino


def root_netns_inodes():
    """The network namespaces that must never be entered: PID 1's (when this process may read
    it: some sandboxes deny /proc/1/ns) and this process's own (devenv always runs in the root
    namespace, so the two are the same there)."""
    inodes = {_netns_inode("/proc/self/ns/net")}
    try:
        inodes.add(_netns_inode("/proc/1/ns/net"))
    except PermissionError:
        pass
    return inodes


def pid_alive(pid, exe_name=None):
    """Running (not a zombie) and, if given, executing `exe_name`."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
        if exe_name is not None:
            # A binary replaced on disk (a rebuild) shows as "<name> (deleted)": still ours.
            exe = os.path.basename(os.readlink("/proc/%d/exe" % pid))
            return exe == exe_name or exe == exe_name + " (deleted)"
        return True
    except (OSError, IndexError):
        return False


def stop_pid(pid, exe_name, timeout=10.0):
    """SIGTERM the process `pid` if it still runs `exe_name`, SIGKILL after `timeout`."""
    if not pid or not pid_alive(pid, exe_name):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    def gone():
        _reap(pid)
        return not pid_alive(pid, exe_name)
    try:
        wait_until(gone, timeout=timeout, message="pid %d to exit on SIGTERM" % pid)
    except AssertionError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            wait_until(lambda: not pid_alive(pid), timeout=5, message="pid %d to die" % pid)
        except AssertionError:
            pass


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def claims_of(token):
    import base64
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


# ---------------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------------

class Devenv:
    def __init__(self, dir, prefix=None, nmi_binary=None, emulator_binary=None, config=None,
                 nmi_args=(), verbosity=4):
        self.dir = os.path.abspath(dir)
        self.state_path = os.path.join(self.dir, "state.json")
        self.state = None
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.state = json.load(f)
            return
        if prefix is None:
            import hashlib
            prefix = "nmi-dev-%s-" % hashlib.sha1(self.dir.encode()).hexdigest()[:6]
        cfg = config or default_config()
        pods = []
        for i, p in enumerate(cfg["pods"]):
            pods.append(dict(p, ip="10.244.0.%d" % (11 + i), netns="%spod%d" % (prefix, i),
                             veth="veth%d" % i))
        self.state = {
            "prefix": prefix,
            "dir": self.dir,
            "nmi_binary": os.path.abspath(nmi_binary or ""),
            "emulator_binary": os.path.abspath(emulator_binary or ""),
            "node": prefix + "node",
            "imds": prefix + "imds",
            "pods": pods,
            "user_assigned": cfg["user_assigned"],
            "apps": cfg["apps"],
            # Lifetime of every token the emulators issue (their default when absent: a day).
            "token_lifetime_sec": cfg.get("token_lifetime_sec"),
            "nmi_args": list(nmi_args),
            "verbosity": verbosity,
            "created": [],
            "pids": {},
            "kube_dir": os.path.join(self.dir, "kube"),
        }

    # -- state ---------------------------------------------------------------------------------
    def _save(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1)
        os.rename(tmp, self.state_path)

    @property
    def node_ns(self):
        return self.state["node"]

    def path(self, name):
        return os.path.join(self.dir, name)

    def pod(self, name):
        """A pod by `name` or `namespace/name`."""
        for p in self.state["pods"]:
            if name in (p["name"], "%s/%s" % (p["namespace"], p["name"])):
                return p
        raise DevenvError("no pod %r (pods: %s)" % (name, ", ".join(
            "%s/%s" % (p["namespace"], p["name"]) for p in self.state["pods"])))

    # -- guarded execution in our namespaces -----------------------------------------------------
    def _check_ns(self, name):
        if name not in self.state["created"]:
            raise GuardError("namespace %s is not one of this devenv's" % name)
        inode = _netns_inode("/run/netns/" + name)
        if inode in root_netns_inodes():
            raise GuardError("refusing to run in %s: it is the root network namespace" % name)

    def ns_prefix(self, name):
        self._check_ns(name)
        return ["ip", "netns", "exec", name]

    def run_in(self, name, argv, check=True, timeout=60, env=None, input=None, capture=True):
        return _run(self.ns_prefix(name) + list(argv), check=check, timeout=timeout, env=env,
                    input=input, capture=capture)

    def pod_env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if k not in OVERRIDE_ENV and not k.startswith(OVERRIDE_PREFIXES)}
        env.update(extra or {})
        return env

    def exec_pod(self, pod, argv, check=False, timeout=120, env=None, capture=True, input=None):
        """Runs argv in the pod's network namespace, with no endpoint override in its env."""
        return self.run_in(self.pod(pod)["netns"], argv, check=check, timeout=timeout,
                           env=self.pod_env(env), capture=capture, input=input)

    def host_env(self):
        env = dict(os.environ)
        if self.state.get("kube_bin"):
            env["PATH"] = self.state["kube_bin"] + ":" + env.get("PATH", "")
            env["KUBECONFIG"] = os.path.join(self.state["kube_dir"], "admin.kubeconfig")
        return env

    def exec_host(self, argv, check=False, timeout=120, capture=True, input=None):
        """Runs argv on the host (the node namespace), with KUBECONFIG and kubectl on PATH."""
        return self.run_in(self.node_ns, argv, check=check, timeout=timeout,
                           env=self.host_env(), capture=capture, input=input)

    def iptables(self, *args, save=False):
        """iptables-nft in the node namespace (checked by the guard like everything else)."""
        tool = "iptables-nft-save" if save else "iptables-nft"
        return self.run_in(self.node_ns, [tool] + list(args))

    def kubectl(self, *args, input=None, check=True):
        return self.run_in(self.node_ns, [os.path.join(self.state["kube_bin"], "kubectl"),
                                          "--kubeconfig",
                                          os.path.join(self.state["kube_dir"],
                                                       "admin.kubeconfig")] + list(args),
                           input=input, check=check)

    def apply(self, objects):
        self.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    # -- up ------------------------------------------------------------------------------------
    def up(self, log=print):
        if os.geteuid() != 0:
            raise DevenvError("devenv needs root (network namespaces)")
        for b in (self.state["nmi_binary"], self.state["emulator_binary"]):
            if not os.access(b, os.X_OK):
                raise DevenvError("missing binary %s (build nmi first)" % b)
        if os.path.exists(self.state_path) and self.state["pids"]:
            raise DevenvError("a devenv is already up in %s (devenv down --dir %s)"
                              % (self.dir, self.dir))
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.path("logs"), exist_ok=True)
        self._save()
        t0 = time.monotonic()
        times = {}
        try:
            self._namespaces()
            times["namespaces"] = time.monotonic() - t0
            t = time.monotonic()
            self._start_emulator()
            times["emulator"] = time.monotonic() - t
            t = time.monotonic()
            self._start_apiserver()
            times["apiserver"] = time.monotonic() - t
            t = time.monotonic()
            self._register_pods()
            times["pods"] = time.monotonic() - t
            t = time.monotonic()
            self._start_nmi()
            times["nmi"] = time.monotonic() - t
        except BaseException:
            log("devenv: up failed; tearing down what was started")
            self.down(log=lambda *a: None)
            raise
        total = time.monotonic() - t0
        self.state["up_seconds"] = round(total, 2)
        self._save()
        log("devenv: up in %.1f s (%s)" % (total, ", ".join(
            "%s %.2f s" % kv for kv in times.items())))
        return total

    def _namespaces(self):
        st = self.state
        roles = [st["node"], st["imds"]] + [p["netns"] for p in st["pods"]]
        for name in roles:
            if os.path.exists("/run/netns/" + name):
                raise DevenvError("network namespace %s exists already (another devenv with "
                                  "this --dir? devenv down --dir %s)" % (name, self.dir))
        for name in roles:
            _run(["ip", "netns", "add", name])
            st["created"].append(name)
            self._save()
            self.run_in(name, ["ip", "link", "set", "lo", "up"])
        node, imds = st["node"], st["imds"]
        # One batch per namespace (ip -batch): a few processes instead of dozens.
        node_cmds = ["link add cbr0 type bridge", "addr add %s/24 dev cbr0" % NODE_IP,
                     "link set cbr0 up"]
        for p in st["pods"]:
            node_cmds += ["link add %s type veth peer name eth0 netns %s" % (p["veth"], p["netns"]),
                          "link set %s master cbr0" % p["veth"], "link set %s up" % p["veth"]]
        node_cmds += ["link add up0 type veth peer name up0 netns %s" % imds,
                      "addr add %s/30 dev up0" % UPLINK_NODE, "link set up0 up",
                      "route add %s/32 via %s" % (IMDS_IP, UPLINK_IMDS)]
        self.run_in(node, ["ip", "-batch", "-"], input="\n".join(node_cmds) + "\n")
        self.run_in(imds, ["ip", "-batch", "-"], input="\n".join([
            "addr add %s/30 dev up0" % UPLINK_IMDS, "link set up0 up",
            "link add imds0 type bridge",  # no dummy interfaces on this kernel
            "addr add %s/32 dev imds0" % IMDS_IP, "link set imds0 up",
            "route add 10.244.0.0/24 via %s" % UPLINK_NODE]) + "\n")
        for p in st["pods"]:
            self.run_in(p["netns"], ["ip", "-batch", "-"], input="\n".join([
                "addr add %s/24 dev eth0" % p["ip"], "link set eth0 up",
                "route add default via %s" % NODE_IP]) + "\n")
        # Per-namespace sysctls of the node, as a node's network setup (kube-proxy) leaves them.
        self.run_in(node, ["sysctl", "-qw", "net.ipv4.ip_forward=1",
                           "net.ipv4.conf.all.route_localnet=1",
                           "net.ipv4.conf.cbr0.route_localnet=1"])

    def _spawn(self, key, ns, argv, log_name, env=None):
        self._check_ns(ns)
        with open(self.path(os.path.join("logs", log_name)), "ab") as logf:
            proc = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        self.state["pids"][key] = proc.pid
        self._save()
        return proc

    def _start_emulator(self):
        st = self.state
        cfg = {
            "tenant_id": TENANT,
            "imds": {"listen": IMDS_IP + ":80",
                     "user_assigned": [{"client_id": u["client_id"],
                                        "resource_id": u["resource_id"]}
                                       for u in st["user_assigned"]],
                     "instance": {"compute": {"name": "aks-devenv-vmss_0",
                                              "location": "westeurope",
                                              "resourceGroupName": "devenv"}}},
            "aad": {"listen": st.get("uplink_imds", UPLINK_IMDS) + ":443",
                    "tls_names": ["login.microsoftonline.com"],
                    "apps": [{"tenant_id": TENANT, "client_id": a["client_id"],
                              "secret": a["secret"]} for a in st["apps"]]},
            "control": {"listen": "127.0.0.1:0", "socket": True},
        }
        if st.get("token_lifetime_sec"):
            cfg["token_lifetime_sec"] = int(st["token_lifetime_sec"])
        emu_dir = self.path("emulator")
        os.makedirs(emu_dir, exist_ok=True)
        with open(os.path.join(emu_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        ready = os.path.join(emu_dir, "ready.json")
        proc = self._spawn("emulator", st["imds"],
                           [st["emulator_binary"], "--config", os.path.join(emu_dir, "config.json"),
                            "--ready-file", ready], "emulator.log")
        try:
            wait_until(lambda: os.path.exists(ready) or proc.poll() is not None, timeout=10,
                       message="the emulator's ready file")
        except AssertionError:
            pass
        if not os.path.exists(ready):
            raise DevenvError("the emulator did not start:\n" + self.log("emulator"))
        with open(ready) as f:
            st["emulator"] = json.load(f)
        st["aad_endpoint"] = "https://%s/" % st.get("uplink_imds", UPLINK_IMDS)
        self._save()

    def _start_apiserver(self):
        st = self.state
        namespaces = sorted({p["namespace"] for p in st["pods"]})
        # kube-testenv starts etcd and kube-apiserver detached (setsid) in the node namespace.
        self._check_ns(st["node"])
        r = _run([KUBE_TESTENV, "up", "--netns", st["node"], "--address", NODE_IP,
                  "--port", str(API_PORT), "--dir", st["kube_dir"]] + namespaces,
                 check=False, timeout=300)
        st["kube_started"] = True
        self._save()
        if r.returncode != 0:
            raise DevenvError("kube-testenv up failed:\n" + r.stdout + r.stderr)
        st["kube_bin"] = _run([KUBE_TESTENV, "bindir"]).stdout.strip().splitlines()[-1]
        self._save()

    def _register_pods(self):
        st = self.state
        for p in st["pods"]:
            self.api("POST", "/api/v1/namespaces/%s/pods" % p["namespace"], {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": p["name"], "namespace": p["namespace"],
                             "labels": {"aadpodidbinding": p["selector"]}},
                "spec": {"nodeName": NODE_NAME,
                         "containers": [{"name": "app", "image": "devenv/app"}]},
            })
            self.set_pod_ip(p, p["ip"])

    def set_pod_ip(self, p, ip):
        """As the kubelet does: status (phase, podIP) through the status subresource."""
        self.api("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (p["namespace"], p["name"]),
                 {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                             "hostIP": NODE_IP}},
                 content_type="application/merge-patch+json")

    def api(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        """One HTTPS request to the API server as its admin (client certificate), sent from a
        thread that joined the node's network namespace (no kubectl process: ~5 ms a call)."""
        import ssl
        pki = os.path.join(self.state["kube_dir"], "pki")
        self._check_ns(self.node_ns)

        def call():
            ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
            ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
            conn = http.client.HTTPSConnection(self.state.get("api_ip", NODE_IP), API_PORT,
                                               context=ctx, timeout=30)
            data = None if body is None else json.dumps(body)
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            try:
                return resp.status, resp.read()
            finally:
                conn.close()

        status, raw = in_netns("/run/netns/" + self.node_ns, call)
        if ok and status not in ok:
            raise DevenvError("%s %s: %d %s" % (method, path, status, raw[:500]))
        return json.loads(raw) if raw else None

    def create(self, objects):
        """POSTs each object to its collection (Pods, Secrets and aadpodidentity objects)."""
        for o in objects:
            ns = o["metadata"]["namespace"]
            kind = o["kind"].lower()
            plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
            group = "api/v1" if o["apiVersion"] == "v1" else "apis/" + o["apiVersion"]
            path = "/%s/namespaces/%s/%s" % (group, ns, plural)
            self.api("POST", path, o)

    def nmi_argv(self):
        st = self.state
        return [st["nmi_binary"], "--node", NODE_NAME,
                "--kubeconfig", os.path.join(st["kube_dir"], "admin.kubeconfig"),
                "--aad-ca-file", st["emulator"]["aad_ca"],
                # The emulator's Azure AD (not an Azure cloud's host): service principals' secrets
                # go there only because it is listed.
                "--aad-allowed-hosts", UPLINK_IMDS,
                "--iptables-lock-file", self.path("xtables.lock"),
                "-v=%d" % st["verbosity"]] + st["nmi_args"]

    def _start_nmi(self):
        """nmi as the DaemonSet runs it: root, capability bounding set NET_ADMIN and NET_RAW only
        (so its effective set is those two), /proc/sys read-only (a private mount namespace with
        a read-only bind of /proc/sys), in the node's network namespace."""
        st = self.state
        self._check_ns(st["node"])  # never interception in the root namespace
        caps = "-all,+net_admin,+net_raw"
        sandbox = ("mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys "
                   "&& exec \"$@\"")
        argv = (["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", sandbox,
                 "nmi-sandbox", "setpriv", "--bounding-set", caps, "--inh-caps", caps, "--"]
                + self.nmi_argv())
        env = {k: v for k, v in os.environ.items()
               if k not in OVERRIDE_ENV and k not in ("KUBECONFIG", "NODE_NAME",
                                                       "FORCENAMESPACED")}
        proc = self._spawn("nmi", st["node"], argv, "nmi.log", env=env)
        self.wait_nmi_ready(proc)

    def wait_nmi_ready(self, proc=None, timeout=30.0):
        def ready():
            if proc is not None and proc.poll() is not None:
                raise DevenvError("nmi exited with %s:\n%s" % (proc.returncode,
                                                              self.log("nmi")[-4000:]))
            return self.run_in(self.node_ns, ["curl", "-sf", "-m", "1",
                                              "http://127.0.0.1:%d/readyz" % PROBE_PORT],
                               check=False).returncode == 0
        try:
            wait_until(ready, timeout=timeout, interval=0.05, message="nmi's /readyz")
        except AssertionError:
            raise DevenvError("nmi not ready after %.0f s:\n%s"
                              % (timeout, self.log("nmi")[-4000:])) from None

    def restart_nmi(self):
        self.stop_nmi()
        self._start_nmi()

    def stop_nmi(self):
        stop_pid(self.state["pids"].get("nmi"), "nmi")
        self.state["pids"].pop("nmi", None)
        self._save()

    # -- observation -----------------------------------------------------------------------------
    def log(self, name):
        try:
            with open(self.path(os.path.join("logs", name + ".log")), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def nmi_pid(self):
        pid = self.state["pids"].get("nmi")
        return pid if pid and pid_alive(pid, "nmi") else None

    def nmi_sandbox(self):
        """What the kernel says about the running nmi: capability sets and /proc/sys's mount."""
        pid = self.nmi_pid()
        if pid is None:
            return None
        out = {"pid": pid}
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Uid"):
                    out[k] = v.strip()
        with open("/proc/%d/mountinfo" % pid) as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/proc/sys":
                    out["proc_sys_mount"] = fields[5]
        out["netns_is_root"] = (_netns_inode("/proc/%d/ns/net" % pid) in root_netns_inodes())
        return out

    def emulator_control(self, method, path, body=None):
        conn = _UnixHTTPConnection(self.state["emulator"]["control_socket"], 10)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status != 200:
                raise DevenvError("emulator %s %s: %d %s" % (method, path, resp.status, payload))
            return json.loads(payload) if payload else None
        finally:
            conn.close()

    def emulator_log(self):
        return self.emulator_control("GET", "/log")

    def status(self):
        st = self.state
        out = {"dir": self.dir, "up_seconds": st.get("up_seconds"), "namespaces": {},
               "processes": {}, "pods": []}
        for name in st["created"]:
            out["namespaces"][name] = os.path.exists("/run/netns/" + name)
        for name, pid in self.all_pids().items():
            out["processes"][name] = {"pid": pid, "alive": pid_alive(pid, name)}
        for p in st["pods"]:
            out["pods"].append({"pod": "%s/%s" % (p["namespace"], p["name"]), "ip": p["ip"],
                                "netns": p["netns"], "selector": p["selector"]})
        if self.nmi_pid():
            r = self.run_in(self.node_ns, ["curl", "-s", "-m", "2",
                                           "http://127.0.0.1:%d/readyz" % PROBE_PORT],
                            check=False)
            out["nmi_readyz"] = r.stdout.strip()
            out["nmi_sandbox"] = self.nmi_sandbox()
        return out

    # -- down ----------------------------------------------------------------------------------
    def down(self, log=print):
        st = self.state
        t0 = time.monotonic()
        stop_pid(st["pids"].get("nmi"), "nmi")
        stop_pid(st["pids"].get("emulator"), "azure-emulator")
        if os.path.exists(os.path.join(st["kube_dir"], "state")):
            _run([KUBE_TESTENV, "down", "--dir", st["kube_dir"]], check=False, timeout=120)
        # Anything else still running in one of our namespaces (e.g. a server a user started in a
        # pod with `devenv exec`): by PID, found through its network namespace.
        ours = set()
        for name in st["created"]:
            try:
                ours.add(_netns_inode("/run/netns/" + name))
            except OSError:
                pass
        ours -= root_netns_inodes()
        for pid in _pids_in_netns(ours):
            stop_pid(pid, None, timeout=5)
        for name in reversed(st["created"]):
            _run(["ip", "netns", "del", name], check=False)
        st["created"] = []
        st["pids"] = {}
        shutil.rmtree(self.dir, ignore_errors=True)
        log("devenv: down in %.1f s" % (time.monotonic() - t0))

    def all_pids(self):
        """{executable name: pid} of every daemon `up` started (nmi, emulator, etcd,
        kube-apiserver)."""
        exe = {"nmi": "nmi", "emulator": "azure-emulator"}
        out = {exe.get(k, k): v for k, v in self.state["pids"].items()}
        kstate = os.path.join(self.state["kube_dir"], "state")
        if os.path.exists(kstate):
            with open(kstate) as f:
                kv = dict(line.strip().split("=", 1) for line in f if "=" in line)
            for key, name in (("etcd_pid", "etcd"), ("apiserver_pid", "kube-apiserver")):
                if kv.get(key):
                    out[name] = int(kv[key])
        return out

    def leftovers(self, pids):
        """What `down` must have removed: namespaces, the processes `pids` (from all_pids()
        before down), mounts and the directory."""
        left = [n for n in os.listdir("/run/netns") if n.startswith(self.state["prefix"])] \
            if os.path.isdir("/run/netns") else []
        if os.path.exists(self.dir):
            left.append(self.dir)
        for name, pid in pids.items():
            if pid_alive(pid, name):
                left.append("%s pid %d" % (name, pid))
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if self.state["prefix"] in line or self.dir in line:
                    left.append("mount " + line.split()[4])
        return left


def _pids_in_netns(inodes):
    pids = []
    if not inodes:
        return pids
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat("/proc/%s/ns/net" % entry).st_ino in inodes:
                pids.append(int(entry))
        except OSError:
            pass
    return pids


# ---------------------------------------------------------------------------------------------
# aad-pod-identity objects (as a user applies them, and as MIC writes the assignment)
# ---------------------------------------------------------------------------------------------

def azure_identity(name, namespace, client_id, type=0, resource_id="", secret_name=None,
                   ad_endpoint=""):
    if type == 0:
        return objects.azure_identity(name, namespace, client_id, resource_id=resource_id)
    return objects.azure_identity(name, namespace, client_id, type=type, tenant_id=TENANT,
                                  ad_endpoint=ad_endpoint, secret_ref=(namespace, secret_name))


def binding(name, namespace, identity_name, selector):
    return objects.binding(name, namespace, identity_name, selector)


def assigned(pod, identity, binding_obj, status="Assigned"):
    """The AzureAssignedIdentity MIC would create for `pod` (there is no MIC here)."""
    return objects.assigned(pod, identity, status, binding_obj=binding_obj, node=NODE_NAME,
                            replicas=1)


def secret(name, namespace, client_secret):
    return objects.secret(name, namespace, data={"clientSecret": client_secret})


# ---------------------------------------------------------------------------------------------
# Command line (scripts/devenv)
# ---------------------------------------------------------------------------------------------

USAGE = """usage: devenv [--dir DIR] COMMAND ...

  up [--build-dir DIR] [--config FILE] [--nmi-arg ARG]...
                        create the simulated node (namespaces, API server, emulators, pods, nmi)
  down                  stop everything `up` started and remove it (namespaces, processes, DIR)
  status                what runs, nmi's readiness, capabilities and /proc/sys mount (JSON)
  exec POD -- CMD...    run CMD in pod POD (name or namespace/name), without endpoint overrides
  host -- CMD...        run CMD on the host (the node's network namespace), KUBECONFIG set
  kubectl ARGS...       kubectl against the devenv's API server (shorthand for host -- kubectl)
  env                   the state (pods, identities, addresses) as JSON

--dir defaults to $NMI_DEVENV_DIR or /tmp/nmi-devenv; namespaces are named nmi-dev-<hash of the
dir>-<role> ($NMI_DEVENV_PREFIX replaces nmi-dev-<hash>-). Binaries: $NMI_BINARY and $NMI_EMULATOR,
else <build-dir>/bin/{nmi,azure-emulator} (build-dir: $BUILD_DIR or <repo>/build).
"""


def main(argv):
    d = os.environ.get("NMI_DEVENV_DIR", "/tmp/nmi-devenv")
    args = list(argv)
    if args[:1] == ["--dir"] and len(args) > 1:
        d = args[1]
        args = args[2:]
    elif args[:1] and args[0].startswith("--dir="):
        d = args[0].split("=", 1)[1]
        args = args[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stderr.write(USAGE)
        return 2 if not args else 0
    cmd, rest = args[0], args[1:]
    if cmd == "up":
        build = os.environ.get("BUILD_DIR") or os.path.join(REPO, "build")
        config, nmi_args = None, []
        i = 0
        while i < len(rest):
            if rest[i] == "--build-dir":
                build = rest[i + 1]
                i += 2
            elif rest[i] == "--config":
                with open(rest[i + 1]) as f:
                    config = json.load(f)
                i += 2
            elif rest[i] == "--nmi-arg":
                nmi_args.append(rest[i + 1])
                i += 2
            else:
                sys.stderr.write("devenv up: unknown option %s\n" % rest[i])
                return 2
        nmi = os.environ.get("NMI_BINARY") or os.path.join(build, "bin", "nmi")
        emu = os.environ.get("NMI_EMULATOR") or os.path.join(build, "bin", "azure-emulator")
        env = Devenv(d, prefix=os.environ.get("NMI_DEVENV_PREFIX") or None, nmi_binary=nmi,
                     emulator_binary=emu, config=config, nmi_args=nmi_args)
        if env.state.get("pids"):
            sys.stderr.write("devenv: already up in %s (devenv --dir %s down)\n" % (d, d))
            return 1
        env.up(log=lambda m: print(m, file=sys.stderr))
        return 0
    if not os.path.exists(os.path.join(d, "state.json")):
        if cmd == "down":
            print("devenv: nothing in %s" % d, file=sys.stderr)
            return 0
        sys.stderr.write("devenv: nothing is up in %s (devenv up)\n" % d)
        return 1
    env = Devenv(d)
    if cmd == "down":
        env.down(log=lambda m: print(m, file=sys.stderr))
        return 0
    if cmd == "status":
        print(json.dumps(env.status(), indent=1))
        return 0
    if cmd == "env":
        print(json.dumps(env.state, indent=1))
        return 0
    if cmd in ("exec", "host", "kubectl"):
        if cmd == "exec":
            if not rest:
                sys.stderr.write(USAGE)
                return 2
            target, rest = rest[0], rest[1:]
        if cmd == "kubectl":
            rest = ["kubectl"] + rest
        elif rest[:1] == ["--"]:
            rest = rest[1:]
        if not rest:
            sys.stderr.write(USAGE)
            return 2
        if cmd == "exec":
            r = env.exec_pod(target, rest, capture=False, timeout=None)
        else:
            r = env.exec_host(rest, capture=False, timeout=None)
        return r.returncode
    sys.stderr.write(USAGE)
    return 2
