"""Integration-test harness for nmi: starts the real daemon against tools/azure-emulator and talks
to it over real sockets. Standard library only (plus tests/lib/azure_emulator.py).

Pieces:
  * Binaries: env NMI_BINARY / NMI_EMULATOR (ctest sets them), else /tmp/b-main/bin/...
  * The emulator's IMDS HTTP stack: env NMI_EMULATOR_STACK = "go" (default) or "windows" (behaves
    like http.sys). ctest runs the hostile suites once with each; a "windows" process takes file
    slot FILE_INDEX + STACK_SLOT_OFFSET for its ports and pod addresses, so both run side by side.
  * Object builders for the identity file: pod(), secret(), azure_identity(), binding(),
    assigned(), exception().
  * Nmi: writes the identity file, starts nmi on ports of its own, waits for /readyz, captures the
    log, rewrites the file atomically, stops with SIGTERM (SIGKILL after 10 s) and checks exit 0.
  * Raw HTTP: send_raw() sends exact bytes and parses the answer; request() builds a request;
    Conn is a persistent connection. Every client can bind its source address (a pod's IP) and
    can open its socket inside another network namespace.
"""
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(LIB))
if LIB not in sys.path:
    sys.path.insert(0, LIB)

from azure_emulator import AzureEmulator, decode_jwt  # noqa: E402
from nmi_pytest.waits import wait_until  # noqa: E402

NMI_BINARY = os.environ.get("NMI_BINARY") or "/tmp/b-main/bin/nmi"
NMI_EMULATOR = os.environ.get("NMI_EMULATOR") or "/tmp/b-main/bin/azure-emulator"
NODE = "node-1"  # nmi_pytest.objects.NODE
TOKEN_PATH = "/metadata/identity/oauth2/token"

EMULATOR_STACK = os.environ.get("NMI_EMULATOR_STACK") or "go"
if EMULATOR_STACK not in ("go", "windows"):
    raise RuntimeError("NMI_EMULATOR_STACK must be go or windows, not %r" % EMULATOR_STACK)

TOKEN_FIELDS = ["access_token", "client_id", "expires_in", "expires_on", "ext_expires_in",
                "not_before", "resource", "token_type"]

# ---------------------------------------------------------------------------------------------
# Ports and addresses
# ---------------------------------------------------------------------------------------------

_port_lock = threading.Lock()
_port_next = {}

# Every test file owns a slot: a port range (20000 + 400 * slot ...) and a pod address block
# (127.0.<slot>.x). Slot = FILE_INDEX: the integration files use 1..9, tests/kube and tests/deploy
# 20 and up. Under NMI_EMULATOR_STACK=windows an integration file (1..9) uses slot FILE_INDEX +
# STACK_SLOT_OFFSET (11..19) instead, so the two variants of one file, which ctest -j runs at the
# same time, never share a port range or a pod address, nor meet a kube or deploy file. Ports stay
# below the ephemeral range (32768 up) up to slot 30.
STACK_SLOT_OFFSET = 10


def file_slot(file_index):
    """The slot (port range and pod address block) of a test file in this process."""
    if EMULATOR_STACK != "windows":
        return file_index
    if not 1 <= file_index < STACK_SLOT_OFFSET:
        raise RuntimeError("FILE_INDEX %d cannot run with the windows stack (1..%d only)"
                           % (file_index, STACK_SLOT_OFFSET - 1))
    return file_index + STACK_SLOT_OFFSET


def free_port(file_index):
    """A free TCP port from a range owned by one test file (20000 + 400 * slot ...), below the
    ephemeral range. nmi binds with SO_REUSEPORT, so two tests picking the same port could both
    bind it: disjoint ranges per file (and a counter within a file) rule that out."""
    slot = file_slot(file_index)
    if 20000 + 400 * (slot + 1) > 32768:
        raise RuntimeError("port range of slot %d reaches the ephemeral ports" % slot)
    base = 20000 + 400 * slot
    with _port_lock:
        n = _port_next.get(file_index, (os.getpid() * 7) % 400)
        for _ in range(400):
            port = base + n
            n = (n + 1) % 400
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            finally:
                s.close()
            _port_next[file_index] = n
            return port
    raise RuntimeError("no free port in range of file %d" % file_index)


class PodIps:
    """Hands out pod addresses 127.0.<slot>.<n>, n from 10 up, one per call (slot = FILE_INDEX, or
    FILE_INDEX + STACK_SLOT_OFFSET with the windows stack)."""

    def __init__(self, file_index):
        self.file_index = file_slot(file_index)
        self.n = 10
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            if self.n > 254:
                raise RuntimeError("out of pod addresses")
            ip = "127.0.%d.%d" % (self.file_index, self.n)
            self.n += 1
            return ip


# ---------------------------------------------------------------------------------------------
# Network namespaces (for a non-loopback peer)
# ---------------------------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns_path, fn):
    """Run fn() on a fresh thread that has joined the network namespace at netns_path (sockets
    created there stay in that namespace); returns its result or raises its exception."""
    out = {}

    def run():
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns(%s) failed" % netns_path)
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class NamedNetns:
    """A named network namespace (ip netns): what Nmi needs of a namespace (a path for setns
    and a command prefix). With create=True it is added here, with lo up, and close() deletes
    it; otherwise it is someone else's and close() leaves it."""

    def __init__(self, name, create=False):
        self.name = name
        self.path = "/run/netns/" + name
        self.created = False
        if create:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            self.created = True
            subprocess.run(self.prefix() + ["ip", "link", "set", "lo", "up"], check=True)

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def close(self):
        if self.created:
            subprocess.run(["ip", "netns", "delete", self.name], check=False,
                           capture_output=True)
            self.created = False


class NetNs:
    """A network namespace held by `unshare -n sleep`, with lo up and a bridge (no ports)
    carrying `address`/24: a local, non-loopback address that exists only in this namespace."""

    def __init__(self, address="10.250.0.1"):
        self.address = address
        self.proc = subprocess.Popen(["unshare", "--net", "--", "sleep", "600"],
                                     stdin=subprocess.DEVNULL)
        self.path = "/proc/%d/ns/net" % self.proc.pid
        try:
            wait_until(lambda: os.readlink(self.path) != os.readlink("/proc/self/ns/net"),
                       timeout=5, interval=0.01, message="unshare to create a network namespace")
        except AssertionError:
            self.close()
            raise
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "nmitest0", "type", "bridge"],
                    ["ip", "addr", "add", address + "/24", "dev", "nmitest0"],
                    ["ip", "link", "set", "nmitest0", "up"]):
            subprocess.run(self.prefix() + cmd, check=True)

    def prefix(self):
        return ["nsenter", "--net=" + self.path, "--"]

    def close(self):
        if self.proc is not None:
            self.proc.kill()  # only the holder this object started
            self.proc.wait()
            self.proc = None


# ---------------------------------------------------------------------------------------------
# Raw HTTP
# ---------------------------------------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body, version, raw):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.version = version
        self.raw = raw
        self.elapsed = None

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<Response %s %r %r>" % (self.status, self.headers, self.body[:300])


class ConnectionClosed(Exception):
    """The server closed (or reset) the connection without a complete response."""

    def __init__(self, msg, partial=b""):
        super().__init__(msg)
        self.partial = partial


def connect(port, source=None, host="127.0.0.1", timeout=10.0, netns=None):
    def make():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        return s

    return in_netns(netns, make) if netns else make()


def _read_response(sock, buf, head_only=False):
    """Read one response from sock, starting with bytes already in buf. Returns
    (Response, remaining bytes). Raises ConnectionClosed when the peer closes first."""
    data = buf
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed("closed before a response head", data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise ValueError("bad status line %r" % lines[0])
    version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    hmap = {k.lower(): v for k, v in headers}
    body = b""
    if head_only or status in (204, 304) or 100 <= status < 200:
        pass
    elif "chunked" in hmap.get("transfer-encoding", "").lower():
        while True:
            while b"\r\n" not in rest:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionClosed("closed in chunked body", data)
                rest += chunk
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionClosed("closed in chunked body", data)
                rest += chunk
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break
    elif "content-length" in hmap:
        n = int(hmap["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionClosed("closed in body", data)
            rest += chunk
        body, rest = rest[:n], rest[n:]
    else:
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            rest += chunk
        body, rest = rest, b""
    return Response(status, reason, headers, body, version, head + b"\r\n\r\n" + body), rest


def send_raw(port, data, source=None, host="127.0.0.1", timeout=10.0, netns=None,
             head_only=False, half_close=False):
    """Send exactly `data` on a new connection and read one response. Returns a Response, or
    raises ConnectionClosed when the server closed without answering."""
    sock = connect(port, source, host, timeout, netns)
    try:
        t0 = time.monotonic()
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        resp, _ = _read_response(sock, b"", head_only)
        resp.elapsed = time.monotonic() - t0
        return resp
    finally:
        sock.close()


def build_request(target, headers=None, method="GET", body=b"", host="169.254.169.254",
                  close=True, version="HTTP/1.1"):
    """Request bytes. headers: dict or list of pairs, sent in order and verbatim."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    lines = ["%s %s %s" % (method, target, version)]
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        lines.append("Host: " + host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    if close and "connection" not in names:
        lines.append("Connection: close")
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request(port, target, headers=None, source=None, method="GET", body=b"", timeout=10.0,
            netns=None, host="169.254.169.254"):
    return send_raw(port, build_request(target, headers, method, body, host=host), source=source,
                    timeout=timeout, netns=netns, head_only=(method == "HEAD"))


META = {"Metadata": "true"}


def token_target(resource="https://vault.azure.net", **params):
    from urllib.parse import urlencode
    q = {"api-version": "2018-02-01"}
    if resource is not None:
        q["resource"] = resource
    q.update(params)
    return TOKEN_PATH + "?" + urlencode(q)


class Conn:
    """A persistent client connection (keep-alive, pipelining)."""

    def __init__(self, port, source=None, host="127.0.0.1", timeout=10.0, netns=None):
        self.sock = connect(port, source, host, timeout, netns)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read(self, head_only=False):
        resp, self.buf = _read_response(self.sock, self.buf, head_only)
        return resp

    def closed_by_peer(self, timeout=5.0):
        """True when the server closed the connection (recv returns EOF/reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Objects (nmi_pytest/objects.py): the identity file's and the API server's
# ---------------------------------------------------------------------------------------------

from nmi_pytest.objects import (  # noqa: E402,F401 - re-exported: harness.pod(...)
    API, assigned, azure_identity, binding, exception, pod, secret)


def client_id_for(tag):
    """A deterministic GUID-shaped client id for a name (readable in logs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nmi-it/" + tag))


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------

def make_certificate(directory, password="pfx-pass", cn="nmi-it-sp"):
    """RSA key + self-signed certificate + PKCS#12. Returns dict(cert_pem path, pfx bytes,
    password)."""
    key = os.path.join(directory, "sp.key")
    cert = os.path.join(directory, "sp.pem")
    pfx = os.path.join(directory, "sp.pfx")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=" + cn],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkcs12", "-export", "-inkey", key, "-in", cert, "-out", pfx,
                    "-passout", "pass:" + password], check=True, capture_output=True)
    with open(pfx, "rb") as f:
        pfx_bytes = f.read()
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return {"cert_pem": cert, "pfx": pfx_bytes, "password": password, "der": der}


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------

TENANT = "72f988bf-0000-0000-0000-0000000000aa"


def start_emulator(user_assigned, apps=(), token_lifetime_sec=86400, proxy=True,
                   system_assigned=None, http_stack=None):
    """An azure-emulator with the given IMDS identities and AAD apps, throttling off; its IMDS
    listener has the HTTP stack http_stack (default: NMI_EMULATOR_STACK)."""
    cfg = {
        "tenant_id": TENANT,
        "token_lifetime_sec": token_lifetime_sec,
        "imds": {"listen": "127.0.0.1:0", "system_assigned": system_assigned,
                 "user_assigned": list(user_assigned), "max_concurrent": 0, "max_rps": 0,
                 "instance": {"compute": {"name": "vm-it", "location": "westeurope",
                                          "vmId": "00000000-0000-0000-0000-00000000beef"}}},
        "aad": {"listen": "127.0.0.1:0", "apps": list(apps)},
        "control": {"listen": "127.0.0.1:0"},
    }
    if proxy:
        cfg["proxy"] = {"listen": "127.0.0.1:0"}
    return AzureEmulator(NMI_EMULATOR, cfg, http_stack=http_stack or EMULATOR_STACK).start()


def imds_token_calls(emu, since_seq=0):
    return [e for e in emu.log("imds")
            if e["seq"] > since_seq and e["path"].lower().rstrip("/") == TOKEN_PATH]


def last_seq(emu):
    entries = emu.log()
    return max((e["seq"] for e in entries), default=0)


# ---------------------------------------------------------------------------------------------
# nmi
# ---------------------------------------------------------------------------------------------

class NmiError(RuntimeError):
    pass


class Nmi:
    """One nmi process with its own directory, identity file and ports."""

    def __init__(self, emulator, objects, file_index, extra_args=(), env=None, netns=None,
                 imds_endpoint=None, metadata_endpoint=None, listen_address=None,
                 verbosity=4, node=NODE, allow_emulator_aad=True):
        self.emulator = emulator
        self.file_index = file_index
        self.extra_args = list(extra_args)
        self.env = env
        self.netns = netns  # NetNs or None
        self.dir = tempfile.mkdtemp(prefix="nmi-it-")
        self.identity_file = os.path.join(self.dir, "identities.json")
        self.log_path = os.path.join(self.dir, "nmi.log")
        self.imds_endpoint = imds_endpoint or (emulator.imds_addr if emulator else "127.0.0.1:9")
        self.metadata_endpoint = metadata_endpoint or self.imds_endpoint
        self.listen_address = listen_address
        self.verbosity = verbosity
        self.node = node
        # nmi sends service-principal credentials only to the Azure clouds' Azure AD and the hosts
        # of --aad-allowed-hosts: the emulator's Azure AD (https://127.0.0.1:<port>) is listed
        # unless a test wants to see the refusal.
        self.allow_emulator_aad = allow_emulator_aad
        self.proc = None
        self._log = None
        self.write_objects(objects)

    # -- identity file -------------------------------------------------------------------------
    def write_objects(self, objects):
        """Rewrite the identity file atomically (temp file + rename). Returns the time of the
        rename (time.monotonic())."""
        self.objects = list(objects)
        tmp = self.identity_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": self.objects}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        t = time.monotonic()
        os.rename(tmp, self.identity_file)
        return t

    def load_objects(self, objects, timeout=5.0):
        """write_objects(), then waits until nmi has logged loading the new file."""
        offset = self.log_size()
        t = self.write_objects(objects)
        assert self.wait_for_log(r"identity file loaded", offset, timeout), self.log_since(offset)
        return t

    # -- process ---------------------------------------------------------------------------------
    def argv(self):
        mhost, mport = self.metadata_endpoint.rsplit(":", 1)
        args = [NMI_BINARY,
                "--identity-file", self.identity_file,
                "--node", self.node,
                "--nmi-port", str(self.port),
                "--http-probe-port", str(self.probe_port),
                "--prometheus-port", str(self.metrics_port),
                "--imds-token-endpoint", self.imds_endpoint,
                "--metadata-ip", mhost, "--metadata-port", mport,
                "-v=%d" % self.verbosity]
        if self.netns is None:
            # This process runs in the root network namespace: never touch its firewall.
            args.append("--disable-interception")
        if self.emulator is not None:
            args += ["--aad-ca-file", self.emulator.aad_ca]
            if self.allow_emulator_aad and self.emulator.aad_addr:
                args += ["--aad-allowed-hosts", self.emulator.aad_addr]
        if self.listen_address:
            args += ["--nmi-listen-address", self.listen_address]
        return args + self.extra_args

    def spawn(self):
        """Starts the process on the ports already chosen and returns at once (no proxy
        variables, FORCENAMESPACED or NODE_NAME from this environment)."""
        argv = self.argv()
        if self.netns is not None:
            argv = self.netns.prefix() + argv
        env = dict(os.environ)
        for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY",
                  "no_proxy", "FORCENAMESPACED", "NODE_NAME"):
            env.pop(k, None)
        env.update(self.env or {})
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        return self

    def start(self, ready_timeout=10.0):
        for attempt in range(3):
            self.port = free_port(self.file_index)
            self.probe_port = free_port(self.file_index)
            self.metrics_port = free_port(self.file_index)
            self.spawn()
            try:
                self._wait_ready(ready_timeout)
                return self
            except NmiError:
                if self.proc.poll() is not None and "error creating" in self.log() and attempt < 2:
                    self._log.close()
                    continue  # a port was taken meanwhile: pick others
                self.stop(check=False)
                raise
        raise NmiError("could not start nmi")

    def _wait_ready(self, timeout):
        def ready():
            if self.proc.poll() is not None:
                raise NmiError("nmi exited with %s before it was ready:\n%s"
                               % (self.proc.returncode, self.log()))
            try:
                return self.probe("/readyz", timeout=1.0).status == 200
            except (OSError, ConnectionClosed):
                return False
        try:
            wait_until(ready, timeout=timeout, message="/readyz")
        except AssertionError:
            raise NmiError("nmi not ready after %.0f s:\n%s" % (timeout, self.log())) from None

    def stop(self, check=True, timeout=10.0):
        """SIGTERM the process this object started, SIGKILL after `timeout`; with check, raise
        unless it exited 0 on its own."""
        proc = self.proc
        if proc is None:
            return None
        killed = False
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed = True
        rc = proc.returncode
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None
        if check and (killed or rc != 0):
            raise NmiError("nmi %s (exit %s); log:\n%s"
                           % ("had to be killed" if killed else "did not exit 0", rc,
                              self.log()[-5000:]))
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *exc):
        self.stop(check=exc_type is None)
        return False

    # -- observation ---------------------------------------------------------------------------
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, pattern, offset=0, timeout=5.0):
        rx = re.compile(pattern)
        try:
            return wait_until(lambda: (lambda text: text if rx.search(text) else None)(
                self.log_since(offset)), timeout=timeout, message="log line " + pattern)
        except AssertionError:
            return None

    def probe(self, path, timeout=5.0):
        return request(self.probe_port, path, host="127.0.0.1", timeout=timeout,
                       netns=self.netns.path if self.netns else None)

    def metrics(self):
        r = request(self.metrics_port, "/metrics", host="127.0.0.1",
                    netns=self.netns.path if self.netns else None)
        assert r.status == 200, r
        return r.text()

    def metric_value(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        found = False
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(4))
                found = True
        return total if found else None

    # -- requests ------------------------------------------------------------------------------
    @property
    def host(self):
        if self.listen_address and self.listen_address != "0.0.0.0":
            return self.listen_address
        return "127.0.0.1"

    def get(self, target, headers=None, source=None, method="GET", body=b"", timeout=10.0,
            host_header="169.254.169.254"):
        t0 = time.monotonic()
        r = send_raw(self.port, build_request(target, headers, method, body, host=host_header),
                     source=source, host=self.host, timeout=timeout,
                     netns=self.netns.path if self.netns else None,
                     head_only=(method == "HEAD"))
        r.elapsed = time.monotonic() - t0
        return r

    def raw(self, data, source=None, timeout=10.0, half_close=False):
        return send_raw(self.port, data, source=source, host=self.host, timeout=timeout,
                        netns=self.netns.path if self.netns else None, half_close=half_close)

    def token(self, source, resource="https://vault.azure.net", headers=None, timeout=10.0,
              **params):
        h = dict(META)
        h.update(headers or {})
        return self.get(token_target(resource, **params), h, source=source, timeout=timeout)

    def conn(self, source=None, timeout=10.0):
        return Conn(self.port, source, self.host, timeout,
                    self.netns.path if self.netns else None)


# ---------------------------------------------------------------------------------------------
# Assertions shared by the test files
# ---------------------------------------------------------------------------------------------

def assert_json_error(resp, status, description=None, error=None):
    assert resp.status == status, resp
    assert resp.header("Content-Type") == "application/json; charset=utf-8", resp
    body = resp.json()
    assert set(body) == {"error", "error_description"}, body
    if description is not None:
        assert body["error_description"] == description, body
    if error is not None:
        assert body["error"] == error, body
    assert resp.body.endswith(b"\n"), resp
    return body


def assert_token(resp, resource, client_id=None, token_type="Bearer"):
    """200 with the eight string fields, resource echoed; returns (body, jwt claims)."""
    assert resp.status == 200, resp
    assert resp.header("Content-Type") == "application/json; charset=utf-8", resp
    assert resp.header("Content-Length") == str(len(resp.body)), resp
    body = resp.json()
    assert list(body) == TOKEN_FIELDS, body
    for k in TOKEN_FIELDS:
        assert isinstance(body[k], str), (k, body)
    assert body["resource"] == resource, body
    assert body["token_type"] == token_type, body
    now = int(time.time())
    expires_on = int(body["expires_on"])
    assert expires_on > now, body
    assert abs(int(body["expires_in"]) - (expires_on - now)) <= 2, body
    int(body["ext_expires_in"])
    assert int(body["not_before"]) <= now, body
    _, claims = decode_jwt(body["access_token"])
    if client_id is not None:
        assert body["client_id"] == client_id, body
        assert claims["appid"] == client_id, claims
    return body, claims
