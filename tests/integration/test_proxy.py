"""The default handler: the transparent IMDS proxy (reference section 1.5). Pods: 127.0.3.x."""
import http.server
import threading
import time

import pytest

from nmi_pytest import harness
from conftest import ua_client_id
from nmi_pytest.harness import META, assert_json_error, assigned, azure_identity, pod

FILE_INDEX = 3
METADATA_MISSING = "Required metadata header not specified"
BLOCKED = "Request blocked by nmi"


@pytest.fixture(scope="module")
def world(ips):
    ip = ips.next()
    a = azure_identity("id-a", "default", ua_client_id("a"))
    p = pod("web", "default", ip)
    return {"ip": ip, "objects": [a, p, assigned(p, a)]}


@pytest.fixture(scope="module")
def nmi(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world["objects"], ["--pod-wait-timeout-ms=300"])


@pytest.fixture(scope="module")
def blocking(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world["objects"],
                           ["--pod-wait-timeout-ms=300", "--block-instance-metadata"])


def direct(emulator, target, headers=None):
    """The emulator's own answer to a request (no nmi in between)."""
    host, port = emulator.imds_addr.rsplit(":", 1)
    return harness.send_raw(int(port), harness.build_request(target, headers or META,
                                                             host=emulator.imds_addr), host=host)


def new_entries(emulator, since):
    return [e for e in emulator.log() if e["seq"] > since]


# (id, target, emulator's expected status)
PROXIED = [
    ("instance", "/metadata/instance?api-version=2021-02-01", 200),
    ("instance-compute", "/metadata/instance/compute?api-version=2021-02-01", 200),
    ("instance-leaf-text", "/metadata/instance/compute/name?api-version=2021-02-01&format=text",
     200),
    ("instance-bad-api-version", "/metadata/instance?api-version=1999-01-01", 400),
    ("versions", "/metadata/versions", 200),
    ("identity-info", "/metadata/identity/info?api-version=2018-02-01", 200),
]


@pytest.mark.parametrize("target,status", [r[1:] for r in PROXIED], ids=[r[0] for r in PROXIED])
def test_proxied(nmi, emulator, world, target, status):
    want = direct(emulator, target)
    assert want.status == status, want
    since = harness.last_seq(emulator)
    r = nmi.get(target, META, source=world["ip"])
    assert r.status == want.status, r
    assert r.body == want.body
    for h in ("Content-Type", "Server"):
        assert r.header(h) == want.header(h), (h, r, want)
    assert r.header("Content-Length") == str(len(r.body))
    if status == 200 and "format=text" not in target:
        r.json()
    entries = new_entries(emulator, since)
    assert len(entries) == 1, entries
    e = entries[0]
    assert e["listener"] == "imds"
    assert e["raw_target"] == target
    assert e["headers"]["Metadata"] == ["true"]
    assert "X-Forwarded-For" not in e["headers"]
    assert e["host"] == emulator.imds_addr


def test_method_and_body_forwarded(nmi, emulator, world):
    """POST is forwarded only where IMDS documents it (acknowledging scheduled events)."""
    since = harness.last_seq(emulator)
    r = nmi.get("/metadata/scheduledevents?api-version=2020-07-01", META, source=world["ip"],
                method="POST", body=b'{"StartRequests":[]}')
    e = new_entries(emulator, since)
    assert [x["method"] for x in e] == ["POST"], e
    assert r.status == e[0]["status"], r


# Issue 10, seam 7: only the documented IMDS categories are forwarded, as plain words. Every
# other spelling, including those a Windows HTTP stack folds into an identity endpoint, is
# answered by nmi and never reaches IMDS.
LOCAL_404 = [
    "/doesnotexist", "/latest/meta-data/", "/", "/computeMetadata/v1/instance/",
    "/metadata/identity./issuecredential", "/metadata./identity/getplatformmetadata",
    "/metadata/identity../issuecredential", "/Metadata/Identity./IssueCredential",
    "/metadata/instance./compute", "/metadata/instance/compute./name", "/metadata/versions.",
    "/metadata/instancefoo", "/metadata", "/metadata/THIM/amd",
]


@pytest.mark.parametrize("target", LOCAL_404)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unlisted_paths_answered_by_nmi(nmi, emulator, world, target, method):
    since = harness.last_seq(emulator)
    r = nmi.get(target + "?api-version=2021-02-01", META, source=world["ip"], method=method,
                body=b"{}" if method == "POST" else b"")
    assert_json_error(r, 404, "Not found", "not_found")
    assert b"LEAKED" not in r.body
    assert new_entries(emulator, since) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_unlisted_methods_answered_by_nmi(nmi, emulator, world, method):
    since = harness.last_seq(emulator)
    r = nmi.get("/metadata/instance?api-version=2021-02-01", META, source=world["ip"],
                method=method, body=b"{}")
    assert_json_error(r, 405, "The method is not allowed on this path", "method_not_allowed")
    assert r.header("Allow") == "GET, HEAD"
    assert new_entries(emulator, since) == []


# Issue 10, seam 1: a pod's Expect: 100-continue never makes nmi take an interim answer for the
# final one (a Windows HTTP stack sends 100 Continue on its own), so every later answer on the
# pod's connection, and on nmi's upstream connections, is the answer to its own request.
def test_expect_continue_keeps_every_answer_in_step(nmi, emulator, world):
    c = harness.Conn(nmi.port, source=world["ip"])
    try:
        for _ in range(5):
            c.send(harness.build_request("/metadata/scheduledevents?api-version=2020-07-01",
                                         [("Metadata", "true"), ("Expect", "100-continue")],
                                         method="POST", body=b'{"StartRequests":[]}',
                                         close=False))
            first = c.read()
            assert first.status >= 200, first
            for target, key in (("/metadata/versions", "apiVersions"),
                                ("/metadata/identity/info?api-version=2018-02-01", "tenantId"),
                                ("/metadata/instance?api-version=2021-02-01", "compute")):
                c.send(harness.build_request(target, META, close=False))
                r = c.read()
                assert r.status == 200, (target, r)
                assert key in r.json(), (target, r)
            t = nmi.token(world["ip"], "https://expect.example/")
            harness.assert_token(t, "https://expect.example/", ua_client_id("a"))
    finally:
        c.close()
    for e in emulator.log("imds"):
        assert "Expect" not in e["headers"], e


# Issue 10, seam 2: HEAD is answered with the length IMDS gives and no body, without waiting.
def test_head_is_answered_at_once(nmi, world):
    c = harness.Conn(nmi.port, source=world["ip"])
    try:
        t0 = time.monotonic()
        c.send(harness.build_request("/metadata/versions", META, method="HEAD", close=False))
        r = c.read(head_only=True)
        assert time.monotonic() - t0 < 3.0
        # Whatever the emulator's stack answers (Go's 405 for a GET-only handler, or http.sys's
        # head of the GET answer), it comes back at once and without a body.
        assert r.status in (200, 405), r
        assert r.body == b""
        c.send(harness.build_request("/metadata/versions", META, close=False))
        g = c.read()
        assert g.status == 200 and "apiVersions" in g.json(), g
        if r.status == 200:
            assert int(r.header("Content-Length")) == len(g.body), (r, g)
    finally:
        c.close()


# Metadata header required on every proxied path (when the flag is on).
NO_HEADER = ["/latest/meta-data/", "/computeMetadata/v1/instance/", "/metadata/instance",
             "/metadata/versions", "/doesnotexist", "/", "/metadata/identity/info"]


@pytest.mark.parametrize("target", NO_HEADER)
@pytest.mark.parametrize("headers", [[], [("Metadata", "True")],
                                     [("Metadata", "true"), ("Metadata", "true")]],
                         ids=["absent", "True", "twice"])
def test_metadata_header_required(nmi, emulator, world, target, headers):
    since = harness.last_seq(emulator)
    r = nmi.get(target, headers, source=world["ip"])
    assert_json_error(r, 400, METADATA_MISSING, "invalid_request")
    assert new_entries(emulator, since) == []


def test_forwarded_for_refused(nmi, emulator, world):
    since = harness.last_seq(emulator)
    r = nmi.get("/metadata/instance?api-version=2021-02-01",
                [("Metadata", "true"), ("X-Forwarded-For", "1.2.3.4")], source=world["ip"])
    assert_json_error(r, 400, "Forwarded requests are not accepted")
    assert new_entries(emulator, since) == []


def test_metadata_header_not_required(make_nmi, emulator, world):
    n = make_nmi(emulator, world["objects"], ["--metadata-header-required=false"])
    since = harness.last_seq(emulator)
    r = n.get("/latest/meta-data/", [], source=world["ip"])
    assert_json_error(r, 404, "Not found", "not_found")  # not an IMDS path: nmi's own 404
    r = n.get("/metadata/versions", [], source=world["ip"])
    # IMDS itself still wants the header: its 400 is passed back.
    assert r.status == 400, r
    assert [e["raw_target"] for e in new_entries(emulator, since)] == ["/metadata/versions"]


# --block-instance-metadata: 403 for any spelling of /metadata/instance, never proxied.
BLOCKED_TARGETS = [
    "/metadata/instance", "/metadata/instance?api-version=2021-02-01",
    "/metadata/instance/", "/metadata/instance/compute?api-version=2021-02-01",
    "/Metadata/instance", "/METADATA/instance/", "/metadata/INSTANCE", "/MeTaDaTa/InStAnCe/x",
    "/metadata//instance", "/metadata/./instance", "/x/../metadata/instance",
    "/metadata%2Finstance", "/metadata\\instance", "/metadata%5Cinstance",
    "/%6Detadata/instance",
]


@pytest.mark.parametrize("target", BLOCKED_TARGETS)
@pytest.mark.parametrize("headers", [META, []], ids=["with-header", "without-header"])
def test_block_instance_metadata(blocking, emulator, world, target, headers):
    since = harness.last_seq(emulator)
    r = blocking.get(target, headers, source=world["ip"])
    assert_json_error(r, 403, BLOCKED, "forbidden")
    assert new_entries(emulator, since) == []


def test_block_instance_metadata_leaves_others(blocking, emulator, world):
    r = blocking.get("/metadata/versions", META, source=world["ip"])
    assert r.status == 200 and "apiVersions" in r.json()
    r = blocking.token(world["ip"])
    harness.assert_token(r, "https://vault.azure.net", ua_client_id("a"))


def test_instance_not_blocked_by_default(nmi, world):
    r = nmi.get("/Metadata/instance?api-version=2021-02-01", META, source=world["ip"])
    assert r.status == 200 and r.json()["compute"]["name"] == "vm-it"


IDENTITY_BLOCKED = ["/metadata/identity/issuecredential",
                    "/metadata/identity/issuecredential?api-version=2025-04-07",
                    "/Metadata/Identity/IssueCredential", "/metadata/identity/getplatformmetadata",
                    "/metadata/identity", "/metadata/identity/", "/metadata/identity/infox",
                    "/metadata/identity/info/x", "/metadata//identity/issuecredential",
                    "/metadata/identity/info."]


@pytest.mark.parametrize("target", IDENTITY_BLOCKED)
def test_identity_paths_blocked(nmi, emulator, world, target):
    since = harness.last_seq(emulator)
    r = nmi.get(target, META, source=world["ip"])
    assert_json_error(r, 403, BLOCKED, "forbidden")
    assert new_entries(emulator, since) == []


# The forwarded target is the canonical one.
CANONICAL = [
    ("double-slash", "/metadata//versions", "/metadata/versions"),
    ("dot", "/metadata/./versions", "/metadata/versions"),
    ("dotdot", "/x/../metadata/versions", "/metadata/versions"),
    ("encoded-slash", "/metadata%2Fversions", "/metadata/versions"),
    ("backslash", "/metadata\\versions", "/metadata/versions"),
    ("encoded-backslash", "/metadata%5cversions", "/metadata/versions"),
    ("encoded-letter", "/metadata/%76ersions", "/metadata/versions"),
    ("upper-metadata", "/METADATA/versions", "/metadata/versions"),
    ("trailing-slash-kept", "/Metadata/instance/compute/?api-version=2021-02-01",
     "/metadata/instance/compute/?api-version=2021-02-01"),
    ("query-verbatim", "/metadata//instance?api-version=2021-02-01&format=json&x=%41+b",
     "/metadata/instance?api-version=2021-02-01&format=json&x=%41+b"),
    ("leading-double-slash", "//metadata/versions", "/metadata/versions"),
    ("case-kept-beyond-metadata", "/Metadata/Versions", "/metadata/Versions"),
]


@pytest.mark.parametrize("target,forwarded", [r[1:] for r in CANONICAL],
                         ids=[r[0] for r in CANONICAL])
def test_forwarded_target_is_canonical(nmi, emulator, world, target, forwarded):
    since = harness.last_seq(emulator)
    r = nmi.get(target, META, source=world["ip"])
    assert r.status in (200, 404), r
    entries = new_entries(emulator, since)
    assert [e["raw_target"] for e in entries] == [forwarded], entries


def test_emulator_down_is_502(make_nmi, emulator, world):
    closed = harness.free_port(FILE_INDEX)
    n = make_nmi(emulator, world["objects"], [],
                 metadata_endpoint="127.0.0.1:%d" % closed)
    r = n.get("/metadata/instance?api-version=2021-02-01", META, source=world["ip"])
    assert_json_error(r, 502, "The instance metadata service is unavailable")
    # The token endpoint does not use the proxy target.
    harness.assert_token(n.token(world["ip"]), "https://vault.azure.net", ua_client_id("a"))


# ---------------------------------------------------------------------------------------------
# Hop-by-hop headers
# ---------------------------------------------------------------------------------------------

def test_hop_by_hop_named_in_connection_not_forwarded_emulator(nmi, emulator, world):
    """The emulator records User-Agent, Authorization and Content-Type: named in Connection they
    are hop-by-hop and must not arrive; not named they do."""
    since = harness.last_seq(emulator)
    r = nmi.get("/metadata/versions",
                [("Metadata", "true"), ("User-Agent", "pod-agent/1"),
                 ("Authorization", "Bearer pod-secret"), ("Content-Type", "text/x-pod"),
                 ("Connection", "close, User-Agent, authorization ,Content-Type")],
                source=world["ip"])
    assert r.status == 200, r
    r = nmi.get("/metadata/versions",
                [("Metadata", "true"), ("User-Agent", "pod-agent/2"),
                 ("Authorization", "Bearer pod-secret"), ("Content-Type", "text/x-pod")],
                source=world["ip"])
    assert r.status == 200, r
    first, second = new_entries(emulator, since)
    assert first["headers"].get("User-Agent") != "pod-agent/1", first
    assert "Authorization" not in first["headers"], first
    assert first["headers"].get("Content-Type") != "text/x-pod", first
    assert first["headers"]["Metadata"] == ["true"]
    assert second["headers"]["User-Agent"] == "pod-agent/2", second
    assert second["headers"]["Authorization"].startswith("Bearer"), second
    assert second["headers"]["Content-Type"] == "text/x-pod", second


class _Capture(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []
    reply_headers = []

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        type(self).seen.append({"method": self.command, "path": self.path,
                                "headers": list(self.headers.items()), "body": body})
        out = b'{"ok":true}'
        self.send_response(200)
        for k, v in type(self).reply_headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *a):
        pass

    def version_string(self):
        return "IMDS/test"


@pytest.fixture
def capture():
    handler = type("Capture", (_Capture,), {"seen": [], "reply_headers": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv, handler
    finally:
        srv.shutdown()
        srv.server_close()


HOP = [("Connection", "keep-alive, X-Drop-Me"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
       ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"), ("X-Drop-Me", "1"),
       ("Trailer", "X-Trail"), ("Proxy-Authorization", "Basic eDp5"), ("X-Keep-Me", "2"),
       ("Metadata", "true"), ("Accept", "application/json")]


def test_hop_by_hop_request_headers_not_forwarded(make_nmi, world, capture):
    srv, handler = capture
    n = make_nmi(None, world["objects"], [],
                 metadata_endpoint="127.0.0.1:%d" % srv.server_address[1])
    r = n.get("/metadata/scheduledevents?x=1", HOP, source=world["ip"], method="POST",
              body=b"hello")
    assert r.status == 200, r
    assert len(handler.seen) == 1
    got = {k.lower(): v for k, v in handler.seen[0]["headers"]}
    for name in ("keep-alive", "te", "upgrade", "proxy-connection", "x-drop-me", "trailer",
                 "proxy-authorization"):
        assert name not in got, (name, got)
    assert got.get("connection", "").lower() in ("", "keep-alive", "close"), got
    assert got["x-keep-me"] == "2"
    assert got["metadata"] == "true"
    assert got["accept"] == "application/json"
    assert got["host"] == "127.0.0.1:%d" % srv.server_address[1]
    assert "x-forwarded-for" not in got
    assert handler.seen[0]["body"] == b"hello"
    assert handler.seen[0]["method"] == "POST"
    assert handler.seen[0]["path"] == "/metadata/scheduledevents?x=1"


def test_hop_by_hop_response_headers_not_passed_back(make_nmi, world, capture):
    srv, handler = capture
    handler.reply_headers = [("Connection", "keep-alive, X-Upstream-Hop"),
                             ("Keep-Alive", "timeout=5"), ("X-Upstream-Hop", "1"),
                             ("X-Upstream-End", "2")]
    n = make_nmi(None, world["objects"], [],
                 metadata_endpoint="127.0.0.1:%d" % srv.server_address[1])
    r = n.get("/metadata/versions", META, source=world["ip"])
    assert r.status == 200 and r.body == b'{"ok":true}', r
    assert r.header("X-Upstream-End") == "2"
    assert r.header("Server") == "IMDS/test"
    assert r.header("Keep-Alive") is None, r
    assert r.header("X-Upstream-Hop") is None, r
