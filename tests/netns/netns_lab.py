"""A simulated Azure node in network namespaces, for nmi's interception tests (standard library,
plus tests/lib/nmi_pytest and tests/lib/azure_emulator.py).

Topology (shared/reference/node-network-lab.md, addendum): a node namespace with a bridge cbr0
(10.244.0.1/24) and pod namespaces on it (podA 10.244.0.11, podB .12, podC .13); an "imds"
namespace behind the node's uplink (node up0 10.246.0.1/30 <-> imds up0 10.246.0.2/30) holding
169.254.169.254 on a bridge without ports, with the Azure emulator listening there on port 80. The
node forwards pods' metadata traffic towards it, as on Azure.

Every namespace is created by this module with a unique name (nmi-ipt-<pid>-<tag>-<role>) and
deleted by Lab.down(), also after a failure. iptables is only ever run through Lab.iptables(),
which refuses anything but `ip netns exec <one of our namespaces>`: the root namespace's firewall
is never touched.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

from nmi_pytest import harness  # noqa: E402
from nmi_pytest.waits import wait_until  # noqa: E402
from azure_emulator import AzureEmulator  # noqa: E402

NODE_IP = "10.244.0.1"
UPLINK_NODE = "10.246.0.1"
UPLINK_IMDS = "10.246.0.2"
IMDS_IP = "169.254.169.254"
POD_IPS = {"podA": "10.244.0.11", "podB": "10.244.0.12", "podC": "10.244.0.13"}
ROLES = ("node", "imds") + tuple(POD_IPS)
IMDS_SERVER_PREFIX = "IMDS/"  # the emulator's Server header; nmi sends none


class GuardError(RuntimeError):
    pass


def _run(argv, check=True, timeout=30, env=None, input=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                       input=input)
    if check and r.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                   r.stderr))
    return r


class Lab:
    def __init__(self, backend, tag):
        assert backend in ("nft", "legacy"), backend
        self.backend = backend
        self.prefix = "nmi-ipt-%d-%s-" % (os.getpid(), tag)
        self.names = {role: self.prefix + role for role in ROLES}
        self.created = []
        self.dir = tempfile.mkdtemp(prefix="nmi-netns-")
        self.lock_file = os.path.join(self.dir, "xtables.lock")
        self.emulator = None

    # -- namespaces ----------------------------------------------------------------------------
    def up(self):
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self):
        for role in ROLES:
            name = self.names[role]
            _run(["ip", "netns", "add", name])
            self.created.append(name)
            self.run(role, ["ip", "link", "set", "lo", "up"])
        n = lambda *a: self.run("node", list(a))  # noqa: E731
        m = lambda *a: self.run("imds", list(a))  # noqa: E731
        n("ip", "link", "add", "cbr0", "type", "bridge")
        n("ip", "addr", "add", NODE_IP + "/24", "dev", "cbr0")
        n("ip", "link", "set", "cbr0", "up")
        for pod, ip in POD_IPS.items():
            veth = "veth" + pod
            n("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
              self.names[pod])
            n("ip", "link", "set", veth, "master", "cbr0")
            n("ip", "link", "set", veth, "up")
            self.run(pod, ["ip", "addr", "add", ip + "/24", "dev", "eth0"])
            self.run(pod, ["ip", "link", "set", "eth0", "up"])
            self.run(pod, ["ip", "route", "add", "default", "via", NODE_IP])
        n("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0", "netns",
          self.names["imds"])
        n("ip", "addr", "add", UPLINK_NODE + "/30", "dev", "up0")
        n("ip", "link", "set", "up0", "up")
        m("ip", "addr", "add", UPLINK_IMDS + "/30", "dev", "up0")
        m("ip", "link", "set", "up0", "up")
        m("ip", "link", "add", "imds0", "type", "bridge")  # no dummy interfaces on this kernel
        m("ip", "addr", "add", IMDS_IP + "/32", "dev", "imds0")
        m("ip", "link", "set", "imds0", "up")
        m("ip", "route", "add", "10.244.0.0/24", "via", UPLINK_NODE)
        n("ip", "route", "add", IMDS_IP + "/32", "via", UPLINK_IMDS)
        n("sysctl", "-qw", "net.ipv4.ip_forward=1")  # our own namespace only

    def down(self):
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator.remove_workdir()
            self.emulator = None
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.created = []
        subprocess.run(["rm", "-rf", self.dir])

    def ns(self, role):
        return harness.NamedNetns(self.names[role])

    def path(self, role):
        return "/run/netns/" + self.names[role]

    def run(self, role, argv, check=True, timeout=30, env=None, input=None):
        name = self.names[role]
        if name not in self.created:
            raise GuardError("namespace %s is not one of this lab's" % name)
        return _run(["ip", "netns", "exec", name] + list(argv), check=check, timeout=timeout,
                    env=env, input=input)

    # -- iptables, guarded -----------------------------------------------------------------------
    def _check_not_root_namespace(self, role):
        name = self.names[role]
        if name not in self.created:
            raise GuardError("refusing iptables outside this lab's namespaces (%s)" % name)
        if os.stat(self.path(role)).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise GuardError("refusing iptables: %s is the test process's own namespace" % name)

    def iptables(self, *args, check=True, role="node"):
        """`ip netns exec <node> iptables-<backend> -w ...`, never anything else."""
        self._check_not_root_namespace(role)
        env = dict(os.environ, XTABLES_LOCKFILE=self.lock_file)
        return self.run(role, ["iptables-" + self.backend, "-w"] + list(args), check=check,
                        env=env)

    def save(self, table):
        self._check_not_root_namespace("node")
        return self.run("node", ["iptables-%s-save" % self.backend, "-t", table]).stdout

    def rules(self, table, chain):
        """The specs of `chain` in order, as iptables-save prints them."""
        out = []
        for line in self.save(table).splitlines():
            if line.startswith("-A %s " % chain):
                out.append(line[len("-A %s " % chain):])
        return out

    def wait_rules(self, table, chain, predicate, timeout):
        """Polls until predicate(rules) holds; returns the seconds it took, or None."""
        t0 = time.monotonic()
        try:
            wait_until(lambda: predicate(self.rules(table, chain)), timeout=timeout,
                       message="the rules of %s %s" % (table, chain))
        except AssertionError:
            return None
        return time.monotonic() - t0

    def conntrack_to_imds(self):
        r = self.run("node", ["conntrack", "-L", "-p", "tcp", "--orig-dst", IMDS_IP],
                     check=False)
        return [line for line in r.stdout.splitlines() if line.strip()]

    # -- the IMDS stand-in -----------------------------------------------------------------------
    def start_emulator(self, user_assigned):
        cfg = {
            "tenant_id": harness.TENANT,
            "token_lifetime_sec": 86400,
            "imds": {"listen": IMDS_IP + ":80", "user_assigned": list(user_assigned),
                     "max_concurrent": 0, "max_rps": 0,
                     "instance": {"compute": {"name": "vm-netns", "location": "westeurope"}}},
            "control": {"listen": "127.0.0.1:0", "socket": True},
        }
        self.emulator = AzureEmulator(harness.NMI_EMULATOR, cfg,
                                      netns=self.names["imds"]).start()
        return self.emulator

    def imds_requests_from_pods(self, since_seq=0):
        """Requests the IMDS stand-in received from a pod address (it should see none while
        interception works)."""
        return [e for e in self.emulator.log()
                if e["seq"] > since_seq and e["remote_addr"].split(":")[0] in POD_IPS.values()]

    def last_seq(self):
        return harness.last_seq(self.emulator)


# ---------------------------------------------------------------------------------------------
# nmi in the node namespace
# ---------------------------------------------------------------------------------------------

class NodeNmi(harness.Nmi):
    """harness.Nmi inside the lab's node namespace, on fixed ports (the DNAT target must not
    change across restarts), with SIGKILL and a start that does not wait."""

    PORT, PROBE_PORT, METRICS_PORT = 2579, 8085, 9095

    def __init__(self, lab, objects, listen_address=NODE_IP, extra_args=(), env=None):
        args = ["--iptables-backend=" + lab.backend, "--iptables-lock-file=" + lab.lock_file]
        super().__init__(None, objects, 0, extra_args=args + list(extra_args), env=env,
                         netns=lab.ns("node"), imds_endpoint=IMDS_IP + ":80",
                         metadata_endpoint=IMDS_IP + ":80", listen_address=listen_address)
        self.lab = lab
        self.port, self.probe_port, self.metrics_port = self.PORT, self.PROBE_PORT, self.METRICS_PORT

    def spawn(self):
        """Starts the process and returns at once."""
        assert self.netns is not None and self.netns.name in self.lab.created  # never the root ns
        return super().spawn()

    def start(self, ready_timeout=15.0):
        self.spawn()
        try:
            self._wait_ready(ready_timeout)
        except harness.NmiError:
            self.stop(check=False)
            raise
        return self

    def kill(self):
        """SIGKILL, as a crash: nothing is cleaned up."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
            if self._log:
                self._log.close()
                self._log = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def readyz(self):
        try:
            r = self.probe("/readyz", timeout=2.0)
            return r.status, r.text()
        except (OSError, harness.ConnectionClosed) as e:
            return None, str(e)

    def cleanup(self, *extra):
        """`nmi cleanup` in the node namespace."""
        return self.lab.run("node", [harness.NMI_BINARY, "cleanup",
                                     "--iptables-backend=" + self.lab.backend,
                                     "--iptables-lock-file=" + self.lab.lock_file] + list(extra),
                            check=False)


# ---------------------------------------------------------------------------------------------
# Pods' requests
# ---------------------------------------------------------------------------------------------

def classify(resp):
    if (resp.header("Server") or "").startswith(IMDS_SERVER_PREFIX):
        return "imds"
    return "nmi-%d" % resp.status


def pod_token(lab, pod, resource="https://vault.azure.net", timeout=5.0):
    """A token request from `pod` to 169.254.169.254:80, raw bytes, in the pod's namespace."""
    target = harness.token_target(resource)
    return harness.send_raw(80, harness.build_request(target, harness.META), host=IMDS_IP,
                            netns=lab.path(pod), timeout=timeout)


def pod_curl(lab, pod, path, timeout=5):
    """curl from inside the pod namespace; (exit code, headers+body text)."""
    r = lab.run(pod, ["curl", "-sS", "-i", "-m", str(timeout), "-H", "Metadata:true",
                      "http://%s%s" % (IMDS_IP, path)], check=False, timeout=timeout + 5)
    return r.returncode, r.stdout + r.stderr


class Prober:
    """Opens a new connection from a pod to 169.254.169.254:80 every `period` seconds and sends a
    token request; records (time, outcome): "nmi-<status>", "imds" (the stand-in answered),
    "refused", "reset", "timeout", "closed" or "error:<text>". Runs on a thread that joined the
    pod's namespace once."""

    def __init__(self, lab, pod, period=0.01, timeout=0.5):
        self.lab, self.pod, self.period, self.timeout = lab, pod, period, timeout
        self.results = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.request = harness.build_request(harness.token_target("https://vault.azure.net"),
                                             harness.META)

    def __enter__(self):
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        if self._error:
            raise self._error

    def _run(self):
        try:
            fd = os.open(self.lab.path(self.pod), os.O_RDONLY)
            try:
                if harness._libc.setns(fd, harness.CLONE_NEWNET) != 0:
                    raise OSError("setns failed")
            finally:
                os.close(fd)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        while not self._stop.is_set():
            self.results.append((time.monotonic(), self._once()))
            time.sleep(self.period)  # pacing: one probe every `period` s is the measurement

    def _once(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect((IMDS_IP, 80))
            s.sendall(self.request)
            resp, _ = harness._read_response(s, b"")
            return classify(resp)
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"
        except socket.timeout:
            return "timeout"
        except harness.ConnectionClosed:
            return "closed"
        except OSError as e:
            return "error:%s" % e
        finally:
            s.close()

    def outcomes(self, since=0.0, until=None):
        return [o for t, o in self.results if t >= since and (until is None or t <= until)]

    def first(self, outcome, since):
        for t, o in self.results:
            if t >= since and o == outcome:
                return t
        return None


def metric(nmi, name, **labels):
    return nmi.metric_value(name, **labels)


def report(name, value, unit):
    """A measured figure, printed for the log (ctest -V / pytest -s)."""
    line = "MEASURE %s = %s %s" % (name, value, unit)
    print(line, flush=True)
    path = os.environ.get("NMI_NETNS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


__all__ = ["Lab", "NodeNmi", "Prober", "classify", "pod_token", "pod_curl", "metric",
           "wait_until", "report", "GuardError", "IMDS_IP", "NODE_IP", "POD_IPS", "UPLINK_NODE",
           "harness"]
