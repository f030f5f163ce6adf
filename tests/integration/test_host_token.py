"""The host token endpoint /host/token (reference section 1.4). Pods: 127.0.2.x."""
import time

import pytest

from nmi_pytest import harness
from conftest import ident, ua_client_id, ua_resource_id
from nmi_pytest.harness import (TOKEN_FIELDS, assigned, assert_json_error, assert_token,
                     binding, exception, pod)

FILE_INDEX = 2
RES = "https://vault.azure.net"
HEADERS_MISSING = "Missing 'podname' and 'podns' request headers"
RESOURCE_MISSING = "Required query variable 'resource' is missing"
NO_IDENTITY = "No identity is assigned to this pod for this request"
NOT_HOST = "Request is not from the host"
NOT_FOUND = "Not found"



@pytest.fixture(scope="module")
def world(ips):
    w = {"ip": {}, "objects": []}
    add = w["objects"].append
    a, b = ident("a"), ident("b")
    add(a)
    add(b)

    def mkpod(name, ns="default", **kw):
        w["ip"][name] = ips.next()
        p = pod(name, ns, w["ip"][name], **kw)
        add(p)
        return p

    p = mkpod("web")
    add(assigned(p, a))
    p = mkpod("multi")
    add(assigned(p, a))
    add(assigned(p, b))
    # Excepted pod (namespace exns): the token endpoint bypasses, the host endpoint never does.
    add(exception("exc", "exns", {"app": "special"}))
    p = mkpod("excepted", ns="exns", labels={"app": "special"})
    mkpod("excepted-none", ns="exns", labels={"app": "special"})
    add(assigned(p, a))
    # Stuck in Created.
    p = mkpod("stuck", labels={"aadpodidbinding": "sel"})
    add(binding("bind", "default", "id-a", "sel"))
    add(assigned(p, a, status="Created", name="stuck-created"))
    return w


FLAGS = ["--pod-wait-timeout-ms=300", "--retry-attempts-for-created=1",
         "--retry-attempts-for-assigned=1", "--find-identity-retry-interval=1",
         "--set-retry-after-header"]


@pytest.fixture(scope="module")
def nmi(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world["objects"], FLAGS)


def host_target(resource=RES, path="/host/token", **params):
    from urllib.parse import urlencode
    q = {}
    if resource is not None:
        q["resource"] = resource
    q.update(params)
    return path + ("?" + urlencode(q) if q else "")


def assert_host_token(r, resource, client_id):
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json; charset=utf-8", r
    assert r.header("Content-Length") == str(len(r.body)), r
    body = r.json()
    assert list(body) == ["token", "clientid"], body
    assert body["clientid"] == client_id
    tok = body["token"]
    assert list(tok) == TOKEN_FIELDS, tok
    assert all(isinstance(v, str) for v in tok.values()), tok
    assert tok["resource"] == resource
    assert tok["client_id"] == client_id
    assert tok["token_type"] == "Bearer"
    assert int(tok["expires_on"]) > time.time()
    _, claims = harness.decode_jwt(tok["access_token"])
    assert claims["appid"] == client_id
    assert claims["aud"] == resource
    return body


# (id, target, headers, status, client id or error description, max seconds)
ROWS = [
    ("success", host_target(), [("podns", "default"), ("podname", "web")], 200,
     ua_client_id("a"), 2),
    ("header-names-any-case", host_target(), [("PODNS", "default"), ("PodName", "web")], 200,
     ua_client_id("a"), 2),
    ("no-metadata-header-needed-or-checked", host_target(),
     [("podns", "default"), ("podname", "web"), ("Metadata", "False")], 200, ua_client_id("a"),
     2),
    ("docs-example-trailing-slash", "/host/token/?resource=https://vault.azure.net",
     [("podname", "web"), ("podns", "default")], 200, ua_client_id("a"), 2),
    ("double-slash", "//host//token?resource=" + RES, [("podname", "web"), ("podns", "default")],
     200, ua_client_id("a"), 2),
    ("by-client-id", host_target(client_id=ua_client_id("b")),
     [("podns", "default"), ("podname", "multi")], 200, ua_client_id("b"), 2),
    ("by-msi-res-id", host_target(msi_res_id=ua_resource_id("b")),
     [("podns", "default"), ("podname", "multi")], 200, ua_client_id("b"), 2),
    ("by-mi-res-id", host_target(mi_res_id=ua_resource_id("a")),
     [("podns", "default"), ("podname", "multi")], 200, ua_client_id("a"), 2),
    ("headers-missing", host_target(), [], 400, HEADERS_MISSING, 0.5),
    ("podname-missing", host_target(), [("podns", "default")], 400, HEADERS_MISSING, 0.5),
    ("podns-missing", host_target(), [("podname", "web")], 400, HEADERS_MISSING, 0.5),
    ("headers-empty", host_target(), [("podns", ""), ("podname", "")], 400, HEADERS_MISSING,
     0.5),
    ("headers-before-resource", host_target(resource=None), [], 400, HEADERS_MISSING, 0.5),
    ("resource-missing", host_target(resource=None), [("podns", "default"), ("podname", "web")],
     400, RESOURCE_MISSING, 0.5),
    ("resource-empty", host_target(resource=""), [("podns", "default"), ("podname", "web")],
     400, RESOURCE_MISSING, 0.5),
    ("unknown-pod", host_target(), [("podns", "default"), ("podname", "nope")], 404,
     NO_IDENTITY, 1.5),
    ("pod-in-other-namespace", host_target(), [("podns", "team"), ("podname", "web")], 404,
     NO_IDENTITY, 1.5),
    ("client-id-not-bound", host_target(client_id=ua_client_id("b")),
     [("podns", "default"), ("podname", "web")], 404, NO_IDENTITY, 0.5),
    # Selectors in any case, as IMDS compares them; the answer carries the identity's client id.
    ("by-client-id-upper-case", host_target(client_id=ua_client_id("b").upper()),
     [("podns", "default"), ("podname", "multi")], 200, ua_client_id("b"), 2),
    ("by-msi-res-id-upper-case", host_target(msi_res_id=ua_resource_id("b").upper()),
     [("podns", "default"), ("podname", "multi")], 200, ua_client_id("b"), 2),
    ("client-id-not-bound-upper-case", host_target(client_id=ua_client_id("b").upper()),
     [("podns", "default"), ("podname", "web")], 404, NO_IDENTITY, 0.5),
    ("exception-not-applied-other-identity", host_target(client_id=ua_client_id("b")),
     [("podns", "exns"), ("podname", "excepted")], 404, NO_IDENTITY, 0.5),
    ("exception-not-applied-no-identity", host_target(),
     [("podns", "exns"), ("podname", "excepted-none")], 404, NO_IDENTITY, 0.5),
    ("exception-pod-gets-its-own-identity", host_target(),
     [("podns", "exns"), ("podname", "excepted")], 200, ua_client_id("a"), 2),
    ("no-retry-after-on-host-endpoint", host_target(),
     [("podns", "default"), ("podname", "stuck")], 404, NO_IDENTITY, 3.0),
    ("tokenfoo-is-not-the-host-endpoint", "/host/tokenfoo?resource=" + RES,
     [("podns", "default"), ("podname", "web")], 404, NOT_FOUND, 0.5),
    ("other-host-path", "/host/other?resource=" + RES,
     [("podns", "default"), ("podname", "web")], 404, NOT_FOUND, 0.5),
]


@pytest.mark.parametrize("target,headers,status,expect,max_s", [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_host_token(nmi, emulator, target, headers, status, expect, max_s):
    since = harness.last_seq(emulator)
    r = nmi.get(target, headers, host_header="127.0.0.1:2579")
    if status == 200:
        assert_host_token(r, RES, expect)
    else:
        assert_json_error(r, status, expect)
        assert r.header("Retry-After") is None, r
        # Nothing was asked of IMDS and nothing was proxied.
        assert [e for e in emulator.log() if e["seq"] > since] == []
    assert r.elapsed < max_s, "took %.3f s" % r.elapsed


def test_token_endpoint_does_bypass_for_excepted_pod(nmi, world):
    """Contrast with the host rows above: the same pod on the token endpoint is excepted."""
    r = nmi.token(world["ip"]["excepted"], RES, client_id=ua_client_id("b"))
    assert_token(r, RES, ua_client_id("b"))


def test_stuck_created_token_endpoint_gets_retry_after(nmi, world):
    """Contrast: --set-retry-after-header applies to the token endpoint only."""
    r = nmi.token(world["ip"]["stuck"], timeout=10)
    assert_json_error(r, 503)
    assert r.header("Retry-After") == "20"


def test_any_loopback_address_counts_as_host(nmi, world):
    """nmi treats every 127.0.0.0/8 peer as the host (the original required exactly
    127.0.0.1). Pods never have loopback addresses, so a pod address here is still a host."""
    r = nmi.get(host_target(), [("podns", "default"), ("podname", "web")],
                source=world["ip"]["multi"])
    assert_host_token(r, RES, ua_client_id("a"))


def test_disable_host_token(make_nmi, emulator, world):
    n = make_nmi(emulator, world["objects"], FLAGS + ["--disable-host-token"])
    since = harness.last_seq(emulator)
    for target in (host_target(), "/host/token/?resource=" + RES, "/HOST/TOKEN?resource=" + RES):
        r = n.get(target, [("podns", "default"), ("podname", "web")])
        assert_json_error(r, 404, NOT_FOUND, "not_found")
    assert [e for e in emulator.log() if e["seq"] > since] == []
    # The pod token endpoint is unaffected.
    assert_token(n.token(world["ip"]["web"]), RES, ua_client_id("a"))


# ---------------------------------------------------------------------------------------------
# A peer that is not loopback. Every 127.x address counts as loopback, and the only other
# address of this machine must not be a test target, so nmi runs in a network namespace of the
# test's own, listening on 0.0.0.0, and the client connects from the namespace's non-loopback
# address (10.250.0.1 on a port-less bridge that exists only inside the namespace).
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def netns():
    ns = harness.NetNs("10.250.0.1")
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture(scope="module")
def ns_nmi(netns, world, make_module_nmi):
    # No emulator inside the namespace: these rows are answered before any token is fetched.
    return make_module_nmi(None, world["objects"], FLAGS, netns=netns,
                           listen_address="0.0.0.0", imds_endpoint="127.0.0.1:9")


NETNS_ROWS = [
    ("non-loopback-peer", "10.250.0.1", [("podns", "default"), ("podname", "web")],
     host_target(), 403, NOT_HOST),
    ("non-loopback-peer-unknown-pod", "10.250.0.1", [("podns", "default"), ("podname", "x")],
     host_target(), 403, NOT_HOST),
    ("peer-checked-before-resource", "10.250.0.1", [("podns", "default"), ("podname", "web")],
     host_target(resource=None), 403, NOT_HOST),
    ("headers-checked-before-peer", "10.250.0.1", [], host_target(), 400, HEADERS_MISSING),
    ("loopback-in-namespace-passes-peer-check", "127.0.0.1",
     [("podns", "default"), ("podname", "x")], host_target(), 404, NO_IDENTITY),
]


@pytest.mark.parametrize("source,headers,target,status,expect", [r[1:] for r in NETNS_ROWS],
                         ids=[r[0] for r in NETNS_ROWS])
def test_host_token_peer(ns_nmi, source, headers, target, status, expect):
    host = "10.250.0.1" if source != "127.0.0.1" else "127.0.0.1"
    r = harness.send_raw(ns_nmi.port, harness.build_request(target, headers), source=source,
                         host=host, netns=ns_nmi.netns.path)
    assert_json_error(r, status, expect)
