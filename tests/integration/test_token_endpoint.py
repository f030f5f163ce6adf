"""The pod token endpoint /metadata/identity/oauth2/token (reference section 1.3), through real
HTTP against the running nmi and the Azure emulator. Pods: 127.0.1.x."""
import concurrent.futures
import shutil
import time

import pytest

from nmi_pytest import harness
from nmi_pytest.waits import wait_until
from conftest import NOT_ON_VM_ID, SYSTEM_ID, ident, ua_client_id, ua_resource_id
from nmi_pytest.harness import (META, assigned, assert_json_error, assert_token, azure_identity, binding,
                     exception, pod)

FILE_INDEX = 1
RES = "https://vault.azure.net"

METADATA_MISSING = "Required metadata header not specified"
RESOURCE_MISSING = "Required query variable 'resource' is missing"
NO_POD = "No pod on this node has the request's source address"
POD_CONFLICT = "Several pods claim the request's source address"
NO_IDENTITY = "No identity is assigned to this pod for this request"
SELECTORS = "Only one of client_id, msi_res_id and object_id may be specified"
REFUSED = "The token request for this identity was refused"
UNAVAILABLE = "A token could not be obtained at this time"
BAD_TARGET = "Invalid request target"
FORWARDED = "Forwarded requests are not accepted"


def mixed_case(text):
    """Every other letter upper case ("aBcD-..."), digits and punctuation as they are."""
    out, upper = [], False
    for ch in text:
        if ch.isalpha():
            out.append(ch.upper() if upper else ch.lower())
            upper = not upper
        else:
            out.append(ch)
    return "".join(out)



class World:
    """The pods and objects of the shared standard-mode nmi, by key."""

    def __init__(self, ips):
        self.ip = {}
        self.objects = []
        add = self.objects.append

        def mkpod(key, ns="default", ip=None, **kw):
            self.ip[key] = ip or ips.next()
            p = pod(key, ns, self.ip[key], **kw)
            add(p)
            return p

        a = ident("a")
        b, c = ident("b"), ident("c")
        d, e, f = ident("d"), ident("e"), ident("f")
        for i in (a, b, c, d, e, f):
            add(i)
        p = mkpod("pa", labels={"aadpodidbinding": "sel-a"})
        add(binding("bind-a", "default", "id-a", "sel-a"))
        add(assigned(p, a))
        p = mkpod("pmulti")
        add(assigned(p, b))
        add(assigned(p, c))
        p = mkpod("plegacy")
        add(assigned(p, d, status=""))
        p = mkpod("plegacy-nostatus")
        add(assigned(p, d, status=None))
        p = mkpod("punassigned")
        add(assigned(p, e, status="Unassigned"))
        p = mkpod("pmixed")
        add(assigned(p, e, status="Unassigned"))
        add(assigned(p, f))
        # Namespaces: the pod is in team1, identities elsewhere.
        g_other_ns = ident("g", ns="other", namespaced=True)
        h_other_ns = ident("h", ns="other")
        a_team1 = ident("a", ns="team1", namespaced=True, name="id-a-team1")
        for i in (g_other_ns, h_other_ns, a_team1):
            add(i)
        p = mkpod("pns-annotated", ns="team1")
        add(assigned(p, g_other_ns))
        p = mkpod("pns-plain", ns="team1")
        add(assigned(p, h_other_ns))
        p = mkpod("pns-same", ns="team1")
        add(assigned(p, a_team1))
        # Addresses.
        shared = ips.next()
        mkpod("pconflict-1", ip=shared)
        mkpod("pconflict-2", ns="team1", ip=shared)
        shared2 = ips.next()
        mkpod("pdead", ip=shared2, phase="Succeeded")
        p = mkpod("plive", ip=shared2)
        add(assigned(p, a))
        p = mkpod("ppending", phase="Pending")
        add(assigned(p, a))
        mkpod("psucceeded", phase="Succeeded")
        mkpod("phostnet", host_network=True)
        # Identity not on the VM: IMDS answers 400 Identity not found.
        notvm = azure_identity("id-notvm", "default", NOT_ON_VM_ID)
        add(notvm)
        p = mkpod("pnotvm")
        add(assigned(p, notvm))
        # Exceptions (in namespace exns).
        add(exception("except-special", "exns", {"app": "special", "unused": "x"}))
        mkpod("pexc", ns="exns", labels={"app": "SPECIAL"})
        mkpod("pexc-keycase", ns="exns", labels={"App": "special"})
        p = mkpod("pexc-otherns", ns="exns2", labels={"app": "special"})
        add(assigned(p, a))
        self.unknown_ip = ips.next()  # nobody has it


@pytest.fixture(scope="module")
def world(ips):
    return World(ips)


STD_FLAGS = ["--pod-wait-timeout-ms=300", "--retry-attempts-for-created=1",
             "--retry-attempts-for-assigned=1", "--find-identity-retry-interval=1"]


@pytest.fixture(scope="module")
def std(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world.objects, STD_FLAGS)


# ---------------------------------------------------------------------------------------------
# Check order: Metadata header -> resource -> pod -> exception -> identity -> token
# ---------------------------------------------------------------------------------------------

def q(**params):
    return harness.token_target(**params) if "resource" in params else harness.token_target(
        RES, **params)


# (id, pod key or "unknown", target, headers, status, description, max seconds)
CHECK_ORDER = [
    ("metadata-missing", "pa", q(), [], 400, METADATA_MISSING, 0.5),
    ("metadata-True", "pa", q(), [("Metadata", "True")], 400, METADATA_MISSING, 0.5),
    ("metadata-TRUE", "pa", q(), [("Metadata", "TRUE")], 400, METADATA_MISSING, 0.5),
    ("metadata-1", "pa", q(), [("Metadata", "1")], 400, METADATA_MISSING, 0.5),
    ("metadata-empty", "pa", q(), [("Metadata", "")], 400, METADATA_MISSING, 0.5),
    ("metadata-repeated", "pa", q(), [("Metadata", "true"), ("Metadata", "true")], 400,
     METADATA_MISSING, 0.5),
    ("metadata-list", "pa", q(), [("Metadata", "true, true")], 400, METADATA_MISSING, 0.5),
    ("metadata-name-lowercase-ok", "pa", q(), [("metadata", "true")], 200, None, 2),
    ("metadata-name-uppercase-ok", "pa", q(), [("METADATA", "true")], 200, None, 2),
    ("x-forwarded-for", "pa", q(), [("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")], 400,
     FORWARDED, 0.5),
    ("x-forwarded-for-empty", "pa", q(), [("Metadata", "true"), ("X-Forwarded-For", "")], 400,
     FORWARDED, 0.5),
    ("header-checked-before-resource", "pa", q(resource=None), [], 400, METADATA_MISSING, 0.5),
    ("header-checked-before-pod", "unknown", q(), [], 400, METADATA_MISSING, 0.5),
    ("resource-missing", "pa", q(resource=None), [("Metadata", "true")], 400, RESOURCE_MISSING,
     0.5),
    ("resource-empty", "pa", q(resource=""), [("Metadata", "true")], 400, RESOURCE_MISSING, 0.5),
    ("resource-name-case", "pa", harness.TOKEN_PATH + "?api-version=2018-02-01&Resource=" + RES,
     [("Metadata", "true")], 400, RESOURCE_MISSING, 0.5),
    ("resource-checked-before-pod", "unknown", q(resource=None), [("Metadata", "true")], 400,
     RESOURCE_MISSING, 0.2),
    ("resource-repeated", "pa", harness.TOKEN_PATH + "?resource=a&resource=b",
     [("Metadata", "true")], 400, BAD_TARGET, 0.5),
    ("client-id-repeated", "pa",
     harness.TOKEN_PATH + "?resource=a&client_id=x&client_id=x", [("Metadata", "true")], 400,
     BAD_TARGET, 0.5),
    ("resource-repeated-encoded-name", "pa", harness.TOKEN_PATH + "?resource=a&%72esource=b",
     [("Metadata", "true")], 400, BAD_TARGET, 0.5),
    ("unknown-pod", "unknown", q(), [("Metadata", "true")], 500, NO_POD, 1.5),
    ("only-succeeded-pod", "psucceeded", q(), [("Metadata", "true")], 500, NO_POD, 1.5),
    ("host-network-pod-ignored", "phostnet", q(), [("Metadata", "true")], 500, NO_POD, 1.5),
    ("two-live-pods-one-ip", "pconflict-1", q(), [("Metadata", "true")], 500, POD_CONFLICT, 0.5),
    ("selectors-checked-before-identity", "pa",
     q(client_id=ua_client_id("a"), msi_res_id=ua_resource_id("a")), [("Metadata", "true")], 400,
     SELECTORS, 0.5),
]


@pytest.mark.parametrize("key,target,headers,status,desc,max_s",
                         [r[1:] for r in CHECK_ORDER], ids=[r[0] for r in CHECK_ORDER])
def test_check_order(std, world, key, target, headers, status, desc, max_s):
    source = world.unknown_ip if key == "unknown" else world.ip[key]
    r = std.get(target, headers, source=source)
    if status == 200:
        assert_token(r, RES, ua_client_id("a"))
    else:
        assert_json_error(r, status, desc)
    assert r.elapsed < max_s, "took %.3f s" % r.elapsed


def test_unknown_pod_waits_for_pod_wait_timeout(std, world):
    """--pod-wait-timeout-ms=300: an address no pod has waits ~300 ms, then 500."""
    r = std.token(world.unknown_ip)
    assert_json_error(r, 500, NO_POD, "server_error")
    assert 0.28 <= r.elapsed < 1.0, "took %.3f s" % r.elapsed


def test_error_bodies_are_exact(std, world):
    r = std.get(q(), [], source=world.ip["pa"])
    assert r.body == (b'{"error":"invalid_request","error_description":'
                      b'"Required metadata header not specified"}\n')
    assert r.header("Content-Length") == "89"
    r = std.get(q(resource=None), META, source=world.ip["pa"])
    assert r.body == (b'{"error":"invalid_request","error_description":'
                      b'"Required query variable \'resource\' is missing"}\n')


# ---------------------------------------------------------------------------------------------
# Standard mode: which identity a pod gets
# ---------------------------------------------------------------------------------------------

# (id, pod key, params, expected status, expected client id or error description)
STANDARD = [
    ("assigned-default", "pa", {}, 200, ua_client_id("a")),
    ("by-client-id", "pa", {"client_id": ua_client_id("a")}, 200, ua_client_id("a")),
    ("by-msi-res-id", "pa", {"msi_res_id": ua_resource_id("a")}, 200, ua_client_id("a")),
    ("by-mi-res-id", "pa", {"mi_res_id": ua_resource_id("a")}, 200, ua_client_id("a")),
    ("msi-res-id-and-mi-res-id-equal", "pa",
     {"msi_res_id": ua_resource_id("a"), "mi_res_id": ua_resource_id("a")}, 200,
     ua_client_id("a")),
    ("client-id-not-bound", "pa", {"client_id": ua_client_id("b")}, 404, NO_IDENTITY),
    ("msi-res-id-not-bound", "pa", {"msi_res_id": ua_resource_id("b")}, 404, NO_IDENTITY),
    # Selectors in any case, as IMDS compares them (issue 10, seam 9); the answer carries the
    # identity's client id as IMDS reports it, not the request's spelling.
    ("client-id-upper-case", "pa", {"client_id": ua_client_id("a").upper()}, 200,
     ua_client_id("a")),
    ("client-id-mixed-case", "pa", {"client_id": mixed_case(ua_client_id("a"))}, 200,
     ua_client_id("a")),
    ("msi-res-id-upper-case", "pa", {"msi_res_id": ua_resource_id("a").upper()}, 200,
     ua_client_id("a")),
    ("mi-res-id-mixed-case", "pa", {"mi_res_id": mixed_case(ua_resource_id("a"))}, 200,
     ua_client_id("a")),
    ("two-assigned-pick-c-upper-case", "pmulti", {"client_id": ua_client_id("c").upper()}, 200,
     ua_client_id("c")),
    ("legacy-by-client-id-upper-case", "plegacy", {"client_id": ua_client_id("d").upper()}, 200,
     ua_client_id("d")),
    ("client-id-not-bound-upper-case", "pa", {"client_id": ua_client_id("b").upper()}, 404,
     NO_IDENTITY),
    ("client-id-not-bound-mixed-case", "pa", {"client_id": mixed_case(ua_client_id("b"))}, 404,
     NO_IDENTITY),
    ("msi-res-id-not-bound-upper-case", "pa", {"msi_res_id": ua_resource_id("b").upper()}, 404,
     NO_IDENTITY),
    ("namespaced-other-ns-upper-case", "pns-annotated", {"client_id": ua_client_id("g").upper()},
     404, NO_IDENTITY),
    ("object-id", "pa", {"object_id": "11111111-2222-3333-4444-555555555555"}, 400,
     "Identity not found"),
    ("client-id-and-msi-res-id", "pa",
     {"client_id": ua_client_id("a"), "msi_res_id": ua_resource_id("a")}, 400, SELECTORS),
    ("client-id-and-object-id", "pa",
     {"client_id": ua_client_id("a"), "object_id": "11111111-2222-3333-4444-555555555555"}, 400,
     SELECTORS),
    ("mi-res-id-and-object-id", "pa",
     {"mi_res_id": ua_resource_id("a"), "object_id": "11111111-2222-3333-4444-555555555555"},
     400, SELECTORS),
    ("empty-client-id-is-absent", "pa", {"client_id": ""}, 200, ua_client_id("a")),
    ("two-assigned-pick-b", "pmulti", {"client_id": ua_client_id("b")}, 200, ua_client_id("b")),
    ("two-assigned-pick-c", "pmulti", {"client_id": ua_client_id("c")}, 200, ua_client_id("c")),
    ("two-assigned-pick-c-by-res-id", "pmulti", {"msi_res_id": ua_resource_id("c")}, 200,
     ua_client_id("c")),
    ("legacy-empty-status", "plegacy", {}, 200, ua_client_id("d")),
    ("legacy-empty-status-by-client-id", "plegacy", {"client_id": ua_client_id("d")}, 200,
     ua_client_id("d")),
    ("legacy-no-status", "plegacy-nostatus", {}, 200, ua_client_id("d")),
    ("unassigned-ignored", "punassigned", {}, 404, NO_IDENTITY),
    ("unassigned-ignored-by-client-id", "punassigned", {"client_id": ua_client_id("e")}, 404,
     NO_IDENTITY),
    ("unassigned-skipped-assigned-used", "pmixed", {}, 200, ua_client_id("f")),
    ("namespaced-annotation-other-ns", "pns-annotated", {}, 404, NO_IDENTITY),
    ("not-namespaced-other-ns", "pns-plain", {}, 200, ua_client_id("h")),
    ("namespaced-annotation-same-ns", "pns-same", {}, 200, ua_client_id("a")),
    ("ip-shared-with-dead-pod", "plive", {}, 200, ua_client_id("a")),
    ("pending-pod", "ppending", {}, 200, ua_client_id("a")),
    ("exception-other-namespace-not-applied", "pexc-otherns", {}, 200, ua_client_id("a")),
]


@pytest.mark.parametrize("key,params,status,expect", [r[1:] for r in STANDARD],
                         ids=[r[0] for r in STANDARD])
def test_standard_mode(std, world, key, params, status, expect):
    r = std.token(world.ip[key], RES, **params)
    if status == 200:
        body, claims = assert_token(r, RES, expect)
        assert claims["aud"] == RES
        assert claims["xms_mirid"].lower().endswith("/id-" + {
            ua_client_id(n): n for n in "abcdefgh"}[expect])
    else:
        assert_json_error(r, status, expect)
        # Nothing to wait for in these rows: answered at once.
        assert r.elapsed < 0.5, "took %.3f s" % r.elapsed


def test_own_identity_in_any_case_is_answered_at_once(std, world, emulator):
    """A pod asking for its own identity with an upper- or mixed-case client_id or resource id
    gets it at once, from one cache entry; another pod's identity stays refused in every case."""
    res = "https://case.example/" + str(time.time())
    since = harness.last_seq(emulator)
    spellings = [{"client_id": ua_client_id("a").upper()},
                 {"client_id": mixed_case(ua_client_id("a"))},
                 {"client_id": ua_client_id("a")},
                 {"msi_res_id": ua_resource_id("a").upper()}]
    tokens = set()
    for params in spellings:
        r = std.token(world.ip["pa"], res, **params)
        body, _ = assert_token(r, res, ua_client_id("a"))
        assert r.elapsed < 0.5, "took %.3f s" % r.elapsed
        tokens.add(body["access_token"])
    assert len(tokens) == 1  # one identity, one cached token, whatever the spelling
    assert len(harness.imds_token_calls(emulator, since)) == 1
    for params in ({"client_id": ua_client_id("b").upper()},
                   {"client_id": mixed_case(ua_client_id("b"))},
                   {"msi_res_id": mixed_case(ua_resource_id("b"))}):
        r = std.token(world.ip["pa"], res, **params)
        assert_json_error(r, 404, NO_IDENTITY)
        assert r.elapsed < 0.5, "took %.3f s" % r.elapsed


def test_not_bound_client_id_is_immediate(std, world):
    times = []
    for _ in range(5):
        r = std.token(world.ip["pa"], RES, client_id=ua_client_id("b"))
        assert_json_error(r, 404, NO_IDENTITY, "not_found")
        times.append(r.elapsed)
    print("client_id not bound -> 404 in %s s" % ["%.4f" % t for t in times])
    assert max(times) < 0.25


@pytest.mark.parametrize("resource", [
    "https://vault.azure.net", "https://vault.azure.net/", "https://management.azure.com/",
    "api://11111111-2222-3333-4444-555555555555", "https://storage.azure.com/.default",
    "https://x.example/ü", "https://x.example/a b", "https://x.example/?x=1&y=2",
], ids=["vault", "vault-slash", "arm", "api-guid", "dot-default", "utf8", "space", "query"])
def test_resource_echoed_exactly(std, world, emulator, resource):
    r = std.token(world.ip["pa"], resource)
    body, claims = assert_token(r, resource, ua_client_id("a"))
    assert claims["aud"] == resource


# ---------------------------------------------------------------------------------------------
# Exceptions (AzurePodIdentityException in the pod's namespace)
# ---------------------------------------------------------------------------------------------

EXCEPTIONS = [
    ("requested-client-id", "pexc", {"client_id": ua_client_id("exc")}, 200, ua_client_id("exc")),
    ("any-node-identity", "pexc", {"client_id": ua_client_id("g")}, 200, ua_client_id("g")),
    ("node-default", "pexc", {}, 200, SYSTEM_ID),
    ("by-msi-res-id", "pexc", {"msi_res_id": ua_resource_id("exc")}, 200, ua_client_id("exc")),
    ("label-key-is-exact", "pexc-keycase", {}, 404, NO_IDENTITY),
    ("not-on-vm", "pexc", {"client_id": NOT_ON_VM_ID}, 403, REFUSED),
]


@pytest.mark.parametrize("key,params,status,expect", [r[1:] for r in EXCEPTIONS],
                         ids=[r[0] for r in EXCEPTIONS])
def test_exception(std, world, emulator, key, params, status, expect):
    since = harness.last_seq(emulator)
    resource = "https://exception.example/" + key + "/" + "-".join(sorted(params))
    r = std.token(world.ip[key], resource, **params)
    if status != 200:
        assert_json_error(r, status, expect)
        return
    assert_token(r, resource, expect)
    calls = [c for c in harness.imds_token_calls(emulator, since)
             if c["query"].get("resource") == [resource]]
    assert len(calls) == 1, calls
    call = calls[0]
    assert call["headers"]["Metadata"] == ["true"]
    assert call["headers"]["User-Agent"].startswith("nmi/")
    if "client_id" in params:
        assert call["query"]["client_id"] == [params["client_id"]]
    elif "msi_res_id" in params:
        assert call["query"]["msi_res_id"] == [params["msi_res_id"]]
    else:
        for sel in ("client_id", "msi_res_id", "mi_res_id", "object_id"):
            assert sel not in call["query"], call


def test_exception_selector_in_any_case(std, world, emulator):
    """An excepted pod's selector goes to IMDS as the pod spelt it; other spellings of the same
    identity are served from the same cache entry, and the answer names the identity as IMDS
    does."""
    res = "https://exception-case.example/" + str(time.time())
    since = harness.last_seq(emulator)
    upper = ua_client_id("exc").upper()
    first = assert_token(std.token(world.ip["pexc"], res, client_id=upper), res,
                         ua_client_id("exc"))[0]
    (call,) = harness.imds_token_calls(emulator, since)
    assert call["query"]["client_id"] == [upper]
    second = assert_token(std.token(world.ip["pexc"], res, client_id=ua_client_id("exc")), res,
                          ua_client_id("exc"))[0]
    assert second["access_token"] == first["access_token"]
    assert len(harness.imds_token_calls(emulator, since)) == 1


# ---------------------------------------------------------------------------------------------
# Token failures
# ---------------------------------------------------------------------------------------------

def test_identity_not_on_vm_is_403(std, world, emulator):
    since = harness.last_seq(emulator)
    r = std.token(world.ip["pnotvm"], "https://notvm.example/")
    assert_json_error(r, 403, REFUSED, "forbidden")
    calls = harness.imds_token_calls(emulator, since)
    assert [c["status"] for c in calls] == [400], calls  # a definite answer: not retried
    assert calls[0]["query"]["client_id"] == [NOT_ON_VM_ID]


def test_imds_unreachable_is_503_within_budget(make_nmi, world):
    closed = harness.free_port(FILE_INDEX)  # nothing listens there
    n = make_nmi(None, world.objects, STD_FLAGS + ["--token-retry-budget-sec=2"],
                 imds_endpoint="127.0.0.1:%d" % closed)
    r = n.token(world.ip["pa"], timeout=15)
    assert_json_error(r, 503, UNAVAILABLE, "service_unavailable")
    print("IMDS unreachable -> 503 after %.2f s (budget 2 s)" % r.elapsed)
    assert r.elapsed < 3.0, "took %.2f s" % r.elapsed


# ---------------------------------------------------------------------------------------------
# Any HTTP method reaches the handler
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_any_method(std, world, method):
    body = b"resource=ignored" if method in ("POST", "PUT", "PATCH") else b""
    r = std.get(q(), META, source=world.ip["pa"], method=method, body=body)
    if method == "HEAD":
        assert r.status == 200, r
        assert r.body == b""
        assert r.header("Content-Type") == "application/json; charset=utf-8"
    else:
        assert_token(r, RES, ua_client_id("a"))


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_any_method_checks_the_same(std, world, method):
    r = std.get(q(), [], source=world.ip["pa"], method=method, body=b"x")
    assert_json_error(r, 400, METADATA_MISSING)
    r = std.get(q(client_id=ua_client_id("b")), META, source=world.ip["pa"], method=method)
    assert_json_error(r, 404, NO_IDENTITY)


# ---------------------------------------------------------------------------------------------
# Flags: --metadata-header-required=false, --forceNamespaced
# ---------------------------------------------------------------------------------------------

def test_metadata_header_not_required(make_nmi, emulator, world):
    n = make_nmi(emulator, world.objects, STD_FLAGS + ["--metadata-header-required=false"])
    for headers in ([], [("Metadata", "True")], [("Metadata", "true"), ("Metadata", "false")]):
        r = n.get(q(), headers, source=world.ip["pa"])
        assert_token(r, RES, ua_client_id("a"))
    r = n.get(q(resource=None), [], source=world.ip["pa"])
    assert_json_error(r, 400, RESOURCE_MISSING)


def test_forwarded_refused_without_metadata_requirement(make_nmi, emulator, world):
    """IMDS refuses X-Forwarded-For whatever else is set; nmi's proxy does so for /metadata paths
    with --metadata-header-required=false too, so the token path must not accept it either."""
    n = make_nmi(emulator, world.objects, STD_FLAGS + ["--metadata-header-required=false"])
    r = n.get("/metadata/versions", [("X-Forwarded-For", "10.1.2.3")], source=world.ip["pa"])
    assert_json_error(r, 400, FORWARDED)
    r = n.get(q(), [("Metadata", "true"), ("X-Forwarded-For", "10.1.2.3")], source=world.ip["pa"])
    assert_json_error(r, 400, FORWARDED)


FORCE_NS = [
    ("same-namespace-annotated", "pns-same", 200, ua_client_id("a")),
    ("other-namespace-annotated", "pns-annotated", 404, NO_IDENTITY),
    ("other-namespace-plain", "pns-plain", 404, NO_IDENTITY),
    ("default-namespace", "pa", 200, ua_client_id("a")),
]


@pytest.fixture(scope="module")
def forced(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world.objects, STD_FLAGS + ["--forceNamespaced"])


@pytest.mark.parametrize("key,status,expect", [r[1:] for r in FORCE_NS],
                         ids=[r[0] for r in FORCE_NS])
def test_force_namespaced(forced, world, key, status, expect):
    r = forced.token(world.ip[key])
    if status == 200:
        assert_token(r, RES, expect)
    else:
        assert_json_error(r, status, expect)


def test_force_namespaced_env(make_nmi, emulator, world):
    n = make_nmi(emulator, world.objects, STD_FLAGS, env={"FORCENAMESPACED": "true"})
    assert_json_error(n.token(world.ip["pns-plain"]), 404, NO_IDENTITY)
    n2 = make_nmi(emulator, world.objects, STD_FLAGS, env={"FORCENAMESPACED": "True"})
    assert_token(n2.token(world.ip["pns-plain"]), RES, ua_client_id("h"))


# ---------------------------------------------------------------------------------------------
# Waiting for MIC: Created -> Assigned, stuck Created, client going away
# ---------------------------------------------------------------------------------------------

def _in_background(fn):
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    fut = ex.submit(fn)
    ex.shutdown(wait=False)
    return fut


@pytest.mark.parametrize("params", [{}, {"client_id": "a"}, {"msi_res_id": "a"}],
                         ids=["no-selector", "client-id", "msi-res-id"])
def test_created_answers_when_assigned(make_nmi, emulator, ips, params):
    ip = ips.next()
    a = ident("a")
    p = pod("pcreated", "default", ip, labels={"aadpodidbinding": "sel-a"})
    base = [p, a, binding("bind-a", "default", "id-a", "sel-a")]
    n = make_nmi(emulator, base + [assigned(p, a, status="Created")],
                 ["--retry-attempts-for-created=8", "--retry-attempts-for-assigned=2",
                  "--find-identity-retry-interval=1"])
    sel = {}
    if "client_id" in params:
        sel["client_id"] = ua_client_id("a")
    if "msi_res_id" in params:
        sel["msi_res_id"] = ua_resource_id("a")
    done = {}

    def call():
        r = n.token(ip, RES, timeout=20, **sel)
        done["t"] = time.monotonic()
        return r

    start = time.monotonic()
    fut = _in_background(call)
    wait_until(lambda: n.metric_value("nmi_requests_waiting") == 1, 5,
               message="the request to wait for its identity")
    assert not fut.done(), "answered while the identity was still Created: %r" % (
        fut.result() if fut.done() else None)
    t_rewrite = n.write_objects(base + [assigned(p, a, status="Assigned")])
    r = fut.result(timeout=15)
    assert_token(r, RES, ua_client_id("a"))
    latency = done["t"] - t_rewrite
    print("Created->Assigned: rewrite -> 200 in %.1f ms (request waited %.2f s)"
          % (latency * 1000, done["t"] - start))
    assert latency < 1.0, "took %.3f s after the rewrite" % latency


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-flag"])
def test_stuck_created(make_nmi, emulator, ips, retry_after):
    ip = ips.next()
    a = ident("a")
    p = pod("pstuck", "default", ip, labels={"aadpodidbinding": "sel-a"})
    flags = ["--retry-attempts-for-created=1", "--retry-attempts-for-assigned=1",
             "--find-identity-retry-interval=1"]
    if retry_after:
        flags.append("--set-retry-after-header")
    n = make_nmi(emulator, [p, a, binding("bind-a", "default", "id-a", "sel-a"),
                            assigned(p, a, status="Created")], flags)
    r = n.token(ip, timeout=15)
    if retry_after:
        assert_json_error(r, 503, "The identity is not assigned yet", "service_unavailable")
        assert r.header("Retry-After") == "20"
    else:
        assert_json_error(r, 404, NO_IDENTITY, "not_found")
        assert r.header("Retry-After") is None
    print("stuck Created (%s) answered after %.2f s" % ("503" if retry_after else "404",
                                                        r.elapsed))
    assert 1.8 <= r.elapsed < 3.0, "took %.2f s" % r.elapsed


def test_binding_pending_waits_then_404(make_nmi, emulator, ips):
    """A binding selects the pod but MIC made no assignment yet: wait created x interval (2 s)."""
    ip = ips.next()
    a = ident("a")
    p = pod("pbind", "default", ip, labels={"aadpodidbinding": "sel-a"})
    n = make_nmi(emulator, [p, a, binding("bind-a", "default", "id-a", "sel-a")],
                 ["--retry-attempts-for-created=2", "--retry-attempts-for-assigned=5",
                  "--find-identity-retry-interval=1"])
    r = n.token(ip, timeout=15)
    assert_json_error(r, 404, NO_IDENTITY)
    assert 1.8 <= r.elapsed < 3.0, "took %.2f s" % r.elapsed


def test_client_going_away_ends_the_wait(make_nmi, emulator, ips):
    ip = ips.next()
    a = ident("a")
    p = pod("pgone", "default", ip, labels={"aadpodidbinding": "sel-a"})
    n = make_nmi(emulator, [p, a, binding("bind-a", "default", "id-a", "sel-a"),
                            assigned(p, a, status="Created")],
                 ["--retry-attempts-for-created=30", "--find-identity-retry-interval=1"])
    offset = n.log_size()
    c = n.conn(source=ip)
    c.send(harness.build_request(harness.token_target(RES), META))
    wait_until(lambda: n.metric_value("nmi_requests_waiting") == 1, 5,
               message="the request to wait for its identity")
    c.close()
    t0 = time.monotonic()
    text = n.wait_for_log(r"client went away", offset, timeout=3)
    assert text is not None, n.log_since(offset)
    print("client went away noticed after %.1f ms" % ((time.monotonic() - t0) * 1000))
    assert n.metric_value("nmi_requests_waiting") == 0


def test_pod_appearing_while_waiting(make_nmi, emulator, ips):
    ip = ips.next()
    a = ident("a")
    p = pod("plate", "default", ip)
    n = make_nmi(emulator, [a], ["--pod-wait-timeout-ms=3000"])
    fut = _in_background(lambda: n.token(ip, timeout=10))
    wait_until(lambda: n.metric_value("nmi_requests_waiting") == 1, 3,
               message="the request to wait for its pod")
    t = n.write_objects([a, p, assigned(p, a)])
    r = fut.result(timeout=10)
    assert_token(r, RES, ua_client_id("a"))
    print("pod appeared: rewrite -> 200 in %.1f ms" % ((time.monotonic() - t) * 1000))


# ---------------------------------------------------------------------------------------------
# Managed mode
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def managed_world(ips):
    w = {"objects": [], "ip": {}}
    add = w["objects"].append

    def mkpod(key, ns, labels=None):
        w["ip"][key] = ips.next()
        add(pod(key, ns, w["ip"][key], labels=labels))

    for short in ("c", "d", "e"):
        add(ident(short, ns="mg"))
    add(ident("f", ns="mg2"))
    add(binding("b1", "mg", "id-c", "sel1"))
    add(binding("b1e", "mg", "id-e", "sel1"))
    add(binding("b-empty", "mg", "id-d", ""))
    add(binding("b-absent", "mg2", "id-f", None))
    add(binding("b-missing-identity", "mg", "id-nonexistent", "sel-missing"))
    add(binding("b-crossns", "mg", "id-f", "sel-cross"))
    mkpod("m1", "mg", {"aadpodidbinding": "sel1"})
    mkpod("m-nolabel", "mg")
    mkpod("m-emptylabel", "mg", {"aadpodidbinding": ""})
    mkpod("m-nolabel-mg2", "mg2")
    mkpod("m-otherns", "mg3", {"aadpodidbinding": "sel1"})
    mkpod("m-nobinding", "mg", {"aadpodidbinding": "sel-none"})
    mkpod("m-crossns", "mg", {"aadpodidbinding": "sel-cross"})
    mkpod("m-sel-case", "mg", {"aadpodidbinding": "SEL1"})
    return w


MANAGED = [
    ("selector-default", "m1", {}, 200, "c"),  # first by name: id-c < id-e
    ("selector-client-id", "m1", {"client_id": "e"}, 200, "e"),
    ("selector-msi-res-id", "m1", {"msi_res_id": "e"}, 200, "e"),
    ("selector-client-id-not-bound", "m1", {"client_id": "d"}, 404, NO_IDENTITY),
    ("empty-selector-no-label", "m-nolabel", {}, 200, "d"),
    ("empty-selector-empty-label", "m-emptylabel", {}, 200, "d"),
    ("absent-selector-no-label", "m-nolabel-mg2", {}, 200, "f"),
    ("binding-in-other-namespace", "m-otherns", {}, 404, NO_IDENTITY),
    ("no-binding-for-selector", "m-nobinding", {}, 404, NO_IDENTITY),
    ("selector-is-case-sensitive", "m-sel-case", {}, 404, NO_IDENTITY),
]


@pytest.fixture(scope="module")
def managed(emulator, managed_world, make_module_nmi):
    return make_module_nmi(emulator, managed_world["objects"],
                           ["--operation-mode=managed", "--forceNamespaced",
                            "--pod-wait-timeout-ms=300", "--retry-attempts-for-created=1",
                            "--find-identity-retry-interval=1"])


@pytest.mark.parametrize("key,params,status,expect", [r[1:] for r in MANAGED],
                         ids=[r[0] for r in MANAGED])
def test_managed_mode(managed, managed_world, key, params, status, expect):
    sel = {}
    if "client_id" in params:
        sel["client_id"] = ua_client_id(params["client_id"])
    if "msi_res_id" in params:
        sel["msi_res_id"] = ua_resource_id(params["msi_res_id"])
    r = managed.token(managed_world["ip"][key], RES, **sel)
    if status == 200:
        assert_token(r, RES, ua_client_id(expect))
    else:
        assert_json_error(r, status, expect)
        assert r.elapsed < 0.5, "took %.3f s" % r.elapsed


def test_managed_mode_binding_to_missing_identity_waits(managed, managed_world, ips):
    """A binding names an AzureIdentity that does not exist (yet): wait created x interval."""
    ip = ips.next()
    objs = list(managed_world["objects"]) + [pod("m-missing", "mg", ip,
                                                 labels={"aadpodidbinding": "sel-missing"})]
    managed.write_objects(objs)
    try:
        deadline = time.monotonic() + 3
        while True:  # the reload is asynchronous: wait until the pod is known
            r = managed.token(ip, timeout=10)
            if r.status != 500 or time.monotonic() > deadline:
                break
        assert_json_error(r, 404, NO_IDENTITY)
        assert 0.8 <= r.elapsed < 2.0, "took %.2f s" % r.elapsed
    finally:
        managed.write_objects(managed_world["objects"])


def test_managed_mode_binding_to_identity_of_other_namespace(managed, managed_world):
    """The binding in the pod's namespace names an identity that exists only elsewhere: managed
    mode never crosses namespaces; it waits for the identity (created x interval = 1 s), then 404."""
    r = managed.token(managed_world["ip"]["m-crossns"], timeout=10)
    assert_json_error(r, 404, NO_IDENTITY)
    assert 0.8 <= r.elapsed < 2.0, "took %.2f s" % r.elapsed


def test_managed_mode_requires_namespaced(emulator, world):
    n = harness.Nmi(emulator, world.objects, FILE_INDEX, ["--operation-mode=managed"])
    try:
        with pytest.raises(harness.NmiError) as e:
            n.start(ready_timeout=5)
        assert "exited with 2" in str(e.value)
        assert "managed mode needs --forceNamespaced" in n.log()
    finally:
        n.stop(check=False)
        shutil.rmtree(n.dir, ignore_errors=True)


def test_bodies_are_json_utf8(std, world):
    """Every answer of the token route, success or error, is JSON with the same content type."""
    rows = [
        std.get(q(), [], source=world.ip["pa"]),
        std.get(q(resource=None), META, source=world.ip["pa"]),
        std.token(world.ip["pa"], client_id=ua_client_id("b")),
        std.token(world.ip["pconflict-1"]),
        std.token(world.ip["pa"]),
    ]
    for r in rows:
        assert r.header("Content-Type") == "application/json; charset=utf-8", r
        assert r.header("Content-Length") == str(len(r.body)), r
        r.json()


def test_concurrent_mixed_requests(std, world):
    """Different pods in parallel each get their own answer."""
    keys = ["pa", "pmulti", "plegacy", "pmixed", "pns-plain", "plive", "ppending"] * 4
    expect = {"pa": "a", "pmulti": None, "plegacy": "d", "pmixed": "f", "pns-plain": "h",
              "plive": "a", "ppending": "a"}
    with concurrent.futures.ThreadPoolExecutor(max_workers=14) as ex:
        results = list(ex.map(lambda k: (k, std.token(world.ip[k])), keys))
    for k, r in results:
        body, claims = assert_token(r, RES)
        if expect[k]:
            assert claims["appid"] == ua_client_id(expect[k]), k
        else:
            assert claims["appid"] in (ua_client_id("b"), ua_client_id("c"))
