"""Each token provider end to end through nmi and the emulators: IMDS, Azure AD with a secret or
a certificate, ADFS; retries, budgets, cancellation and HTTPS_PROXY. Pods: 127.0.5.x."""
import datetime
import time
import uuid

import pytest

from nmi_pytest import harness
from nmi_pytest.waits import wait_until
from conftest import (ADFS_ID, ADFS_SECRET, NOT_ON_VM_ID, SP_CERT_ID, SP_SECRET, SP_SECRET_ID,
                      ua_client_id, ua_resource_id)
from nmi_pytest.harness import (META, TENANT, assert_json_error, assert_token, assigned, azure_identity,
                     pod, secret)

FILE_INDEX = 5
REFUSED = "The token request for this identity was refused"
UNAVAILABLE = "A token could not be obtained at this time"


def unique_resource(tag):
    return "https://%s.example/%s" % (tag, uuid.uuid4().hex[:8])


def parse_time(s):
    # RFC3339Nano with up to 9 fractional digits.
    head, _, frac = s.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


@pytest.fixture(scope="module")
def world(ips, pki, emulator):
    """Pods, each bound (Assigned) to one identity of another kind."""
    w = {"ip": {}, "objects": []}
    add = w["objects"].append
    ad = emulator.aad_url + "/"
    idents = {
        "mi": azure_identity("mi", "default", ua_client_id("a"), resource_id=ua_resource_id("a")),
        "mi-resid-only": azure_identity("mi-resid-only", "default", "",
                                        resource_id=ua_resource_id("c")),
        "mi-notvm": azure_identity("mi-notvm", "default", NOT_ON_VM_ID),
        "sp-secret": azure_identity("sp-secret", "default", SP_SECRET_ID, type=1,
                                    tenant_id=TENANT, ad_endpoint=ad,
                                    secret_ref=("default", "sp-secret")),
        "sp-secret-keys": azure_identity("sp-secret-keys", "default", SP_SECRET_ID, type=1,
                                         tenant_id=TENANT, ad_endpoint=ad,
                                         secret_ref=("creds", "sp-secret-keys")),
        "sp-secret-onekey": azure_identity("sp-secret-onekey", "default", SP_SECRET_ID, type=1,
                                           tenant_id=TENANT, ad_endpoint=ad,
                                           secret_ref=("creds", "sp-secret-onekey")),
        "sp-wrong": azure_identity("sp-wrong", "default", SP_SECRET_ID, type=1,
                                   tenant_id=TENANT, ad_endpoint=ad,
                                   secret_ref=("default", "sp-wrong")),
        "sp-nosecret": azure_identity("sp-nosecret", "default", SP_SECRET_ID, type=1,
                                      tenant_id=TENANT, ad_endpoint=ad,
                                      secret_ref=("default", "does-not-exist")),
        "sp-cert": azure_identity("sp-cert", "default", SP_CERT_ID, type=2, tenant_id=TENANT,
                                  ad_endpoint=ad, secret_ref=("default", "sp-cert")),
        "sp-cert-badpw": azure_identity("sp-cert-badpw", "default", SP_CERT_ID, type=2,
                                        tenant_id=TENANT, ad_endpoint=ad,
                                        secret_ref=("default", "sp-cert-badpw")),
        "adfs": azure_identity("adfs", "default", ADFS_ID, type=1, tenant_id="adfs",
                               ad_endpoint=ad, secret_ref=("default", "adfs")),
        "adfs-noslash": azure_identity("adfs-noslash", "default", ADFS_ID, type=1,
                                       tenant_id="adfs", ad_endpoint=emulator.aad_url + "/dropped",
                                       secret_ref=("default", "adfs")),
    }
    add(secret("sp-secret", "default", {"clientSecret": SP_SECRET}))
    add(secret("sp-secret-keys", "creds", {"other": "x", "clientSecret": SP_SECRET, "z": "y"}))
    add(secret("sp-secret-onekey", "creds", string_data={"anything": SP_SECRET}))
    add(secret("sp-wrong", "default", {"clientSecret": "not-the-secret"}))
    add(secret("sp-cert", "default", {"certificate": pki["pfx"], "password": pki["password"]}))
    add(secret("sp-cert-badpw", "default", {"certificate": pki["pfx"], "password": "wrong"}))
    add(secret("adfs", "default", {"clientSecret": ADFS_SECRET}))
    for key, ident in idents.items():
        add(ident)
        ip = ips.next()
        w["ip"][key] = ip
        p = pod("pod-" + key, "default", ip)
        add(p)
        add(assigned(p, ident))
    w["spare_ips"] = [ips.next() for _ in range(6)]
    return w


@pytest.fixture(scope="module")
def nmi(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world["objects"],
                           ["--token-retry-budget-sec=10", "--pod-wait-timeout-ms=300"])


def entries_since(emulator, since, listener=None):
    return [e for e in emulator.log(listener) if e["seq"] > since]


# ---------------------------------------------------------------------------------------------
# Providers
# ---------------------------------------------------------------------------------------------

def test_user_assigned_managed_identity(nmi, emulator, world):
    res = unique_resource("mi")
    since = harness.last_seq(emulator)
    assert_token(nmi.token(world["ip"]["mi"], res), res, ua_client_id("a"))
    calls = entries_since(emulator, since)
    assert len(calls) == 1, calls
    c = calls[0]
    assert c["listener"] == "imds" and c["method"] == "GET"
    assert c["path"] == "/metadata/identity/oauth2/token"
    assert c["query"] == {"api-version": ["2018-02-01"], "client_id": [ua_client_id("a")],
                          "resource": [res]}
    assert c["headers"]["Metadata"] == ["true"]
    assert c["headers"]["User-Agent"].startswith("nmi/")
    assert c["status"] == 200


def test_managed_identity_by_resource_id_only(nmi, emulator, world):
    """An AzureIdentity with only a resourceID: nmi asks IMDS for exactly that identity."""
    res = unique_resource("mires")
    since = harness.last_seq(emulator)
    assert_token(nmi.token(world["ip"]["mi-resid-only"], res), res, ua_client_id("c"))
    (c,) = entries_since(emulator, since)
    assert c["query"]["msi_res_id"] == [ua_resource_id("c")]
    assert "client_id" not in c["query"]


def test_managed_identity_not_on_vm(nmi, emulator, world):
    r = nmi.token(world["ip"]["mi-notvm"], unique_resource("notvm"))
    assert_json_error(r, 403, REFUSED, "forbidden")


SP_ROWS = [
    ("secret", "sp-secret", SP_SECRET_ID, "/%s/oauth2/token" % TENANT),
    ("secret-several-keys", "sp-secret-keys", SP_SECRET_ID, "/%s/oauth2/token" % TENANT),
    ("secret-one-other-key", "sp-secret-onekey", SP_SECRET_ID, "/%s/oauth2/token" % TENANT),
    ("adfs", "adfs", ADFS_ID, "/adfs/oauth2/token"),
    ("adfs-endpoint-without-slash", "adfs-noslash", ADFS_ID, "/adfs/oauth2/token"),
]


@pytest.mark.parametrize("key,client_id,path", [r[1:] for r in SP_ROWS],
                         ids=[r[0] for r in SP_ROWS])
def test_service_principal_secret(nmi, emulator, world, key, client_id, path):
    res = unique_resource(key)
    since = harness.last_seq(emulator)
    r = nmi.token(world["ip"][key], res)
    # ADFS answers token_type "bearer"; nmi answers IMDS's "Bearer" whatever the upstream said.
    body, claims = assert_token(r, res, token_type="Bearer")
    assert claims["appid"] == client_id
    assert body["client_id"] == client_id
    calls = entries_since(emulator, since)
    assert len(calls) == 1, calls
    c = calls[0]
    assert c["listener"] == "aad" and c["method"] == "POST"
    assert c["path"] == path
    assert c["query"].get("api-version") == ["1.0"]
    assert c["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert c["headers"]["User-Agent"].startswith("nmi/")
    assert c["form"]["client_id"] == [client_id]
    assert c["form"]["resource"] == [res]
    assert c["form"]["grant_type"] == ["client_credentials"]
    assert c["secret_present"] is True
    assert not c.get("assertion_present")
    assert c["status"] == 200


SP_FAIL = [
    ("wrong-secret", "sp-wrong", 403, REFUSED),
    ("secret-missing", "sp-nosecret", 503, UNAVAILABLE),
    ("pfx-wrong-password", "sp-cert-badpw", 503, UNAVAILABLE),
]


@pytest.mark.parametrize("key,status,desc", [r[1:] for r in SP_FAIL],
                         ids=[r[0] for r in SP_FAIL])
def test_service_principal_failures(nmi, emulator, world, key, status, desc):
    since = harness.last_seq(emulator)
    r = nmi.token(world["ip"][key], unique_resource(key))
    assert_json_error(r, status, desc)
    calls = entries_since(emulator, since)
    if key == "sp-wrong":
        assert [(c["listener"], c["status"]) for c in calls] == [("aad", 401)], calls
    else:
        assert calls == []  # nothing sent without a usable credential


def test_service_principal_certificate(nmi, emulator, world, pki):
    import base64
    import hashlib
    res = unique_resource("cert")
    since = harness.last_seq(emulator)
    r = nmi.token(world["ip"]["sp-cert"], res)
    body, claims = assert_token(r, res, SP_CERT_ID)
    (c,) = entries_since(emulator, since)
    assert c["listener"] == "aad" and c["path"] == "/%s/oauth2/token" % TENANT
    assert c["status"] == 200, c
    assert c["assertion_present"] is True
    assert not c.get("secret_present")
    assert c["form"]["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    assert c["form"]["client_id"] == [SP_CERT_ID]
    assert c["form"]["grant_type"] == ["client_credentials"]
    head, cl = c["assertion"]["header"], c["assertion"]["claims"]
    assert head["alg"] == "RS256"
    thumb = base64.urlsafe_b64encode(hashlib.sha1(pki["der"]).digest()).decode()
    assert head["x5t"].rstrip("=") == thumb.rstrip("=")
    token_url = "https://%s/%s/oauth2/token" % (emulator.aad_addr, TENANT)
    assert cl["aud"] in (token_url, token_url + "?api-version=1.0")
    assert cl["iss"] == cl["sub"] == SP_CERT_ID
    assert cl["jti"]
    now = time.time()
    assert cl["nbf"] <= now + 5 and cl["exp"] > now


# ---------------------------------------------------------------------------------------------
# Retries and budget
# ---------------------------------------------------------------------------------------------

def _attempts(emulator, since, res):
    calls = [e for e in entries_since(emulator, since) if e["query"].get("resource") == [res]
             or (e.get("form") or {}).get("resource") == [res]]
    return calls, [parse_time(e["time"]) for e in calls]


RETRY_ROWS = [
    # (id, fault, expected attempts, minimal gaps between attempts, maximal gaps)
    ("429-retry-after", {"status": 429, "count": 1, "retry_after": "2"}, 2, [1.9], [3.0]),
    ("500-twice", {"status": 500, "count": 2}, 3, [0.35, 0.75], [0.8, 1.5]),
    ("503-once", {"status": 503, "count": 1}, 2, [0.35], [0.8]),
    ("404-once", {"status": 404, "count": 1}, 2, [0.35], [0.8]),
]


@pytest.mark.parametrize("fault,attempts,min_gaps,max_gaps", [r[1:] for r in RETRY_ROWS],
                         ids=[r[0] for r in RETRY_ROWS])
def test_imds_retries(nmi, emulator, world, fault, attempts, min_gaps, max_gaps):
    res = unique_resource("retry")
    emulator.clear_faults()
    since = harness.last_seq(emulator)
    emulator.set_fault(target="imds", **fault)
    try:
        r = nmi.token(world["ip"]["mi"], res, timeout=20)
    finally:
        emulator.clear_faults()
    assert_token(r, res, ua_client_id("a"))
    calls, times = _attempts(emulator, since, res)
    assert [c["status"] for c in calls] == [fault["status"]] * (attempts - 1) + [200], calls
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("%s: attempts at +%s s" % (fault, ["%.2f" % (t - times[0]) for t in times]))
    for g, lo, hi in zip(gaps, min_gaps, max_gaps):
        assert lo <= g <= hi, gaps


def test_imds_410_for_seconds(nmi, emulator, world):
    res = unique_resource("gone")
    emulator.clear_faults()
    since = harness.last_seq(emulator)
    emulator.set_fault(target="imds", status=410, for_seconds=3)
    try:
        r = nmi.token(world["ip"]["mi"], res, timeout=20)
    finally:
        emulator.clear_faults()
    assert_token(r, res, ua_client_id("a"))
    calls, times = _attempts(emulator, since, res)
    statuses = [c["status"] for c in calls]
    print("410 for 3 s: statuses %s at +%s s" % (statuses, ["%.2f" % (t - times[0])
                                                            for t in times]))
    assert statuses[-1] == 200 and set(statuses[:-1]) == {410} and len(statuses) >= 3
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Exponential backoff: every gap at least as long as 0.8 x the one before.
    for a, b in zip(gaps, gaps[1:]):
        assert b >= 0.8 * a * 1.5, gaps
    assert times[-1] - times[0] >= 2.9


def test_aad_retry(nmi, emulator, world):
    res = unique_resource("aadretry")
    emulator.clear_faults()
    since = harness.last_seq(emulator)
    emulator.set_fault(target="aad", status=503, count=1)
    try:
        r = nmi.token(world["ip"]["sp-secret"], res, timeout=20)
    finally:
        emulator.clear_faults()
    assert_token(r, res, SP_SECRET_ID)
    calls, _ = _attempts(emulator, since, res)
    assert [c["status"] for c in calls] == [503, 200], calls


def test_budget_spent_is_503(make_nmi, emulator, world):
    n = make_nmi(emulator, world["objects"], ["--token-retry-budget-sec=2"])
    res = unique_resource("budget")
    emulator.clear_faults()
    since = harness.last_seq(emulator)
    emulator.set_fault(target="imds", status=500)
    try:
        r = n.token(world["ip"]["mi"], res, timeout=20)
    finally:
        emulator.clear_faults()
    assert_json_error(r, 503, UNAVAILABLE, "service_unavailable")
    calls, times = _attempts(emulator, since, res)
    print("permanent 500, budget 2 s: 503 after %.2f s, %d attempts" % (r.elapsed, len(calls)))
    assert 1.0 <= r.elapsed <= 2.6, r.elapsed
    assert len(calls) >= 2 and all(c["status"] == 500 for c in calls)


def test_non_retryable_status_is_not_retried(nmi, emulator, world):
    res = unique_resource("noretry")
    emulator.clear_faults()
    since = harness.last_seq(emulator)
    emulator.set_fault(target="imds", status=403, count=1)
    try:
        r = nmi.token(world["ip"]["mi"], res)
    finally:
        emulator.clear_faults()
    assert_json_error(r, 403, REFUSED)
    calls, _ = _attempts(emulator, since, res)
    assert [c["status"] for c in calls] == [403]


# ---------------------------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------------------------

def _hung(emulator, since, res):
    return [e for e in entries_since(emulator, since) if e["query"].get("resource") == [res]]


def test_disconnect_abandons_upstream_call(nmi, emulator, world):
    res = unique_resource("hang")
    emulator.clear_faults()
    since = harness.last_seq(emulator)
    emulator.set_fault(target="imds", hang=True, count=1)
    try:
        c = nmi.conn(source=world["ip"]["mi"])
        c.send(harness.build_request(harness.token_target(res), META))
        hung = emulator.wait_for_log(lambda e: e["seq"] > since
                                     and e["query"].get("resource") == [res], timeout=5)
        assert hung and not hung[0]["completed"], hung
        c.close()
        t0 = time.monotonic()
        entries = wait_until(lambda: (lambda e: e if e and e[0]["completed"] else None)(
            _hung(emulator, since, res)), 3, message="the upstream call to be abandoned")
        print("upstream call abandoned %.0f ms after the client went away"
              % ((time.monotonic() - t0) * 1000))
        assert entries[0]["error"] == "hang: client went away", entries
        # And it was not retried on the pod's behalf (a negative check: nothing for 1 s).
        time.sleep(1.0)
        assert len(_hung(emulator, since, res)) == 1
    finally:
        emulator.clear_faults()


def test_upstream_call_kept_while_another_waiter_remains(nmi, emulator, world):
    res = unique_resource("hang2")
    emulator.clear_faults()
    since = harness.last_seq(emulator)
    emulator.set_fault(target="imds", hang=True, count=1)
    try:
        c1 = nmi.conn(source=world["ip"]["mi"])
        c2 = nmi.conn(source=world["ip"]["mi"])
        c1.send(harness.build_request(harness.token_target(res), META))
        assert emulator.wait_for_log(lambda e: e["seq"] > since
                                     and e["query"].get("resource") == [res], timeout=5)
        coalesced = nmi.metric_value("nmi_token_cache_requests_total", result="coalesced") or 0
        c2.send(harness.build_request(harness.token_target(res), META))
        wait_until(lambda: (nmi.metric_value("nmi_token_cache_requests_total",
                                             result="coalesced") or 0) > coalesced, 3,
                   message="the second request to join the call in flight")
        c1.close()
        # A negative check: for 1 s after the first client went away the call stays open.
        time.sleep(1.0)
        entries = _hung(emulator, since, res)
        assert len(entries) == 1 and not entries[0]["completed"], entries
        c2.close()
        wait_until(lambda: _hung(emulator, since, res)[0]["completed"], 3,
                   message="the upstream call to be abandoned")
    finally:
        emulator.clear_faults()


# ---------------------------------------------------------------------------------------------
# HTTPS_PROXY
# ---------------------------------------------------------------------------------------------

PROXY_ROWS = [
    ("https-proxy", {"HTTPS_PROXY": "http://{proxy}"}, True),
    ("https-proxy-lowercase", {"https_proxy": "http://{proxy}"}, True),
    ("no-proxy-ip", {"HTTPS_PROXY": "http://{proxy}", "NO_PROXY": "127.0.0.1"}, False),
    ("no-proxy-list", {"HTTPS_PROXY": "http://{proxy}", "NO_PROXY": "example.com, 127.0.0.1"},
     False),
    ("no-proxy-star", {"HTTPS_PROXY": "http://{proxy}", "NO_PROXY": "*"}, False),
    ("empty-https-proxy", {"HTTPS_PROXY": ""}, False),
    ("http-proxy-only", {"HTTP_PROXY": "http://{proxy}"}, False),
]


@pytest.mark.parametrize("env,through_proxy", [r[1:] for r in PROXY_ROWS],
                         ids=[r[0] for r in PROXY_ROWS])
def test_https_proxy(make_nmi, emulator, world, env, through_proxy):
    env = {k: v.format(proxy=emulator.proxy_addr) for k, v in env.items()}
    n = make_nmi(emulator, world["objects"], [], env=env)
    since = harness.last_seq(emulator)
    res = unique_resource("proxy")
    assert_token(n.token(world["ip"]["sp-secret"], res), res, SP_SECRET_ID)
    res2 = unique_resource("proxymi")
    assert_token(n.token(world["ip"]["mi"], res2), res2, ua_client_id("a"))
    proxied = entries_since(emulator, since, "proxy")
    aad = entries_since(emulator, since, "aad")
    assert len(aad) == 1 and aad[0]["status"] == 200
    if through_proxy:
        assert [(e["method"], e["upstream"]) for e in proxied] == [("CONNECT",
                                                                     emulator.aad_addr)], proxied
    else:
        assert proxied == [], proxied
    # IMDS is never reached through the proxy.
    imds = entries_since(emulator, since, "imds")
    assert len(imds) == 1 and imds[0]["query"]["resource"] == [res2]
