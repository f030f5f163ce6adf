"""Drive tools/azure-emulator (fake Azure IMDS + Azure AD) from Python tests. Standard library only.

    with AzureEmulator(binary, {"imds": {...}, "aad": {...}}) as emu:
        urllib.request.urlopen(f"http://{emu.imds_addr}/metadata/identity/oauth2/token?...")
        emu.set_fault(target="imds", status=500, count=1)
        entries = emu.log()

HTTP stack of the IMDS listener: http_stack="windows" (or "imds": {"http_stack": "windows"} in the
config) makes it behave like http.sys: 100 Continue on Expect, Windows path folding, keep-alive after
every answer, HEAD with a Content-Length and no body (tools/azure-emulator/README.md).

Network namespaces: with netns="NAME" the emulator runs under `ip netns exec NAME`, so its IMDS,
AAD and proxy listeners live in that namespace (e.g. on 169.254.169.254:80) and are reachable only
from there. The control API is still reachable from the host: besides its TCP listener (inside the
namespace), the emulator serves it on a unix socket in this helper's work directory, and unix
sockets are file-system objects that do not depend on the network namespace. Every control call
(log, faults, identities, JWKS) goes through that socket.
"""
import atexit
import base64
import copy
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import sys
import urllib.parse

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nmi_pytest.waits import wait_until  # noqa: E402

__all__ = ["AzureEmulator", "EmulatorError", "decode_jwt", "verify_jwt_with_jwks"]

# DER prefix of DigestInfo{sha256, digest} (RFC 8017 section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class EmulatorError(RuntimeError):
    pass


def _b64url_decode(s):
    if isinstance(s, str):
        s = s.encode("ascii")
    s = s.replace(b"+", b"-").replace(b"/", b"_").rstrip(b"=")
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def decode_jwt(token):
    """Return (header, claims) of a compact JWS without verifying anything."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWS has three parts, got %d" % len(parts))
    return json.loads(_b64url_decode(parts[0])), json.loads(_b64url_decode(parts[1]))


def verify_jwt_with_jwks(token, jwks, audience=None, check_time=True, leeway=0):
    """Verify an RS256 JWS against a JWKS document (RSASSA-PKCS1-v1_5 with SHA-256, computed
    with pow()). Optionally check aud, and exp/nbf against the current time. Returns
    (header, claims); raises ValueError on any failure."""
    header, claims = decode_jwt(token)
    if header.get("alg") != "RS256":
        raise ValueError("alg %r is not RS256" % header.get("alg"))
    keys = [k for k in jwks.get("keys", []) if k.get("kty") == "RSA"]
    if header.get("kid") is not None:
        keys = [k for k in keys if k.get("kid") == header["kid"]]
    if not keys:
        raise ValueError("no RSA key with kid %r in the JWKS" % header.get("kid"))
    signing_input, _, sig_b64 = token.rpartition(".")
    sig = _b64url_decode(sig_b64)
    digest = hashlib.sha256(signing_input.encode("ascii")).digest()
    for key in keys:
        n = int.from_bytes(_b64url_decode(key["n"]), "big")
        e = int.from_bytes(_b64url_decode(key["e"]), "big")
        k = (n.bit_length() + 7) // 8
        if len(sig) != k:
            continue
        em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
        t = _SHA256_DIGEST_INFO + digest
        expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        if hmac.compare_digest(em, expected):
            break
    else:
        raise ValueError("signature does not verify")
    if audience is not None and claims.get("aud") != audience:
        raise ValueError("aud %r, expected %r" % (claims.get("aud"), audience))
    if check_time:
        now = time.time()
        if "exp" in claims and claims["exp"] + leeway <= now:
            raise ValueError("token expired")
        if "nbf" in claims and claims["nbf"] - leeway > now:
            raise ValueError("token not yet valid")
    return header, claims


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class AzureEmulator:
    """One azure-emulator process with its own work directory."""

    def __init__(self, binary, config, netns=None, workdir=None, ready_timeout=10.0, http_stack=None):
        """http_stack: None keeps the config's imds.http_stack (default "go"); "go" or "windows"
        sets it (the config must have an imds section)."""
        self.binary = os.path.abspath(binary)
        if http_stack is not None:
            if "imds" not in config:
                raise EmulatorError("http_stack needs an imds section in the config")
            config = copy.deepcopy(config)
            config["imds"]["http_stack"] = http_stack
        self.config = config
        self.netns = netns
        self.ready_timeout = ready_timeout
        self._given_workdir = workdir
        self.workdir = None
        self.ready = None
        self._proc = None
        self._stderr = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self):
        if self._proc is not None:
            raise EmulatorError("already started")
        if self._given_workdir:
            os.makedirs(self._given_workdir, exist_ok=True)
            self.workdir = self._given_workdir
        else:
            self.workdir = tempfile.mkdtemp(prefix="azemu-")  # short: the socket path must stay < 108 bytes
        cfg_path = os.path.join(self.workdir, "config.json")
        ready_path = os.path.join(self.workdir, "ready.json")
        self.log_file = os.path.join(self.workdir, "requests.jsonl")
        self.stderr_file = os.path.join(self.workdir, "stderr.log")
        if os.path.exists(ready_path):
            os.remove(ready_path)
        with open(cfg_path, "w") as f:
            json.dump(self.config, f, indent=2)
        argv = [self.binary, "--config", cfg_path, "--ready-file", ready_path, "--log", self.log_file]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv  # ip execs the binary: same PID
        self._stderr = open(self.stderr_file, "wb")
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr)
        atexit.register(self.stop)
        def ready():
            if os.path.exists(ready_path):
                return True
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._cleanup_proc()
                raise EmulatorError("azure-emulator exited with %s before it was ready:\n%s" % (rc, self.stderr()))
            return False
        try:
            wait_until(ready, timeout=self.ready_timeout, message="the emulator's ready file")
        except AssertionError:
            self.stop()
            raise EmulatorError("azure-emulator not ready after %.0f s:\n%s" % (self.ready_timeout, self.stderr())) from None
        with open(ready_path) as f:
            self.ready = json.load(f)
        return self

    def stop(self):
        """SIGTERM the process this object started, wait, SIGKILL it after 5 s."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._cleanup_proc()

    def _cleanup_proc(self):
        self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass

    def remove_workdir(self):
        if self.workdir and not self._given_workdir and self._proc is None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def returncode(self):
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self):
        return None if self._proc is None else self._proc.pid

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def stderr(self):
        try:
            with open(self.stderr_file, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    # -- addresses ---------------------------------------------------------------------------
    def _ready(self, key):
        if self.ready is None:
            raise EmulatorError("not started")
        return self.ready.get(key)

    @property
    def imds_addr(self):
        return self._ready("imds")

    @property
    def imds_url(self):
        return "http://" + self.imds_addr

    @property
    def imds_http_stack(self):
        """"go" or "windows": the HTTP stack of the IMDS listener."""
        return self._ready("imds_http_stack") or "go"

    @property
    def aad_addr(self):
        return self._ready("aad")

    @property
    def aad_url(self):
        return self._ready("aad_url")

    @property
    def aad_ca(self):
        return self._ready("aad_ca")

    @property
    def proxy_addr(self):
        return self._ready("proxy")

    @property
    def control_url(self):
        return self._ready("control")

    @property
    def jwks_url(self):
        return self._ready("jwks_url")

    @property
    def tenant_id(self):
        return self._ready("tenant_id")

    # -- control API -------------------------------------------------------------------------
    def _control(self, method, path, body=None, timeout=10):
        sock = self._ready("control_socket")
        if sock:
            conn = _UnixHTTPConnection(sock, timeout)
        else:
            if self.netns:
                raise EmulatorError("no control socket: cannot reach the control API inside netns %s" % self.netns)
            u = urllib.parse.urlsplit(self.control_url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            raise EmulatorError("%s %s: %d %s" % (method, path, resp.status, raw.decode("utf-8", "replace")))
        return json.loads(raw) if raw else None

    def healthy(self):
        return self._control("GET", "/healthz") == {"ok": True}

    def jwks(self):
        return self._control("GET", "/jwks")

    def log(self, listener=None):
        q = "?listener=" + urllib.parse.quote(listener) if listener else ""
        return self._control("GET", "/log" + q)

    def clear_log(self):
        self._control("DELETE", "/log")

    def wait_for_log(self, predicate, timeout=5.0, listener=None):
        """Poll the log until some entry satisfies predicate; return the matching entries."""
        try:
            return wait_until(lambda: [e for e in self.log(listener) if predicate(e)],
                              timeout=timeout, interval=0.05, message="an emulator log entry")
        except AssertionError:
            return []

    def set_fault(self, **fault):
        """Queue a fault, e.g. set_fault(target="imds", status=500, count=3, retry_after="2"),
        set_fault(target="imds", status=410, for_seconds=5), set_fault(target="aad", hang=True)."""
        return self._control("POST", "/faults", fault)

    def faults(self):
        return self._control("GET", "/faults")

    def clear_faults(self, target=None):
        self._control("DELETE", "/faults" + ("?target=" + target if target else ""))

    def set_imds_identities(self, system_assigned=None, user_assigned=(), **extra):
        """Replace the IMDS identities (system_assigned: dict or None; user_assigned: list of
        dicts); extra keys (max_concurrent, max_rps, instance) are passed through."""
        body = {"system_assigned": system_assigned, "user_assigned": list(user_assigned)}
        body.update(extra)
        self._control("POST", "/config/imds", body)

    def set_imds_limits(self, max_concurrent=None, max_rps=None):
        body = {k: v for k, v in (("max_concurrent", max_concurrent), ("max_rps", max_rps)) if v is not None}
        self._control("POST", "/config/imds", body)

    def set_aad_apps(self, apps):
        self._control("POST", "/config/aad", {"apps": list(apps)})

    # -- JWT ---------------------------------------------------------------------------------
    decode_jwt = staticmethod(decode_jwt)

    def verify_jwt(self, token, audience=None, check_time=True, leeway=0):
        return verify_jwt_with_jwks(token, self.jwks(), audience=audience, check_time=check_time, leeway=leeway)
