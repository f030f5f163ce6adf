"""The path to the real IMDS under attack (issue 10, seams 1, 2, 6, 7 and 8): an upstream that
behaves like a Windows HTTP stack (interim 100 Continue on its own, HEAD answered with a length
and no body, keep-alive always), pods that try to desynchronise nmi's upstream connections,
starve its budget, reach folded spellings of identity endpoints, flood its metrics or forge its
audit line, and connection floods. Pods: 127.0.9.x.

The upstream here is a raw socket server written for these tests (not tools/azure-emulator) so
that every byte it sends is under the test's control; the hostile suites also run against the
emulator's Windows mode (docs/testing.md)."""
import concurrent.futures
import json
import re
import socket
import threading
import time
import uuid

import pytest

from nmi_pytest import harness
from nmi_pytest.waits import wait_until
from nmi_pytest.harness import META, Conn, assigned, azure_identity, build_request, pod

FILE_INDEX = 9


def client_id_of(name):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nmi-it-upstream/" + name))


class WindowsLikeUpstream:
    """IMDS as a Windows HTTP stack fronts it, reduced to what these tests need.

    * `Expect: 100-continue` on any request: `100 Continue` is sent at once, before anything
      else, whatever the method or body.
    * HEAD: the head GET would have, Content-Length included, and no body.
    * Keep-alive always; every answer framed by Content-Length.
    * The token endpoint answers a token naming the client_id asked for; every other answer's
      body names the request's `X-Probe` header, so a client that reads someone else's answer
      can tell.
    * `/metadata/instance?slow=<s>` answers after s seconds; `cut=1` sends half a head and
      closes the connection.
    Every request is logged with the number of the connection that carried it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.requests = []  # dicts: conn (connection number), method, target, headers, body
        self.counter = 0
        self.late_sent = 0  # stray answers written after a late=1 answer
        self.connections = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.sock.close()

    def log(self):
        with self.lock:
            return list(self.requests)

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(c, number), daemon=True).start()

    def _serve(self, c, number):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                if "100-continue" in headers.get("expect", "").lower():
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                n = int(headers.get("content-length", "0"))
                while len(buf) < n:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.counter += 1
                    seq = self.counter
                    self.requests.append({"conn": number, "method": method, "target": target,
                                          "headers": headers, "body": body})
                if "cut=1" in target:
                    # Half a head, then the end of the connection: a crashed upstream.
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Len")
                    return
                c.sendall(self._answer(method, target, headers, seq))
                if "late=1" in target:
                    # An answer nobody asked for, after a pause: a broken or hostile upstream.
                    # (The pause is this upstream's behaviour: the answer must come while the
                    # connection is idle.)
                    time.sleep(0.2)
                    late = json.dumps({"probe": "LATE", "seq": -1}).encode()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(late)
                              + late)
                    with self.lock:
                        self.late_sent += 1
        except OSError:
            return
        finally:
            c.close()

    @staticmethod
    def _answer(method, target, headers, seq):
        path, _, query = target.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        status = "200 OK"
        if path == harness.TOKEN_PATH:
            cid = params.get("client_id", "none")
            now = int(time.time())
            body = json.dumps({"access_token": "tok-for-%s-%d" % (cid, seq), "client_id": cid,
                               "expires_in": "3600", "expires_on": str(now + 3600),
                               "ext_expires_in": "3600", "not_before": str(now),
                               "resource": "r", "token_type": "Bearer"})
        else:
            if "slow" in params:
                time.sleep(float(params["slow"]))  # a slow upstream is what `slow` asks for
            body = json.dumps({"probe": headers.get("x-probe", ""), "seq": seq, "path": path,
                               "padding": "x" * 1200})
        data = body.encode()
        head = ("HTTP/1.1 %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                "Server: IMDS/150.870.65.476\r\nContent-Length: %d\r\n\r\n" % (status, len(data)))
        return head.encode() + (b"" if method == "HEAD" else data)


@pytest.fixture(scope="module")
def upstream():
    u = WindowsLikeUpstream()
    yield u
    u.close()


@pytest.fixture(scope="module")
def world(ips):
    ids = {n: azure_identity("id-" + n, "default", client_id_of(n)) for n in ("a", "b")}
    pods = {n: pod("pod-" + n, "default", ips.next()) for n in ("a", "b", "c")}
    objects = list(ids.values()) + list(pods.values())
    objects += [assigned(pods["a"], ids["a"]), assigned(pods["b"], ids["b"])]
    return {"ids": ids, "pods": pods, "objects": objects,
            "ip": {n: p["status"]["podIP"] for n, p in pods.items()}}


@pytest.fixture(scope="module")
def nmi(upstream, world, make_module_nmi):
    return make_module_nmi(None, world["objects"],
                           ["--pod-wait-timeout-ms=300", "--proxy-max-concurrent=8",
                            "--proxy-max-concurrent-per-pod=3",
                            # Many cache misses on purpose: the per-pod token limits are not
                            # what these tests are about.
                            "--per-pod-miss-rate=1000", "--per-pod-miss-burst=1000",
                            "--per-pod-max-tokens=5000"],
                           imds_endpoint=upstream.addr)


def probe_request(target, tag, method="GET", body=b"", extra=None, close=False):
    headers = [("Metadata", "true"), ("X-Probe", tag)] + list(extra or [])
    return build_request(target, headers, method=method, body=body, close=close)


# --- seam 1 ----------------------------------------------------------------------------------

def test_interim_continue_never_desynchronises_answers(nmi, upstream, world):
    """A pod's proxied request with Expect: 100-continue gets the real answer (never the interim
    one), and no later request, proxied or token, reads an answer meant for another."""
    attacker = Conn(nmi.port, source=world["ip"]["a"])
    try:
        for i in range(25):
            tag = "attack-%d" % i
            attacker.send(probe_request("/metadata/scheduledevents?api-version=2020-07-01", tag,
                                        method="POST", body=b'{"StartRequests":[]}',
                                        extra=[("Expect", "100-continue")]))
            r = attacker.read()
            assert r.status == 200, r
            assert r.json()["probe"] == tag, r
            # A victim's cache miss (new resource each time) goes to the same upstream.
            victim = nmi.get(harness.token_target("https://res-%d.example" % i), META,
                             source=world["ip"]["b"])
            assert victim.status == 200, victim
            assert victim.json()["access_token"].startswith(
                "tok-for-%s-" % client_id_of("b")), victim
            tag2 = "after-%d" % i
            attacker.send(probe_request("/metadata/instance?api-version=2021-02-01", tag2))
            r2 = attacker.read()
            assert r2.status == 200, r2
            assert "access_token" not in r2.text()
            assert r2.json()["probe"] == tag2, r2
    finally:
        attacker.close()
    # The upstream never saw the pod's Expect, and pods' requests and nmi's token requests
    # never shared a connection.
    log = upstream.log()
    assert all("expect" not in e["headers"] for e in log)
    token_conns = {e["conn"] for e in log if e["target"].startswith(harness.TOKEN_PATH)}
    proxy_conns = {e["conn"] for e in log if not e["target"].startswith(harness.TOKEN_PATH)}
    assert token_conns and proxy_conns
    assert not token_conns & proxy_conns


def test_bytes_an_idle_upstream_connection_receives_are_never_an_answer(nmi, upstream, world):
    """An upstream that sends an unasked-for answer on an idle connection: nmi does not reuse
    that connection, so no request reads the stray answer as its own."""
    for i in range(5):
        late = upstream.late_sent
        r = nmi.get("/metadata/instance?api-version=2021-02-01&late=1",
                    [("Metadata", "true"), ("X-Probe", "first-%d" % i)], source=world["ip"]["a"])
        assert r.status == 200 and r.json()["probe"] == "first-%d" % i, r
        wait_until(lambda: upstream.late_sent > late, 5, message="the stray answer to be sent")
        for k in range(3):
            tag = "next-%d-%d" % (i, k)
            r = nmi.get("/metadata/versions", [("Metadata", "true"), ("X-Probe", tag)],
                        source=world["ip"]["b"])
            assert r.status == 200 and r.json()["probe"] == tag, r


def test_an_answer_cut_short_by_the_upstream_is_a_502_at_once(nmi, world):
    """An upstream that closes the connection in the middle of its head: the reader's leftover
    bytes cannot become an answer, so nmi answers 502 (the upstream failed) instead of reading
    the closed connection again until the proxy timeout (504)."""
    for i in range(3):
        r = nmi.get("/metadata/instance?api-version=2021-02-01&cut=1",
                    [("Metadata", "true"), ("X-Probe", "cut-%d" % i)], source=world["ip"]["c"])
        assert r.status == 502, r
    r = nmi.get("/metadata/versions", [("Metadata", "true"), ("X-Probe", "after-cut")],
                source=world["ip"]["c"])
    assert r.status == 200 and r.json()["probe"] == "after-cut", r


# --- seam 2 ----------------------------------------------------------------------------------

def test_head_is_answered_without_waiting_for_a_body(nmi, world):
    c = Conn(nmi.port, source=world["ip"]["c"])
    try:
        for i in range(3):
            t0 = time.monotonic()
            c.send(probe_request("/metadata/instance?api-version=2021-02-01", "head-%d" % i,
                                 method="HEAD"))
            r = c.read(head_only=True)
            assert time.monotonic() - t0 < 2.0
            assert r.status == 200, r
            assert int(r.header("Content-Length")) > 1200  # the GET's length, no body
            assert r.body == b""
        # The connection is still in step: a GET on it gets its own answer.
        c.send(probe_request("/metadata/versions", "get-after-head"))
        r = c.read()
        assert r.json()["probe"] == "get-after-head"
    finally:
        c.close()


def test_a_looping_pod_cannot_starve_token_fetches_or_other_pods(nmi, world):
    """70 slow proxied requests at once from one pod: it gets its share (3 here), the rest 429
    at once; another pod's proxied request and a cache-miss token fetch are served at once."""
    results = []
    lock = threading.Lock()

    def hog(i):
        try:
            r = nmi.get("/metadata/instance?api-version=2021-02-01&slow=3", META,
                        source=world["ip"]["c"], timeout=15)
            with lock:
                results.append(r.status)
        except Exception as e:  # noqa: BLE001 - recorded
            with lock:
                results.append(repr(e))

    threads = [threading.Thread(target=hog, args=(i,)) for i in range(70)]
    for t in threads:
        t.start()
    # The pod is at its limit: all but its share have been answered (the share is in flight).
    wait_until(lambda: len(results) >= 67, 10, message="67 of the 70 slow requests answered")
    t0 = time.monotonic()
    victim = nmi.get(harness.token_target("https://starve.example"), META,
                     source=world["ip"]["b"])
    token_time = time.monotonic() - t0
    other = nmi.get("/metadata/versions", META, source=world["ip"]["a"])
    other_time = time.monotonic() - t0
    for t in threads:
        t.join()
    assert victim.status == 200, victim
    assert token_time < 1.5, token_time
    assert other.status == 200, other
    assert other_time < 1.5, other_time
    assert results.count(200) == 3, results
    assert results.count(429) == 67, results
    refused = nmi.get("/metadata/instance", META, source=world["ip"]["c"])
    assert refused.status == 200  # the pod's share is free again


def test_the_answer_to_a_pods_limit_is_imds_shaped(nmi, upstream, world):
    barrier = []

    def slow():
        barrier.append(nmi.get("/metadata/instance?slow=2", META, source=world["ip"]["a"]))

    def slow_at_upstream():
        return len([e for e in upstream.log() if e["target"].endswith("?slow=2")])

    before = slow_at_upstream()
    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: slow_at_upstream() >= before + 3, 5,
               message="the pod's 3 slow requests at the upstream")
    r = nmi.get("/metadata/instance", META, source=world["ip"]["a"])
    for t in threads:
        t.join()
    assert r.status == 429, r
    assert r.header("Retry-After") == "1"
    assert r.json()["error"] == "too_many_requests"


# --- seam 7 ----------------------------------------------------------------------------------

FOLDED = [
    "/metadata/identity./issuecredential",
    "/metadata./identity/getplatformmetadata",
    "/metadata/identity../issuecredential",
    "/metadata/Identity./IssueCredential",
    "/metadata/instance./compute",
    "/metadata/instance/compute./name",
    "/metadata/versions.",
    "/metadata/instancex",
    "/metadata/unknown",
    "/latest/meta-data/iam",
    "/",
]


@pytest.mark.parametrize("target", FOLDED)
def test_spellings_outside_the_allowlist_are_answered_locally(nmi, upstream, world, target):
    before = len(upstream.log())
    for method in ("GET", "POST"):
        r = nmi.get(target + "?api-version=2021-02-01", META, source=world["ip"]["a"],
                    method=method, body=b"{}" if method == "POST" else b"")
        assert r.status == 404, r
        assert r.json()["error"] == "not_found"
    assert len(upstream.log()) == before


def test_methods_outside_the_allowlist_are_answered_locally(nmi, upstream, world):
    before = len(upstream.log())
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = nmi.get("/metadata/instance?api-version=2021-02-01", META, source=world["ip"]["a"],
                    method=method, body=b"{}")
        assert r.status == 405, r
        assert r.header("Allow") == "GET, HEAD"
    assert len(upstream.log()) == before
    r = nmi.get("/metadata/scheduledevents?api-version=2020-07-01", META,
                source=world["ip"]["a"], method="POST", body=b'{"StartRequests":[]}')
    assert r.status == 200, r


# --- seam 6 ----------------------------------------------------------------------------------

def series_count(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_metric_labels_stay_bounded_under_random_values(nmi, world):
    rng = uuid.uuid4
    nmi.get(harness.token_target("https://vault.azure.net"), META, source=world["ip"]["a"])
    nmi.get("/host/token/?resource=x", {"podns": "default", "podname": "pod-a"})
    nmi.get("/whatever", META, source=world["ip"]["a"])
    baseline = nmi.metrics()
    base_series, base_bytes = series_count(baseline), len(baseline)
    def hammer(_):
        junk = rng().hex
        # (An unknown pod waits --pod-wait-timeout-ms for its pod: hence many at once.)
        nmi.get("/host/token/?resource=https://%s.example" % junk,
                {"podns": "ns-" + junk, "podname": "p-" + junk})
        nmi.get(harness.token_target("https://%s.example" % junk), META, source=world["ip"]["a"])
        nmi.get("/%s/%s" % (junk, junk[:5]), META, source=world["ip"]["a"])
        nmi.get(harness.token_target("https://x", client_id=junk), META,
                source=world["ip"]["c"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(hammer, range(300)))
    after = nmi.metrics()
    assert "ns-" not in after
    assert ".example" not in after
    # New label values may appear once (a new status code, "other"), never per request.
    assert series_count(after) - base_series < 60, (base_series, series_count(after))
    assert len(after) - base_bytes < 12000, (base_bytes, len(after))


def test_a_crafted_resource_cannot_forge_the_audit_line(nmi, world):
    offset = nmi.log_size()
    resource = 'https://r.example" pod="victim/web" identity="victim/admin'
    from urllib.parse import quote
    r = nmi.get("%s?api-version=2018-02-01&resource=%s" % (harness.TOKEN_PATH,
                                                           quote(resource, safe="")),
                META, source=world["ip"]["a"])
    assert r.status == 200, r
    text = nmi.wait_for_log(r"token delivered.*r\.example", offset)
    assert text, nmi.log_since(offset)
    line = [ln for ln in text.splitlines() if "token delivered" in ln and "r.example" in ln][0]
    fields = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line.split("token delivered", 1)[1])
    keys = [k for k, _ in fields]
    assert keys == ["endpoint", "pod", "pod_uid", "identity", "client_id", "resource",
                    "expires_on"], line
    values = dict(fields)
    assert values["pod"] == '"default/pod-a"'
    assert values["identity"] == '"default/id-a"'


# --- seam 8 ----------------------------------------------------------------------------------

def test_connections_over_the_per_peer_limit_get_an_http_answer(upstream, world,
                                                                make_nmi):
    n = make_nmi(None, world["objects"], ["--max-connections-per-peer=20",
                                          "--max-connections=1000"],
                 imds_endpoint=upstream.addr)
    held = [Conn(n.port, source=world["ip"]["a"]) for _ in range(20)]
    try:
        answers = []
        for i in range(40):
            r = harness.send_raw(n.port, probe_request("/metadata/versions", "over-%d" % i),
                                 source=world["ip"]["a"])
            answers.append(r)
        assert all(r.status == 429 for r in answers), [r.status for r in answers]
        assert all(r.header("Retry-After") == "1" for r in answers)
        assert answers[0].json()["error"] == "too_many_requests"
        # Another pod is not affected.
        ok = harness.send_raw(n.port, probe_request("/metadata/versions", "other"),
                              source=world["ip"]["b"])
        assert ok.status == 200, ok
    finally:
        for c in held:
            c.close()
    # Once the held connections are gone, the pod is served again.
    wait_until(lambda: harness.send_raw(n.port, probe_request("/metadata/versions", "again"),
                                        source=world["ip"]["a"]).status == 200, 5, interval=0.05,
               message="the pod to be served again")


def test_every_one_of_200_concurrent_connections_gets_a_status(upstream, world, make_nmi):
    n = make_nmi(None, world["objects"], ["--max-connections-per-peer=128"],
                 imds_endpoint=upstream.addr)
    statuses = []
    lock = threading.Lock()
    start = threading.Event()

    def one(i):
        start.wait()
        try:
            r = harness.send_raw(n.port, probe_request("/metadata/versions", "c-%d" % i),
                                 source=world["ip"]["c"], timeout=15)
            status = r.status
        except Exception as e:  # noqa: BLE001 - recorded
            status = repr(e)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join()
    assert all(s in (200, 429) for s in statuses), statuses
