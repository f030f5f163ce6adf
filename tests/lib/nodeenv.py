"""nodeenv: a real Kubernetes node in network namespaces, for nmi's end-to-end tests on a node.

Where devenv (tests/lib/devenv.py) pretends pods with bare network namespaces and runs nmi as a
process, nodeenv runs the real thing: containerd, runc and the CNI plugins create the pods,
kubelet runs them and projects their tokens, kube-controller-manager and kube-scheduler do what
they do in a cluster, and nmi arrives as its chart's DaemonSet, in its own image.

    node  (netns)  eth0 10.240.0.4/24 (the VM's NIC; default route via 10.240.0.1);
                   etcd + kube-apiserver on 10.240.0.4:6443; containerd, kubelet,
                   kube-controller-manager, kube-scheduler (started with `nsenter --net`, so they
                   keep the host's mount namespace and cgroup file systems); cni0 10.88.0.1/16 (the
                   CNI bridge plugin; no masquerade, so the Azure side sees pods' own addresses);
                   what kube-proxy would set: net.ipv4.ip_forward=1, route_localnet=1 and a DNAT of
                   the `kubernetes` Service (10.0.0.1:443) to the API server (chain NODEENV-SVC).
    azure (netns)  eth0 10.240.0.1/24; 169.254.169.254/32 on a port-less bridge; the Azure
                   emulator (tools/azure-emulator): IMDS on 169.254.169.254:80, Azure AD (HTTPS)
                   on 10.240.0.1:443; route to the pod network via the node.

Private paths: everything lives under the state directory (containerd's root, state and socket,
runc's root, kubelet's root, certificates and pod logs, the CNI configuration and IPAM data),
except what kubelet and containerd use whatever their flags say (../shared/reference/real-node.md,
pitfall 5) and what nmi's chart mounts from the host (/run/xtables.lock): `up` records which of
those host paths existed and `down` removes only the ones that did not. The cgroup root is
/<prefix>node in every hierarchy, created by `up` and removed depth-first by `down`.

`down` stops kubelet, then kills every process in the node's cgroups (the containers), then
containerd, then whatever is left in the node namespace (the shims, hostNetwork containers),
unmounts everything under the state directory, removes the cgroups and deletes the namespaces.
`host_snapshot()` before `up` and after `down` must be equal (links, network namespaces, mounts,
cgroups, host paths, the root namespace's firewall and forwarding).
"""
import json
import os
import shutil
import subprocess
import time

import devenv
from devenv import DevenvError, _run, pid_alive, stop_pid
from nmi_pytest.waits import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NODE_TESTENV = os.path.join(REPO, "scripts", "node-testenv")
NODE_IMAGES = os.path.join(REPO, "scripts", "node-images")
CHART = os.path.join(REPO, "charts", "nmi")

NODE_NAME = "nmi-node"
NODE_IP = "10.240.0.4"
AZURE_IP = "10.240.0.1"
POD_CIDR = "10.88.0.0/16"
SERVICE_IP = "10.0.0.1"
API_PORT = devenv.API_PORT
IMDS_IP = devenv.IMDS_IP
NMI_NAMESPACE = "kube-system"
NMI_RELEASE = "nmi"

# Host paths kubelet, containerd, the CNI plugins or nmi's chart may create whatever the
# configuration says; `down` removes those that did not exist before `up`.
HOST_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd",
              "/var/lib/containerd", "/etc/containerd", "/var/lib/cni", "/etc/cni", "/opt/cni",
              "/run/xtables.lock", "/etc/default/kubelet", "/var/run/nri", "/etc/nri",
              "/opt/nri", "/etc/cdi", "/var/run/cdi", "/opt/containerd",
              "/var/lib/containers/cache", "/run/flannel", "/var/lib/kubelet/device-plugins")


def host_snapshot(prefix):
    """What must be the same before `up` and after `down`."""
    snap = {}
    r = _run(["ip", "-o", "link", "show"])
    snap["links"] = sorted(line.split(":")[1].strip().split("@")[0]
                           for line in r.stdout.splitlines() if ":" in line)
    snap["netns"] = sorted(n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns")
                                       else []) if n.startswith(prefix))
    with open("/proc/self/mountinfo") as f:
        snap["mounts"] = sorted(line.split()[4] for line in f)
    cg = []
    for h in sorted(os.listdir("/sys/fs/cgroup")):
        d = os.path.join("/sys/fs/cgroup", h)
        if os.path.isdir(d) and not os.path.islink(d):
            try:
                cg += ["%s/%s" % (h, e) for e in os.listdir(d)
                       if os.path.isdir(os.path.join(d, e))]
            except OSError:
                pass
    snap["cgroups"] = sorted(cg)
    snap["host_paths"] = sorted(p for p in HOST_PATHS if os.path.lexists(p))
    for tool in ("iptables-nft-save", "iptables-legacy-save", "ip6tables-nft-save"):
        out = _run([tool], check=False).stdout
        snap[tool] = [line for line in out.splitlines() if not line.startswith("#")]
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        snap["ip_forward"] = f.read().strip()
    return snap


class NodeEnv(devenv.Devenv):
    """One real node. `up()` brings it up; `down()` removes everything; the state is saved in
    <dir>/state.json so that a command line (scripts/node-testenv) can act on it later."""

    def __init__(self, dir, prefix=None, emulator_binary=None, config=None, verbosity=4,
                 iptables="nft"):
        super().__init__(dir, prefix=prefix, nmi_binary="", emulator_binary=emulator_binary,
                         config=dict(config or devenv.default_config(), pods=[]),
                         verbosity=verbosity)
        st = self.state
        if "cgroup_root" in st:
            return  # loaded from state.json
        st["node"] = st["prefix"] + "node"
        st["imds"] = st["prefix"] + "azure"
        st["uplink_imds"] = AZURE_IP
        st["api_ip"] = NODE_IP
        st["cgroup_root"] = "/" + st["prefix"] + "node"
        st["containerd_sock"] = os.path.join(self.dir, "c", "containerd.sock")
        st["images"] = {}
        # The node's iptables backend: what kubelet, the CNI plugins and kube-proxy's rule use
        # (`iptables` on their PATH is that backend's), as on a node image built with it.
        if iptables not in ("nft", "legacy"):
            raise DevenvError("iptables backend must be nft or legacy")
        st["iptables"] = iptables

    # -- commands --------------------------------------------------------------------------------
    def ipt(self, tool="iptables"):
        """A tool of the node's backend: ipt("iptables-save") -> iptables-legacy-save, ..."""
        base, _, rest = tool.partition("-")
        return "%s-%s%s" % (base, self.state["iptables"], "-" + rest if rest else "")

    def daemon_env(self):
        """PATH for kubelet and containerd (and so the CNI plugins): the node's binaries, and
        `iptables` meaning the node's backend."""
        st = self.state
        d = self.path("ipt-bin")
        if not os.path.isdir(d):
            os.makedirs(d)
            for base in ("iptables", "ip6tables"):
                for suffix in ("", "-save", "-restore"):
                    target = shutil.which("%s-%s%s" % (base, st["iptables"], suffix))
                    if target:
                        os.symlink(target, os.path.join(d, base + suffix))
        return dict(os.environ, PATH="%s:%s:%s" % (st["node_bin"], d,
                                                   os.environ.get("PATH", "")))

    def nsenter(self, argv):
        """argv in the node's network namespace only (host mounts and cgroups kept)."""
        self._check_ns(self.node_ns)
        return ["nsenter", "--net=/run/netns/" + self.node_ns, "--"] + list(argv)

    def ctr(self, *args, check=True, timeout=300):
        return _run(self.nsenter([os.path.join(self.state["node_bin"], "ctr"), "--address",
                                  self.state["containerd_sock"], "-n", "k8s.io"] + list(args)),
                    check=check, timeout=timeout)

    def kubectl(self, *args, input=None, check=True, timeout=120):
        return self.run_in(self.node_ns, [os.path.join(self.state["kube_bin"], "kubectl"),
                                          "--kubeconfig", self.kubeconfig] + list(args),
                           input=input, check=check, timeout=timeout)

    def helm(self, *args, check=True, timeout=300):
        env = dict(os.environ, HELM_CACHE_HOME=self.path("helm/cache"),
                   HELM_CONFIG_HOME=self.path("helm/config"),
                   HELM_DATA_HOME=self.path("helm/data"))
        return self.run_in(self.node_ns, [os.path.join(self.state["kube_bin"], "helm"),
                                          "--kubeconfig", self.kubeconfig] + list(args),
                           check=check, timeout=timeout, env=env)

    @property
    def kubeconfig(self):
        return os.path.join(self.state["kube_dir"], "admin.kubeconfig")

    def jsonpath(self, kind, name, path, namespace="default"):
        r = self.kubectl("-n", namespace, "get", kind, name, "-o", "jsonpath=" + path,
                         check=False)
        return r.stdout if r.returncode == 0 else None

    # -- up --------------------------------------------------------------------------------------
    def up(self, log=print):
        if os.geteuid() != 0:
            raise DevenvError("nodeenv needs root")
        if not os.access(self.state["emulator_binary"], os.X_OK):
            raise DevenvError("missing binary %s" % self.state["emulator_binary"])
        if os.path.exists(self.state_path) and self.state["pids"]:
            raise DevenvError("a node is already up in %s" % self.dir)
        os.makedirs(self.path("logs"), exist_ok=True)
        st = self.state
        st["host_paths_before"] = [p for p in HOST_PATHS if os.path.lexists(p)]
        self._save()
        t0 = time.monotonic()
        times = {}

        def step(name, fn):
            t = time.monotonic()
            fn()
            times[name] = time.monotonic() - t

        try:
            step("binaries", self._binaries)
            step("namespaces", self._namespaces)
            step("emulator", self._start_emulator)
            step("apiserver", self._start_apiserver)
            step("services", self._services)
            step("containerd", self._start_containerd)
            step("images", self._import_images)
            step("kubelet", self._start_kubelet)
            step("controllers", self._start_controllers)
            step("node_ready", self._wait_node_ready)
        except BaseException:
            log("nodeenv: up failed; tearing down what was started")
            for name in ("kubelet", "containerd", "kube-controller-manager"):
                tail = self.log(name)[-3000:]
                if tail:
                    log("--- %s.log (tail)\n%s" % (name, tail))
            self.down(log=lambda *a: None)
            raise
        total = time.monotonic() - t0
        st["up_seconds"] = round(total, 2)
        st["up_times"] = {k: round(v, 2) for k, v in times.items()}
        self._save()
        log("nodeenv: up in %.1f s (%s)" % (total, ", ".join(
            "%s %.2f s" % kv for kv in times.items())))
        return total

    def _binaries(self):
        st = self.state
        r = _run([NODE_TESTENV, "bindir"], timeout=3600)
        st["node_bin"] = r.stdout.strip().splitlines()[-1]
        for name in ("pause", "testpod"):
            r = _run([NODE_IMAGES, name], timeout=3600)
            archive, ref = r.stdout.strip().splitlines()[-1].split()
            st["images"][name] = {"archive": archive, "ref": ref}
        self._save()

    def _namespaces(self):
        st = self.state
        node, azure = st["node"], st["imds"]
        for name in (node, azure):
            if os.path.exists("/run/netns/" + name):
                raise DevenvError("network namespace %s exists already" % name)
        for name in (node, azure):
            _run(["ip", "netns", "add", name])
            st["created"].append(name)
            self._save()
            self.run_in(name, ["ip", "link", "set", "lo", "up"])
        self.run_in(node, ["ip", "-batch", "-"], input="\n".join([
            "link add eth0 type veth peer name eth0 netns %s" % azure,
            "addr add %s/24 dev eth0" % NODE_IP, "link set eth0 up",
            "route add default via %s" % AZURE_IP]) + "\n")
        self.run_in(azure, ["ip", "-batch", "-"], input="\n".join([
            "addr add %s/24 dev eth0" % AZURE_IP, "link set eth0 up",
            "link add imds0 type bridge",  # no dummy interfaces on this kernel
            "addr add %s/32 dev imds0" % IMDS_IP, "link set imds0 up",
            "route add %s via %s" % (POD_CIDR, NODE_IP)]) + "\n")
        # As kube-proxy leaves a node: forwarding on, and route_localnet so that a DNAT to
        # 127.0.0.1 (nmi's listener) is routed.
        self.run_in(node, ["sysctl", "-qw", "net.ipv4.ip_forward=1",
                           "net.ipv4.conf.all.route_localnet=1"])

    def _start_apiserver(self):
        st = self.state
        self._check_ns(st["node"])
        pki = os.path.join(st["kube_dir"], "pki")
        args = ["--enable-garbage-collector=true",
                "--kubelet-preferred-address-types=InternalIP",
                "--kubelet-client-certificate=" + os.path.join(pki, "admin.crt"),
                "--kubelet-client-key=" + os.path.join(pki, "admin.key")]
        r = _run([devenv.KUBE_TESTENV, "up", "--netns", st["node"], "--address", NODE_IP,
                  "--port", str(API_PORT), "--dir", st["kube_dir"]]
                 + ["--apiserver-arg=" + a for a in args], check=False, timeout=1800)
        st["kube_started"] = True
        self._save()
        if r.returncode != 0:
            raise DevenvError("kube-testenv up failed:\n" + r.stdout + r.stderr)
        st["kube_bin"] = _run([devenv.KUBE_TESTENV, "bindir"]).stdout.strip().splitlines()[-1]
        self._save()

    def _services(self):
        """kube-proxy's part for the one Service pods and nmi need: `kubernetes`."""
        rules = ["*nat", ":NODEENV-SVC - [0:0]",
                 "-A PREROUTING -j NODEENV-SVC", "-A OUTPUT -j NODEENV-SVC",
                 "-A NODEENV-SVC -d %s/32 -p tcp --dport 443 -j DNAT --to-destination %s:%d"
                 % (SERVICE_IP, NODE_IP, API_PORT), "COMMIT", ""]
        self.run_in(self.node_ns, [self.ipt("iptables-restore"), "--noflush"],
                    input="\n".join(rules))

    # -- containerd --------------------------------------------------------------------------------
    def _cgroup_dirs(self):
        out = []
        for h in sorted(os.listdir("/sys/fs/cgroup")):
            d = os.path.join("/sys/fs/cgroup", h)
            if os.path.isdir(d) and not os.path.islink(d) and \
                    os.path.exists(os.path.join(d, "cgroup.procs")):
                out.append(os.path.join(d, self.state["cgroup_root"].lstrip("/")))
        return out

    def _make_cgroups(self):
        for d in self._cgroup_dirs():
            os.makedirs(d, exist_ok=True)
            parent = os.path.dirname(d)
            for f in ("cpuset.cpus", "cpuset.mems"):
                if os.path.exists(os.path.join(d, f)):
                    with open(os.path.join(parent, f)) as src:
                        value = src.read().strip()
                    with open(os.path.join(d, f), "w") as dst:
                        dst.write(value)

    def _start_containerd(self):
        st = self.state
        c = self.path("c")
        for d in ("root", "state", "runc", "cni/conf", "cni/ipam"):
            os.makedirs(os.path.join(c, d), exist_ok=True)
        self._make_cgroups()
        cni = {"cniVersion": "1.0.0", "name": "nmi-node", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": os.path.join(c, "cni", "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        with open(os.path.join(c, "cni", "conf", "10-nmi-node.conflist"), "w") as f:
            json.dump(cni, f, indent=1)
        q = json.dumps  # TOML basic strings are JSON strings
        config = "\n".join([
            "version = 3",
            "root = %s" % q(os.path.join(c, "root")),
            "state = %s" % q(os.path.join(c, "state")),
            "imports = []",
            # Plugins that would read or write fixed host paths, and NRI.
            "disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.internal.v1.opt',"
            " 'io.containerd.image-verifier.v1.bindir', 'io.containerd.tracing.processor.v1.otlp',"
            " 'io.containerd.internal.v1.tracing']",
            "[grpc]", "  address = %s" % q(st["containerd_sock"]),
            "[ttrpc]", "  address = %s" % q(st["containerd_sock"] + ".ttrpc"),
            "[debug]", "  address = ''", "  level = 'info'",
            "[metrics]", "  address = ''",
            "[plugins.'io.containerd.cri.v1.images']", "  snapshotter = 'overlayfs'",
            "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
            "  sandbox = %s" % q(st["images"]["pause"]["ref"]),
            "[plugins.'io.containerd.cri.v1.runtime']",
            # No CAP_SYS_RESOURCE here: sandboxes cannot get oom_score_adj -998 (real-node.md).
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            "  enable_cdi = false",
            "  cdi_spec_dirs = []",
            "[plugins.'io.containerd.cri.v1.runtime'.cni]",
            "  bin_dirs = [%s]" % q(st["node_bin"]),
            "  conf_dir = %s" % q(os.path.join(c, "cni", "conf")),
            "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
            "  runtime_type = 'io.containerd.runc.v2'",
            "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
            "  BinaryName = %s" % q(shutil.which("runc") or "/usr/sbin/runc"),
            "  SystemdCgroup = false",
            "  Root = %s" % q(os.path.join(c, "runc")),
            "[plugins.'io.containerd.grpc.v1.cri']",
            "  stream_server_address = '127.0.0.1'",
            ""])
        with open(os.path.join(c, "config.toml"), "w") as f:
            f.write(config)
        self.start_containerd()

    def start_containerd(self):
        """containerd with the configuration `up` wrote; returns once it answers."""
        proc = self._spawn_host("containerd", [os.path.join(self.state["node_bin"], "containerd"),
                                               "--config", self.path("c/config.toml")],
                                env=self.daemon_env())
        self._wait(lambda: self.ctr("version", check=False).returncode == 0, 30,
                   "containerd did not answer", proc, "containerd")

    def _spawn_host(self, key, argv, env=None):
        """A node daemon: in the node's network namespace only (nsenter --net; `ip netns exec`
        would mount a fresh /sys without cgroups), detached, logged to logs/<key>.log."""
        with open(self.path(os.path.join("logs", key + ".log")), "ab") as logf:
            proc = subprocess.Popen(self.nsenter(argv), stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.state["pids"][key] = proc.pid
        self._save()
        return proc

    def _wait(self, cond, timeout, what, proc=None, log_name=None):
        def done():
            if cond():
                return True
            if proc is not None and proc.poll() is not None:
                raise DevenvError("%s: exited with %s\n%s" % (what, proc.returncode,
                                                             self.log(log_name)[-3000:]))
            return False
        try:
            wait_until(done, timeout=timeout, interval=0.1, message=what)
        except AssertionError:
            raise DevenvError("%s within %d s\n%s" % (
                what, timeout, self.log(log_name)[-3000:] if log_name else "")) from None

    def _import_images(self):
        for name in ("pause", "testpod"):
            self.import_image(self.state["images"][name]["archive"])

    def import_image(self, archive):
        """An OCI archive into containerd's k8s.io namespace (tag from its ref annotation)."""
        self.ctr("images", "import", archive, timeout=600)

    # -- kubelet and the control plane -------------------------------------------------------------
    def kubelet_config(self):
        st = self.state
        k = self.path("kubelet")
        pki = os.path.join(st["kube_dir"], "pki")
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine has cgroup v1
            "failSwapOn": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": st["cgroup_root"],
            "containerRuntimeEndpoint": "unix://" + st["containerd_sock"],
            "address": NODE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False},
                               "webhook": {"enabled": False},
                               "x509": {"clientCAFile": os.path.join(pki, "ca.crt")}},
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": os.path.join(k, "pod-logs"),
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            # Images exist only because we imported them: never collect them; never evict for
            # the shared disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False,
            "localStorageCapacityIsolation": False,
            "registerWithTaints": st.get("register_taints", []),
            "shutdownGracePeriod": "0s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
        }

    def _start_kubelet(self):
        st = self.state
        k = self.path("kubelet")
        for d in ("root", "certs", "pod-logs"):
            os.makedirs(os.path.join(k, d), exist_ok=True)
        with open(os.path.join(k, "config.yaml"), "w") as f:
            json.dump(self.kubelet_config(), f, indent=1)  # JSON is YAML
        st["kubelet_argv"] = [
            os.path.join(st["node_bin"], "kubelet"), "--config", os.path.join(k, "config.yaml"),
            "--kubeconfig", self.kubeconfig, "--root-dir", os.path.join(k, "root"),
            "--cert-dir", os.path.join(k, "certs"), "--hostname-override", NODE_NAME,
            "--node-ip", NODE_IP, "--v=1"]
        self.start_kubelet()

    def start_kubelet(self):
        st = self.state
        self._spawn_host("kubelet", st["kubelet_argv"], env=self.daemon_env())

    def _start_controllers(self):
        st = self.state
        pki = os.path.join(st["kube_dir"], "pki")
        self._spawn_host("kube-controller-manager", [
            os.path.join(st["node_bin"], "kube-controller-manager"),
            "--kubeconfig", self.kubeconfig, "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--service-account-private-key-file=" + os.path.join(pki, "sa.key"),
            "--root-ca-file=" + os.path.join(pki, "ca.crt"),
            "--use-service-account-credentials=false", "--controllers=*",
            "--concurrent-daemonset-syncs=2", "--v=1"])
        self._spawn_host("kube-scheduler", [
            os.path.join(st["node_bin"], "kube-scheduler"), "--kubeconfig", self.kubeconfig,
            "--leader-elect=false", "--bind-address=127.0.0.1", "--v=1"])

    def node_ready(self):
        out = self.jsonpath("node", NODE_NAME,
                            '{.status.conditions[?(@.type=="Ready")].status}')
        return out == "True"

    def _wait_node_ready(self):
        self._wait(self.node_ready, 120, "node %s was not Ready" % NODE_NAME,
                   log_name="kubelet")

    # -- pods ----------------------------------------------------------------------------------
    def wait_pods(self, namespace, selector=None, names=(), timeout=120, condition="Ready"):
        target = ["pod/" + n for n in names] if names else ["pod", "-l", selector]
        r = self.kubectl("-n", namespace, "wait", "--for=condition=%s" % condition,
                         "--timeout=%ds" % timeout, *target, check=False, timeout=timeout + 30)
        if r.returncode != 0:
            desc = self.kubectl("-n", namespace, "describe", *target, check=False).stdout
            raise DevenvError("pods not %s: %s\n%s" % (condition, r.stderr, desc[-4000:]))

    # -- reboot --------------------------------------------------------------------------------
    def reboot(self, boot_guard=False, log=print):
        """A node reboot without the VM: kubelet stops, every container dies, containerd and the
        shims stop, and the node's firewall is lost as in any reboot (the network namespace, its
        links and addresses stay: they stand for the VM's NIC). Then, as the node boots:
        kube-proxy's Service rule, with `boot_guard` deploy/node-boot/nmi-guard.rules (what a
        systemd unit ordered before the kubelet installs), containerd, kubelet. Pods and nmi
        come back as kubelet restarts them."""
        st = self.state
        t0 = time.monotonic()
        stop_pid(st["pids"].get("kubelet"), "kubelet")
        self._kill_cgroups()
        stop_pid(st["pids"].get("containerd"), "containerd")
        # The control plane is not on this node: etcd, the API server, the controller-manager
        # and the scheduler run on.
        keep = {v for k, v in self.all_pids().items()
                if k in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")}
        for pid in devenv._pids_in_netns({devenv._netns_inode("/run/netns/" + st["node"])}):
            if pid not in keep:
                stop_pid(pid, None, timeout=5)
        for key in ("kubelet", "containerd"):
            st["pids"].pop(key, None)
        self._save()
        for tool in ("iptables-nft", "iptables-legacy"):
            for table in ("nat", "filter", "mangle", "raw"):
                self.run_in(self.node_ns, [tool, "-t", table, "-F"], check=False)
                self.run_in(self.node_ns, [tool, "-t", table, "-X"], check=False)
        down = time.monotonic() - t0
        self._services()
        if boot_guard:
            with open(os.path.join(REPO, "deploy", "node-boot", "nmi-guard.rules")) as f:
                self.run_in(self.node_ns, [self.ipt("iptables-restore"), "--noflush"],
                            input=f.read())
        self.start_containerd()
        self.start_kubelet()
        self._wait_node_ready()
        log("nodeenv: rebooted (down %.1f s, up %.1f s)" % (down, time.monotonic() - t0 - down))

    # -- down ----------------------------------------------------------------------------------
    def _cgroup_pids(self):
        pids = set()
        for d in self._cgroup_dirs():
            for root, _dirs, files in os.walk(d):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(root, "cgroup.procs")) as f:
                            pids.update(int(x) for x in f.read().split())
                    except OSError:
                        pass
        return pids

    def _kill_cgroups(self, timeout=15):
        def killed():
            pids = self._cgroup_pids()
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            return not pids
        try:
            wait_until(killed, timeout=timeout, interval=0.1, message="the cgroups to empty")
        except AssertionError:
            pass
        return self._cgroup_pids()

    def _remove_cgroups(self):
        for d in self._cgroup_dirs():
            if not os.path.isdir(d):
                continue
            for root, dirs, _files in sorted(os.walk(d, topdown=False),
                                             key=lambda t: -t[0].count("/")):
                def removed(path=root):
                    try:
                        os.rmdir(path)
                    except FileNotFoundError:
                        pass
                    except OSError:
                        return False  # busy until its last task has left
                    return True
                try:
                    wait_until(removed, timeout=5, interval=0.1, message="rmdir " + root)
                except AssertionError:
                    pass

    def _unmount_under(self, prefixes):
        for _ in range(3):
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f]
            ours = [p for p in points if any(p == x or p.startswith(x + "/") for x in prefixes)]
            if not ours:
                return
            for p in sorted(set(ours), key=lambda s: -s.count("/")):
                if _run(["umount", p], check=False).returncode != 0:
                    _run(["umount", "-l", p], check=False)

    def down(self, log=print):
        st = self.state
        t0 = time.monotonic()
        pids = st.get("pids", {})
        stop_pid(pids.get("kubelet"), "kubelet")
        stop_pid(pids.get("kube-scheduler"), "kube-scheduler")
        stop_pid(pids.get("kube-controller-manager"), "kube-controller-manager")
        if "cgroup_root" in st:
            left = self._kill_cgroups()
            if left:
                log("nodeenv: processes left in the node's cgroups: %s" % sorted(left))
        stop_pid(pids.get("containerd"), "containerd")
        for key in ("kubelet", "kube-scheduler", "kube-controller-manager", "containerd"):
            pids.pop(key, None)
        self._save()
        # What is left in the node's namespace but the API server and etcd (kube-testenv stops
        # those): the shims and hostNetwork containers.
        try:
            inode = devenv._netns_inode("/run/netns/" + st["node"])
        except OSError:
            inode = None
        if inode is not None and inode not in devenv.root_netns_inodes():
            keep = set(self.all_pids().values())
            for pid in devenv._pids_in_netns({inode}):
                if pid not in keep:
                    stop_pid(pid, None, timeout=5)
        self._unmount_under([self.dir])
        # etcd, kube-apiserver, the emulator, then the namespaces: devenv's down.
        super().down(log=lambda *a: None)
        if "cgroup_root" in st:
            self._remove_cgroups()
        shutil.rmtree(self.dir, ignore_errors=True)
        for p in HOST_PATHS:
            if p not in st.get("host_paths_before", HOST_PATHS) and os.path.lexists(p):
                if os.path.isdir(p) and not os.path.islink(p):
                    self._unmount_under([p])
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
        log("nodeenv: down in %.1f s" % (time.monotonic() - t0))


# ---------------------------------------------------------------------------------------------
# Command line (scripts/node-testenv up|down|kubectl|...)
# ---------------------------------------------------------------------------------------------

def main(argv):
    import sys
    d = os.environ.get("NMI_NODEENV_DIR", "/tmp/nmi-node")
    args = list(argv)
    if args[:1] == ["--dir"] and len(args) > 1:
        d, args = args[1], args[2:]
    if not args:
        sys.stderr.write("usage: nodeenv [--dir DIR] up|down|status|kubectl ARGS|helm ARGS|"
                         "ctr ARGS|host -- CMD\n")
        return 2
    cmd, rest = args[0], args[1:]
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if cmd == "up":
        emu = os.environ.get("NMI_EMULATOR") or os.path.join(
            os.environ.get("BUILD_DIR") or os.path.join(REPO, "build"), "bin", "azure-emulator")
        env = NodeEnv(d, prefix=os.environ.get("NMI_NODEENV_PREFIX") or "nmi-node-",
                      emulator_binary=emu)
        if env.state.get("pids"):
            say("nodeenv: already up in %s" % d)
            return 1
        env.up(log=say)
        return 0
    if not os.path.exists(os.path.join(d, "state.json")):
        say("nodeenv: nothing in %s" % d)
        return 0 if cmd == "down" else 1
    env = NodeEnv(d)
    if cmd == "down":
        env.down(log=say)
        return 0
    if cmd == "status":
        print(json.dumps({k: {"pid": v, "alive": pid_alive(v)} for k, v in
                          env.all_pids().items()}, indent=1))
        return 0
    if cmd in ("kubectl", "helm", "ctr"):
        r = getattr(env, cmd)(*rest, check=False)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode
    if cmd == "host":
        if rest[:1] == ["--"]:
            rest = rest[1:]
        env_vars = dict(os.environ, KUBECONFIG=env.kubeconfig,
                        PATH=env.state["kube_bin"] + ":" + os.environ["PATH"])
        return subprocess.call(env.nsenter(rest), env=env_vars)
    say("nodeenv: unknown command %s" % cmd)
    return 2
