"""The token cache (single flight, hits, refresh ahead, minimum lifetime, per-pod limits, no
cross-pod leaks) and how fast waiting requests answer when their data arrives. Pods: 127.0.6.x."""
import concurrent.futures
import statistics
import threading
import time
import uuid

import pytest

from nmi_pytest import harness
from nmi_pytest.waits import wait_until
from conftest import ident, ua_client_id, ua_resource_id
from nmi_pytest.harness import assert_json_error, assert_token, assigned, binding, pod

FILE_INDEX = 6


def unique_resource(tag):
    return "https://%s.example/%s" % (tag, uuid.uuid4().hex[:8])



@pytest.fixture(scope="module")
def world(ips):
    w = {"ip": {}, "objects": []}
    for key, short in (("a", "a"), ("b", "b"), ("c", "c"), ("a2", "a")):
        ip = ips.next()
        w["ip"][key] = ip
        i = ident(short)
        p = pod("pod-" + key, "default", ip)
        w["objects"] += [p, assigned(p, i)]
    for short in "abc":
        w["objects"].append(ident(short))
    return w


@pytest.fixture(scope="module")
def nmi(emulator, world, make_module_nmi):
    return make_module_nmi(emulator, world["objects"],
                           ["--pod-wait-timeout-ms=300", "--per-pod-miss-burst=100",
                            "--per-pod-miss-rate=100"])


def token_calls(emulator, since, resource):
    return [e for e in harness.imds_token_calls(emulator, since)
            if e["query"].get("resource") == [resource]]


def test_concurrent_misses_make_one_upstream_call(nmi, emulator, world):
    res = unique_resource("flight")
    since = harness.last_seq(emulator)
    emulator.set_fault(target="imds", latency_ms=700, count=1)
    try:
        barrier = threading.Barrier(50)

        def one(_):
            barrier.wait()
            return nmi.token(world["ip"]["a"], res, timeout=20)

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as ex:
            results = list(ex.map(one, range(50)))
    finally:
        emulator.clear_faults()
    tokens = set()
    for r in results:
        body, _ = assert_token(r, res, ua_client_id("a"))
        tokens.add(body["access_token"])
    assert len(tokens) == 1
    calls = token_calls(emulator, since, res)
    assert len(calls) == 1, calls
    coalesced = nmi.metric_value("nmi_token_cache_requests_total", result="coalesced")
    assert coalesced and coalesced >= 1


def test_second_request_is_a_cache_hit(nmi, emulator, world):
    res = unique_resource("hit")
    hits_before = nmi.metric_value("nmi_token_cache_requests_total", result="hit") or 0
    misses_before = nmi.metric_value("nmi_token_cache_requests_total", result="miss") or 0
    since = harness.last_seq(emulator)
    b1, _ = assert_token(nmi.token(world["ip"]["a"], res), res, ua_client_id("a"))
    b2, _ = assert_token(nmi.token(world["ip"]["a"], res), res, ua_client_id("a"))
    # Another pod bound to the same identity shares the entry.
    b3, _ = assert_token(nmi.token(world["ip"]["a2"], res), res, ua_client_id("a"))
    assert b1["access_token"] == b2["access_token"] == b3["access_token"]
    assert len(token_calls(emulator, since, res)) == 1
    assert nmi.metric_value("nmi_token_cache_requests_total", result="hit") == hits_before + 2
    assert nmi.metric_value("nmi_token_cache_requests_total", result="miss") == misses_before + 1


def test_no_pod_gets_an_entry_it_was_not_granted(nmi, emulator, world):
    """Pods bound to different identities ask for the same resources, concurrently and in
    every order: each gets its own identity."""
    resources = [unique_resource("iso") for _ in range(4)]
    jobs = []
    for i in range(60):
        key = "abc"[i % 3]
        jobs.append((key, resources[(i // 3) % 4]))

    def one(job):
        key, res = job
        return key, res, nmi.token(world["ip"][key], res, timeout=20)

    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as ex:
        results = list(ex.map(one, jobs))
    for key, res, r in results:
        assert_token(r, res, ua_client_id(key))
    # And sequentially, after the cache is warm, in reverse order.
    for key, res in reversed(jobs[:12]):
        assert_token(nmi.token(world["ip"][key], res), res, ua_client_id(key))


def test_client_id_of_other_pod_not_served_from_cache(nmi, world):
    res = unique_resource("steal")
    assert_token(nmi.token(world["ip"]["b"], res), res, ua_client_id("b"))
    r = nmi.token(world["ip"]["a"], res, client_id=ua_client_id("b"))
    assert_json_error(r, 404)
    r = nmi.token(world["ip"]["a"], res, msi_res_id=ua_resource_id("b"))
    assert_json_error(r, 404)


# ---------------------------------------------------------------------------------------------
# Refresh ahead and minimum lifetime (a short token lifetime)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def short_lived(make_emulator, make_nmi, world):
    """short_lived(lifetime, refresh_ahead): an emulator issuing tokens that live `lifetime` s
    and an nmi refreshing `refresh_ahead` s before expiry, never serving < 10 s."""
    def make(lifetime, refresh_ahead):
        emu = make_emulator(token_lifetime_sec=lifetime)
        n = make_nmi(emu, world["objects"], ["--token-refresh-ahead-sec=%d" % refresh_ahead,
                                             "--token-min-lifetime-sec=10",
                                             "--token-retry-budget-sec=2"])
        return emu, n
    return make


def test_refresh_ahead_in_background(short_lived, world):
    """Tokens live 20 s, refresh 17 s ahead: from +3 s to +10 s a hit is served from the cache
    and starts a background refresh."""
    emu, n = short_lived(20, 17)
    res = unique_resource("refresh")
    first, _ = assert_token(n.token(world["ip"]["a"], res), res, ua_client_id("a"))
    assert 18 <= int(first["expires_in"]) <= 20
    seen = [first]

    def calls(completed=False):
        return [e for e in emu.log("imds") if e["query"].get("resource") == [res]
                and (e["completed"] or not completed)]

    # Inside the refresh window (less than 17 s left) but more than 10 s left, a hit is served
    # from the cache and starts a refresh in the background: hits until one has started it.
    def refresh_started():
        refreshed_before = len(calls(completed=True)) == 2
        body, _ = assert_token(n.token(world["ip"]["a"], res), res, ua_client_id("a"))
        seen.append(body)
        # The cached token, unless a refresh had completed before this hit was sent (a hit never
        # waits for the refresh it starts).
        assert body["access_token"] == first["access_token"] or refreshed_before, calls()
        return body if len(calls()) >= 2 else None
    wait_until(refresh_started, timeout=10, interval=0.1,
               message="a hit to start a background refresh")
    wait_until(lambda: len(calls(completed=True)) == 2, timeout=3,
               message="the background refresh")
    assert len(calls()) == 2, calls()
    # The emulator logs the call once its answer is written; nmi stores the new token a moment
    # later. Until then the cached token is still the one served (never a wait, never a miss).
    def refreshed():
        body, _ = assert_token(n.token(world["ip"]["a"], res), res, ua_client_id("a"))
        seen.append(body)
        return body if body["access_token"] != first["access_token"] else None
    third = wait_until(refreshed, timeout=2, message="the refreshed token to be served")
    assert len(calls()) == 2
    assert int(third["expires_on"]) > int(first["expires_on"])
    for b in seen:
        assert int(b["expires_in"]) >= 10, b
    refreshes = n.metric_value("nmi_token_cache_requests_total", result="refresh")
    assert refreshes and refreshes >= 1


def test_never_serves_less_than_min_lifetime(short_lived, world):
    """Tokens live 15 s, refresh 12 s ahead, and every refresh fails: the cached token is served
    while more than 10 s are left, never after."""
    emu, n = short_lived(15, 12)
    res = unique_resource("minlife")
    first, _ = assert_token(n.token(world["ip"]["a"], res), res, ua_client_id("a"))
    served = [first]

    def cached_or_refused():
        """The cached token (with 10 s left or more), or the refusal."""
        r = n.token(world["ip"]["a"], res)
        if r.status != 200:
            return r
        body, _ = assert_token(r, res, ua_client_id("a"))
        assert body["access_token"] == first["access_token"]
        assert int(body["expires_in"]) >= 10, "served a token with %s s left" % body["expires_in"]
        served.append(body)
        return None

    # From now on IMDS refuses: the background refresh fails, the cached token ages.
    emu.set_fault(target="imds", status=400)
    try:
        # Inside the refresh window (less than 12 s left): still served, and the refresh fails.
        wait_until(lambda: cached_or_refused() is None and int(served[-1]["expires_in"]) < 12,
                   timeout=10, interval=0.1, message="a hit inside the refresh window")
        wait_until(lambda: [e for e in emu.log("imds") if e["query"].get("resource") == [res]
                            and e["completed"] and e["status"] == 400], timeout=5,
                   message="the failed refresh")
        assert cached_or_refused() is None, "not served with more than 10 s left"
        # Served on while more than 10 s are left, never after: refused from then on.
        r = wait_until(cached_or_refused, timeout=10, interval=0.1,
                       message="the token to be refused")
        assert_json_error(r, 403)
    finally:
        emu.clear_faults()
    body, _ = assert_token(n.token(world["ip"]["a"], res), res, ua_client_id("a"))
    assert body["access_token"] != first["access_token"]
    assert int(body["expires_in"]) >= 13


# ---------------------------------------------------------------------------------------------

def _measure(n, ip, write, timeout=10):
    done = {}

    def call():
        r = n.token(ip, "https://wait.example/", timeout=timeout)
        done["t"] = time.monotonic()
        return r

    waiting = n.metric_value("nmi_requests_waiting") or 0
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    fut = ex.submit(call)
    wait_until(lambda: (n.metric_value("nmi_requests_waiting") or 0) > waiting, timeout,
               message="the request to wait")
    assert not fut.done(), fut.result()
    t = write()
    r = fut.result(timeout=timeout)
    ex.shutdown()
    return r, done["t"] - t


def test_wait_latency_pod_appears(make_nmi, emulator, ips):
    a = ident("a")
    objs = [a]
    n = make_nmi(emulator, objs, ["--pod-wait-timeout-ms=5000"])
    lat = []
    for i in range(5):
        ip = ips.next()
        p = pod("late-%d" % i, "default", ip)
        objs = objs + [p, assigned(p, a)]
        r, dt = _measure(n, ip, lambda o=objs: n.write_objects(o))
        assert_token(r, "https://wait.example/", ua_client_id("a"))
        lat.append(dt)
    print("pod appears -> answer (ms): %s; median %.1f"
          % (["%.1f" % (x * 1000) for x in lat], statistics.median(lat) * 1000))
    assert max(lat) < 0.5


def test_wait_latency_identity_assigned(make_nmi, emulator, ips):
    a = ident("a")
    pods = []
    objs = [a, binding("bind-a", "default", "id-a", "sel")]
    for i in range(4):
        p = pod("bound-%d" % i, "default", ips.next(), labels={"aadpodidbinding": "sel"})
        pods.append(p)
        objs.append(p)
    n = make_nmi(emulator, objs, ["--retry-attempts-for-created=10",
                                  "--find-identity-retry-interval=1"])
    lat = []
    for i, p in enumerate(pods):
        status = "Created" if i % 2 else None
        if status:
            objs = objs + [assigned(p, a, status="Created")]
            n.load_objects(objs)
        objs = [o for o in objs if not (o["kind"] == "AzureAssignedIdentity"
                                        and o["spec"]["pod"] == p["metadata"]["name"])]
        objs = objs + [assigned(p, a)]
        r, dt = _measure(n, p["status"]["podIP"], lambda o=objs: n.write_objects(o))
        assert_token(r, "https://wait.example/", ua_client_id("a"))
        lat.append(dt)
    print("assignment appears -> answer (ms): %s; median %.1f"
          % (["%.1f" % (x * 1000) for x in lat], statistics.median(lat) * 1000))
    assert max(lat) < 0.5
