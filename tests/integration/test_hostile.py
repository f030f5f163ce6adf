"""Hostile input against one running nmi: raw bytes, spellings of the token paths, slow and
greedy clients. Pods: 127.0.4.x."""
import socket
import threading
import time

import pytest

from nmi_pytest import harness
from nmi_pytest.waits import wait_until
from conftest import ua_client_id, ua_resource_id
from nmi_pytest.harness import (ConnectionClosed, assert_json_error, assigned, azure_identity, pod)

FILE_INDEX = 4
RES = "https://hostile.example/"
Q = "?api-version=2018-02-01&resource=https%3A%2F%2Fhostile.example%2F"


@pytest.fixture(scope="module")
def world(ips):
    w = {"ip": {}, "objects": []}
    for key, short in (("p", "a"), ("q", "b")):
        ip = ips.next()
        w["ip"][key] = ip
        ident = azure_identity("id-" + short, "default", ua_client_id(short),
                               resource_id=ua_resource_id(short))
        p = pod("pod-" + key, "default", ip)
        w["objects"] += [ident, p, assigned(p, ident)]
    w["slow_ip"] = ips.next()      # a peer for slow clients
    w["greedy_ip"] = ips.next()    # a peer for the connection limit
    return w


@pytest.fixture(scope="module")
def nmi(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world["objects"],
                           ["--pod-wait-timeout-ms=200", "--header-read-timeout-sec=2",
                            "--idle-timeout-sec=2", "--max-connections-per-peer=4"])


def alive(nmi, world):
    """The server still answers a normal request."""
    r = nmi.token(world["ip"]["q"], "https://alive.example/")
    harness.assert_token(r, "https://alive.example/", ua_client_id("b"))


def send_junk(nmi, data, source, timeout=5.0):
    """Returns the Response, or None when the server closed the connection without one."""
    try:
        return nmi.raw(data, source=source, timeout=timeout)
    except ConnectionClosed:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return None


H = "Host: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n"
TOK = "/metadata/identity/oauth2/token" + Q

# (id, bytes, allowed statuses; "closed" = the connection may simply be closed)
RAW = [
    ("empty-line-only", b"\r\n\r\n", {400, "closed"}),
    ("method-only", b"GET\r\n\r\n", {400, "closed"}),
    ("http09", b"GET /metadata/identity/oauth2/token" + Q.encode() + b"\r\n\r\n", {400, "closed"}),
    ("http09-no-crlf", b"GET /\n", {400, "closed"}),
    ("bad-version", ("GET %s HTTP/9.9\r\n%s\r\n" % (TOK, H)).encode(), {400, 505, "closed"}),
    ("version-garbage", ("GET %s HTTP/1.x\r\n%s\r\n" % (TOK, H)).encode(), {400, "closed"}),
    ("lowercase-http", ("GET %s http/1.1\r\n%s\r\n" % (TOK, H)).encode(), {400, "closed"}),
    ("extra-token", ("GET %s HTTP/1.1 x\r\n%s\r\n" % (TOK, H)).encode(), {400, "closed"}),
    ("double-space", ("GET  %s HTTP/1.1\r\n%s\r\n" % (TOK, H)).encode(), {400, "closed"}),
    ("tab-separator", ("GET\t%s\tHTTP/1.1\r\n%s\r\n" % (TOK, H)).encode(), {400, "closed"}),
    ("space-in-target", ("GET /metadata/identity/oauth2/token ?resource=x HTTP/1.1\r\n%s\r\n"
                         % H).encode(), {400, "closed"}),
    ("bad-method-chars", ("G@T %s HTTP/1.1\r\n%s\r\n" % (TOK, H)).encode(), {400, "closed"}),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505, "closed"}),
    ("http2-preface-and-frames", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00"
     b"\x00\x00\x00\x03\x00\x00\x00\x64\x00\x04\x00\x10\x00\x00\x00\x06\x00\x00\x40\x00",
     {400, 505, "closed"}),
    ("tls-client-hello", bytes.fromhex("160301006e0100006a0303") + b"\x00" * 32 + b"\x00\x00\x02"
     b"\x13\x01\x01\x00\x00\x3f" + b"\x00" * 63, {400, "closed"}),
    ("binary-junk", bytes(range(256)) * 4, {400, "closed"}),
    ("oversized-request-line", ("GET /metadata/identity/oauth2/token?resource=%s HTTP/1.1\r\n%s\r\n"
                                % ("a" * 9000, H)).encode(), {431}),
    ("oversized-header", ("GET %s HTTP/1.1\r\n%sX-Big: %s\r\n\r\n" % (TOK, H, "b" * 9000)).encode(),
     {431}),
    ("many-headers", ("GET %s HTTP/1.1\r\n%s%s\r\n" % (
        TOK, H, "".join("X-H%d: %s\r\n" % (i, "v" * 40) for i in range(300)))).encode(), {431}),
    ("oversized-body-announced", ("POST %s HTTP/1.1\r\n%sContent-Length: 100000\r\n\r\n"
                                  % (TOK, H)).encode(), {413}),
    ("oversized-body-sent", ("POST /metadata/versions HTTP/1.1\r\n%sContent-Length: 70000\r\n\r\n"
                             % H).encode() + b"x" * 70000, {413}),
    ("oversized-chunked-body", ("POST /metadata/versions HTTP/1.1\r\n%sTransfer-Encoding: chunked"
                                "\r\n\r\n" % H).encode()
     + b"".join(b"4000\r\n" + b"y" * 0x4000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n", {413}),
    ("bad-content-length", ("POST %s HTTP/1.1\r\n%sContent-Length: abc\r\n\r\n"
                            % (TOK, H)).encode(), {400, "closed"}),
    ("negative-content-length", ("POST %s HTTP/1.1\r\n%sContent-Length: -1\r\n\r\n"
                                 % (TOK, H)).encode(), {400, "closed"}),
    ("two-content-lengths", ("POST %s HTTP/1.1\r\n%sContent-Length: 1\r\nContent-Length: 2\r\n"
                             "\r\nxy" % (TOK, H)).encode(), {400, "closed"}),
    ("content-length-and-chunked", ("POST /metadata/versions HTTP/1.1\r\n%sContent-Length: 4\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % H).encode(),
     {400, "closed"}),
    ("bad-chunk-size", ("POST /metadata/versions HTTP/1.1\r\n%sTransfer-Encoding: chunked\r\n\r\n"
                        "zz\r\nabc\r\n0\r\n\r\n" % H).encode(), {400, "closed"}),
    ("unknown-transfer-encoding", ("POST /metadata/versions HTTP/1.1\r\n%sTransfer-Encoding: "
                                   "gzip\r\n\r\nabc" % H).encode(), {400, 501, "closed"}),
    ("bad-percent-path", ("GET /metadata/identity/oauth2/token%%zz%s HTTP/1.1\r\n%s\r\n"
                          % (Q, H)).encode(), {400}),
    ("truncated-percent-path", ("GET /metadata/versions%%4 HTTP/1.1\r\n%s\r\n" % H).encode(),
     {400}),
    ("lone-percent-path", ("GET /metadata/versions%% HTTP/1.1\r\n%s\r\n" % H).encode(), {400}),
    ("bad-percent-query", ("GET /metadata/identity/oauth2/token?resource=%%zz HTTP/1.1\r\n%s\r\n"
                           % H).encode(), {400}),
    ("nul-in-target", ("GET /metadata/identity/oauth2/token\x00%s HTTP/1.1\r\n%s\r\n"
                       % (Q, H)).encode(), {400, "closed"}),
    ("encoded-nul-in-path", ("GET /metadata/identity/oauth2/token%%00%s HTTP/1.1\r\n%s\r\n"
                             % (Q, H)).encode(), {400}),
    ("encoded-nul-in-query", ("GET /metadata/identity/oauth2/token?resource=a%%00b HTTP/1.1\r\n"
                              "%s\r\n" % H).encode(), {400}),
    ("nul-in-header-value", ("GET %s HTTP/1.1\r\n%sX-A: a\x00b\r\n\r\n" % (TOK, H)).encode(),
     {400, "closed"}),
    ("nul-in-metadata-value", ("GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\x00\r\n"
                               "Connection: close\r\n\r\n" % TOK).encode(), {400, "closed"}),
    ("cr-in-header-value", ("GET %s HTTP/1.1\r\n%sX-A: a\rb\r\n\r\n" % (TOK, H)).encode(),
     {400, "closed"}),
    ("lf-only-injection", ("GET %s HTTP/1.1\r\nHost: x\r\nX-A: a\nMetadata: true\r\n"
                           "Connection: close\r\n\r\n" % TOK).encode(), {400, "closed"}),
    ("obs-fold", ("GET %s HTTP/1.1\r\n%sX-A: a\r\n b\r\n\r\n" % (TOK, H)).encode(),
     {400, "closed"}),
    ("obs-fold-metadata", ("GET %s HTTP/1.1\r\nHost: x\r\nMetadata:\r\n true\r\n"
                           "Connection: close\r\n\r\n" % TOK).encode(), {400, "closed"}),
    ("space-before-colon", ("GET %s HTTP/1.1\r\nHost: x\r\nMetadata : true\r\nConnection: close"
                            "\r\n\r\n" % TOK).encode(), {400, "closed"}),
    ("header-without-colon", ("GET %s HTTP/1.1\r\n%sMetadata true\r\n\r\n" % (TOK, H)).encode(),
     {400, "closed"}),
    ("empty-header-name", ("GET %s HTTP/1.1\r\n%s: x\r\n\r\n" % (TOK, H)).encode(),
     {400, "closed"}),
    ("non-ascii-header-name", ("GET %s HTTP/1.1\r\n%s" % (TOK, H)).encode() + b"M\xe9tadata: true"
     b"\r\n\r\n", {400, "closed"}),
    ("duplicate-metadata", ("GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nMetadata: true\r\n"
                            "Connection: close\r\n\r\n" % TOK).encode(), {400}),
    ("duplicate-metadata-mixed-case", ("GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n"
                                       "METADATA: true\r\nConnection: close\r\n\r\n"
                                       % TOK).encode(), {400}),
    ("duplicate-metadata-proxy", ("GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true"
                                  "\r\nMetadata: true\r\nConnection: close\r\n\r\n").encode(),
     {400}),
    ("duplicate-host", ("GET %s HTTP/1.1\r\nHost: a\r\nHost: b\r\nMetadata: true\r\n"
                        "Connection: close\r\n\r\n" % TOK).encode(), {400}),
    ("http11-without-host", ("GET %s HTTP/1.1\r\nMetadata: true\r\nConnection: close\r\n\r\n"
                             % TOK).encode(), {400}),
    ("absolute-form", ("GET http://169.254.169.254%s HTTP/1.1\r\n%s\r\n" % (TOK, H)).encode(),
     {400}),
    ("absolute-form-proxy-path", ("GET http://169.254.169.254/metadata/versions HTTP/1.1\r\n%s\r\n"
                                  % H).encode(), {400}),
    ("authority-form", ("CONNECT 169.254.169.254:80 HTTP/1.1\r\n%s\r\n" % H).encode(),
     {400, 405, "closed"}),
    ("asterisk-form", ("OPTIONS * HTTP/1.1\r\n%s\r\n" % H).encode(), {400}),
    ("non-ascii-target", ("GET /m\u00e9tadata/versions HTTP/1.1\r\n%s\r\n" % H).encode("utf-8"),
     {400, "closed"}),
    ("fragment", ("GET /metadata/versions#x HTTP/1.1\r\n%s\r\n" % H).encode(), {400}),
    ("semicolon-query", ("GET /metadata/instance?a=1;b=2 HTTP/1.1\r\n%s\r\n" % H).encode(), {400}),
    ("too-many-params", ("GET /metadata/identity/oauth2/token?resource=x&%s HTTP/1.1\r\n%s\r\n"
                         % ("&".join("p%d=1" % i for i in range(70)), H)).encode(), {400}),
    ("target-over-8192-in-budget", ("GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % ("a" * 8190)).encode(),
     {400, 431}),
]


@pytest.mark.parametrize("data,allowed", [r[1:] for r in RAW], ids=[r[0] for r in RAW])
def test_raw_junk(nmi, emulator, world, data, allowed):
    since = harness.last_seq(emulator)
    r = send_junk(nmi, data, world["ip"]["p"])
    if r is None:
        assert "closed" in allowed, "connection closed without an answer"
    else:
        assert r.status in allowed, r
        assert 400 <= r.status < 600
        assert r.header("Content-Type") == "application/json; charset=utf-8", r
    # Nothing reached IMDS (the emulator would log any request it parsed).
    assert [e for e in emulator.log() if e["seq"] > since] == []
    alive(nmi, world)


def test_pipelined_requests_answered_in_order(nmi, world):
    c = nmi.conn(source=world["ip"]["p"])
    try:
        one = harness.build_request(harness.token_target(RES), harness.META, close=False)
        two = harness.build_request("/metadata/identity/oauth2/token", harness.META, close=False)
        three = harness.build_request(harness.token_target(RES), [], close=True)
        c.send(one + two + three)
        r1, r2, r3 = c.read(), c.read(), c.read()
        harness.assert_token(r1, RES, ua_client_id("a"))
        assert_json_error(r2, 400, "Required query variable 'resource' is missing")
        assert_json_error(r3, 400, "Required metadata header not specified")
        assert c.closed_by_peer(3)
    finally:
        c.close()


def test_smuggled_request_not_proxied(nmi, emulator, world):
    """CL.TE: a body that would be a second request if framed the other way."""
    since = harness.last_seq(emulator)
    inner = ("GET /metadata/identity/oauth2/token%s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n"
             "\r\n" % Q)
    data = ("POST /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n"
            "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s"
            % (5 + len(inner), inner)).encode()
    c = nmi.conn(source=world["ip"]["p"])
    try:
        c.send(data)
        try:
            r = c.read()
            assert 400 <= r.status < 500, r
        except ConnectionClosed:
            pass
    finally:
        c.close()
    for e in emulator.log():
        if e["seq"] > since:
            assert e["path"] != "/metadata/identity/oauth2/token" or \
                e["headers"].get("User-Agent", "").startswith("nmi/"), e
    alive(nmi, world)


# ---------------------------------------------------------------------------------------------
# Spellings of the token paths: never proxied, each the handler's answer or a 4xx
# ---------------------------------------------------------------------------------------------

SEPARATORS = ["//", "\\", "%2F", "%2f", "%5C", "%5c", "/./", "/%2e/", "/%2E/", "/x/../",
              "/x/%2e%2e/", "/x/%2E%2E/", "%252F", "%255C", ";/", "/;/", "%C0%AF", "%E0%80%AF",
              "%EF%BC%8F", "/\\", "\\/", "/%00/", "/%20/", "%2F%2F", "/x/./../"]


def mutate_separators(path):
    """Replace each '/' of path in turn with every separator spelling."""
    out = []
    positions = [i for i, ch in enumerate(path) if ch == "/"]
    for pos in positions:
        for sep in SEPARATORS:
            out.append(path[:pos] + sep + path[pos + 1:])
    return out


def spellings(path):
    segs = path.strip("/").split("/")
    out = [path, path + "/", path + "//", path + "\\", path.upper(), path.title(),
           "/" + segs[0].upper() + path[len(segs[0]) + 1:],
           "/".join(s.swapcase() for s in path.split("/")),
           path + "X", path + "/extra", path + ".json", path + "%20", path + "%00", path + "%09",
           path + "~", path + "/.", path + "/..", path + "/%2e", path + "/%2e%2e", path + ";x=1",
           path + ";", path + "%3B", path + "%23", path + "%3F", path + "%2Fx",
           "".join("%" + "%02X" % ord(c) if c.isalpha() else c for c in path),
           "/" + "/".join("%" + "%02x" % ord(s[0]) + s[1:] for s in segs),
           "/" + segs[0] + "/%" + "%02X" % ord(segs[1][0]) + segs[1][1:] + path[
               len(segs[0]) + len(segs[1]) + 2:],
           "/x" + path, "/x/.." + path, "/.." + path, "/./" + path, "//" + path.lstrip("/"),
           "/" + "/x/../".join(segs), "/" + "//".join(segs), "/" + "\\".join(segs),
           "\\" + "\\".join(segs), "%2F" + "%2F".join(segs), "/" + "%252F".join(segs),
           "/" + "%255C".join(segs), "/" + "%2525".join(segs),
           path.replace("o", "%6F"), path.replace("o", "%256F"), path.replace("t", "%C0%B4"),
           "http://169.254.169.254" + path, "http://127.0.0.1" + path,
           "HTTP://169.254.169.254" + path.replace("/", "\\"), "//169.254.169.254" + path,
           "*" + path, " " + path]
    return out + mutate_separators(path)


# Spellings from docs/canonicalisation.md and the CVE, besides the generated ones.
TOKEN_EXTRA = ["/metadata%2Fidentity%2Foauth2%2Ftoken", "/metadata%5Cidentity%5Coauth2%5Ctoken",
               "/metadata/identity\\oauth2\\token/", "/metadata/identity/\\oauth2\\token/",
               "/%6Detadata/Identity/OAuth2/TOKEN", "/a/../metadata/identity/oauth2/./token",
               "/metadata/Identity/oauth2/token/", "/metadata/instance/oauth2/token",
               "/metadata/identity%2Foauth2%5Ctoken", "/metadata/instance/../identity/oauth2/token",
               "/metadata/identity/oauth2/token/%2E%2E/token", "/metadata/identity/oauth2/%2E/token"]


TOKEN_SPELLINGS = sorted(set(spellings("/metadata/identity/oauth2/token") + TOKEN_EXTRA))
# "/x/host/token" and "//169.254.169.254/host/token" (origin-form, first segment not "host") are
# not spellings of the host path but ordinary proxied paths, and IMDS has no /host route.
HOST_EXTRA = ["//host//token", "/host//token", "/HOST\\TOKEN", "/host%2ftoken/", "/h%6Fst/t%6Fken",
              "/x/../host/./token", "/host/tokenfoo", "/host/token/x"]
HOST_SPELLINGS = sorted(set(spellings("/host/token") + HOST_EXTRA)
                        - {"/x/host/token", "//169.254.169.254/host/token"})


def _spelling_request(target, extra_headers):
    q = Q if "?" not in target else "&" + Q[1:]
    return ("GET %s%s HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n%s"
            "Connection: close\r\n\r\n" % (target, q, extra_headers)).encode("latin-1")


def _check_spellings(nmi, emulator, world, targets, extra_headers):
    own = ua_client_id("a")
    since = harness.last_seq(emulator)
    outcomes = {}
    for target in targets:
        r = send_junk(nmi, _spelling_request(target, extra_headers), world["ip"]["p"])
        if r is None:
            outcomes[target] = "closed"
            continue
        outcomes[target] = r.status
        if r.status == 200:
            body = r.json()
            tok = body["token"] if "token" in body else body
            assert tok["resource"] == RES, (target, body)
            _, claims = harness.decode_jwt(tok["access_token"])
            assert claims["appid"] == own, (target, claims)
        else:
            assert 400 <= r.status < 500, (target, r)
    # The emulator saw nothing but nmi's own token calls for the pod's own identity.
    leaked = []
    for e in emulator.log():
        if e["seq"] <= since:
            continue
        if not (e["listener"] == "imds" and e["path"] == "/metadata/identity/oauth2/token"
                and e["raw_target"].startswith(
                    "/metadata/identity/oauth2/token?api-version=2018-02-01&")
                and e["headers"].get("User-Agent", "").startswith("nmi/")
                and e["query"].get("client_id") == [own]):
            leaked.append((e["method"], e["raw_target"], e["headers"].get("User-Agent")))
    assert leaked == [], "requests that reached the emulator: %r" % leaked
    return outcomes


def test_token_path_spellings(nmi, emulator, world):
    assert len(TOKEN_SPELLINGS) >= 50
    outcomes = _check_spellings(nmi, emulator, world, TOKEN_SPELLINGS, "")
    ok = [t for t, s in outcomes.items() if s == 200]
    print("token path: %d spellings, %d answered 200 by the token handler, others: %s" % (
        len(outcomes), len(ok), sorted({str(s) for s in outcomes.values()})))
    # The canonical spellings do reach the handler.
    for t in ("/metadata/identity/oauth2/token", "/METADATA/identity/oauth2/token",
              "/metadata\\identity\\oauth2\\token", "/metadata%2Fidentity%2Foauth2%2Ftoken",
              "/x/../metadata/identity/oauth2/token", "/metadata/identity/oauth2/token/"):
        assert outcomes[t] == 200, (t, outcomes[t])
    alive(nmi, world)


def test_host_path_spellings(nmi, emulator, world):
    assert len(HOST_SPELLINGS) >= 50
    outcomes = _check_spellings(nmi, emulator, world, HOST_SPELLINGS,
                                "podns: default\r\npodname: pod-p\r\n")
    ok = [t for t, s in outcomes.items() if s == 200]
    print("host path: %d spellings, %d answered 200, others: %s" % (
        len(outcomes), len(ok), sorted({str(s) for s in outcomes.values()})))
    for t in ("/host/token", "/HOST/TOKEN", "/host\\token", "/host%2Ftoken", "//host//token"):
        assert outcomes[t] == 200, (t, outcomes[t])
    alive(nmi, world)


# ---------------------------------------------------------------------------------------------
# Slow and greedy clients
# ---------------------------------------------------------------------------------------------

def test_slow_header_is_cut_off_others_served(nmi, world):
    """One header byte per second: cut off by --header-read-timeout-sec=2; others are served
    meanwhile."""
    data = ("GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nX-Slow: "
            + "s" * 40 + "\r\n\r\n").encode()
    result = {}

    def slow():
        s = harness.connect(nmi.port, world["slow_ip"], timeout=10)
        t0 = time.monotonic()
        sent = 0
        try:
            for b in data:
                s.sendall(bytes([b]))
                sent += 1
                s.settimeout(1.0)
                try:
                    got = s.recv(4096)
                    result["got"] = got
                    break  # answered or closed
                except socket.timeout:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            result["got"] = b""
        result["elapsed"] = time.monotonic() - t0
        result["sent"] = sent
        s.close()

    t = threading.Thread(target=slow)
    t.start()
    served = []
    while t.is_alive():
        r = nmi.token(world["ip"]["q"], "https://alive.example/")
        served.append(r.elapsed)
        assert r.status == 200, r
        time.sleep(0.2)  # pacing: other clients' requests every 0.2 s while the slow one lasts
    t.join()
    print("slow client cut after %.2f s (%d bytes sent); %d other requests served, max %.1f ms"
          % (result["elapsed"], result["sent"], len(served), max(served) * 1000))
    assert result.get("got", b"x")[:12] in (b"", b"HTTP/1.1 408"), result
    assert 1.8 <= result["elapsed"] <= 4.0, result
    assert result["sent"] < len(data)
    assert len(served) >= 5 and max(served) < 0.5


def test_idle_keep_alive_closed(nmi, world):
    c = nmi.conn(source=world["ip"]["p"])
    try:
        c.send(harness.build_request(harness.token_target(RES), harness.META, close=False))
        r = c.read()
        assert r.status == 200 and r.header("Connection", "").lower() != "close", r
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=5), "idle connection not closed"
        idle = time.monotonic() - t0
        print("idle keep-alive connection closed after %.2f s" % idle)
        assert 1.8 <= idle <= 3.5
    finally:
        c.close()


def test_connection_that_sends_nothing_is_closed(nmi, world):
    c = nmi.conn(source=world["ip"]["p"])
    try:
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=6)
        assert time.monotonic() - t0 <= 4.0
    finally:
        c.close()


def test_keep_alive_reuse_within_idle_timeout(nmi, world):
    c = nmi.conn(source=world["ip"]["p"])
    try:
        for i in range(5):
            c.send(harness.build_request(harness.token_target(RES), harness.META, close=False))
            harness.assert_token(c.read(), RES, ua_client_id("a"))
            time.sleep(0.5)  # the connection idles on purpose, within the idle timeout
    finally:
        c.close()


def test_max_connections_per_peer(nmi, world):
    ip = world["greedy_ip"]
    held = [nmi.conn(source=ip) for _ in range(4)]
    try:
        # Each held connection is admitted: it answers a keep-alive request.
        for c in held:
            c.send(harness.build_request("/metadata/versions", harness.META, close=False))
            assert c.read().status == 200
        extra = nmi.conn(source=ip)
        try:
            # Over the limit: an HTTP answer (issue 10, seam 8), never service and never an
            # empty reply.
            extra.send(harness.build_request("/metadata/versions", harness.META))
            r = extra.read()
            assert_json_error(r, 429, "Too many connections from this address",
                              "too_many_requests")
            assert r.header("Retry-After") == "1", r
            assert extra.closed_by_peer(3)
        finally:
            extra.close()
        # Another peer is still served.
        alive(nmi, world)
    finally:
        for c in held:
            c.close()
    # Slots come back once the connections are gone (nmi sees the closes a moment after they
    # are made: until then a new connection is still one too many).
    def served():
        try:
            r = nmi.get("/metadata/versions", harness.META, source=ip)
        except ConnectionClosed:
            return False
        if r.status == 429:
            assert_json_error(r, 429, "Too many connections from this address")
            return False
        assert r.status == 200, r
        return True
    wait_until(served, 3, interval=0.05, message="the peer's slots to come back")
    rejected = nmi.metric_value("nmi_connections_rejected_total")
    assert rejected and rejected >= 1
