"""End to end on a simulated node (tests/lib/devenv.py): the real API server, nmi intercepting
pods' metadata traffic with iptables, the IMDS and Azure AD emulators behind the node's uplink,
and real Azure SDK clients running inside pod network namespaces with no endpoint override at all
(no AZURE_POD_IDENTITY_AUTHORITY_HOST, MSI_ENDPOINT, IDENTITY_ENDPOINT: devenv scrubs them), so
every request they make goes to 169.254.169.254 and through the DNAT to nmi.

Shown: each client gets a token whose claims name its own pod's identity, for user-assigned
identities and a service principal, including selection by client_id; DefaultAzureCredential's
chain settles on managed identity; a pod asking for another pod's identity (SDK or raw bytes,
any spelling) never gets it; a pod with no identity gets a clear error quickly; the node's own
traffic is not intercepted; nmi runs as the DaemonSet does (root, bounding set NET_ADMIN+NET_RAW,
/proc/sys read-only); the guard refuses the root network namespace; `down` leaves nothing.

The SDK clients are helper programs under tests/e2e/clients/ (one JSON line with the decoded
claims, never the token); this file runs each SDK's cases concurrently across pods.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import pytest

import devenv
from nmi_pytest import harness
from conftest import NS, SP, UA

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "clients"))

import clients  # noqa: E402  (tests/e2e/clients/clients.py: the SDK clients' manifest)

RESOURCE = "https://vault.azure.net"
ARM = "https://management.azure.com/"


def run_client(node, manifest, sdk, pod, credential, client_id="", resource=RESOURCE,
               timeout=240):
    """One SDK client in `pod`'s network namespace (devenv scrubs endpoint overrides from its
    environment); its JSON line as a dict, plus "exit" and "wall_s"."""
    argv = clients.command(sdk, credential, resource, client_id or None, manifest=manifest)
    t0 = time.monotonic()
    r = node.exec_pod(NS + "/" + pod, argv, timeout=timeout)
    elapsed = time.monotonic() - t0
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert lines, "%s client printed no JSON line (exit %d):\n%s%s" % (sdk, r.returncode,
                                                                      r.stdout, r.stderr)
    out = json.loads(lines[-1])
    out["wall_s"] = round(elapsed, 2)
    out["exit"] = r.returncode
    return out


def expect_identity(out, client_id, resource, resource_id=None):
    assert out["ok"] and out["exit"] == 0, out
    c = out["claims"]
    assert c["appid"] == client_id, (c, client_id)
    assert c["aud"] == resource, c
    assert c["tid"] == devenv.TENANT, c
    if resource_id is not None:
        assert c.get("xms_mirid") == resource_id, c


# (pod, credential, client_id, resource, expected client id, expected xms_mirid or None)
CASES = [
    ("app-ua1", "managed", "", RESOURCE, UA["ua1"]["client_id"], UA["ua1"]["resource_id"]),
    ("app-ua1", "default", "", ARM, UA["ua1"]["client_id"], UA["ua1"]["resource_id"]),
    ("app-multi", "managed", UA["m2"]["client_id"], RESOURCE, UA["m2"]["client_id"],
     UA["m2"]["resource_id"]),
    ("app-multi", "default", UA["m1"]["client_id"], ARM, UA["m1"]["client_id"],
     UA["m1"]["resource_id"]),
    ("app-sp", "managed", SP["client_id"], RESOURCE, SP["client_id"], None),
    ("app-sp", "default", "", ARM, SP["client_id"], None),
]
# app-ua1 asking for app-multi's identity m1: nmi answers 404 (no such identity for this pod),
# which every SDK retries for its whole 404 budget (Python ~25 s, Go ~70 s), so one SDK shows it.
FOREIGN = ("app-ua1", "managed", UA["m1"]["client_id"], RESOURCE)


@pytest.fixture(scope="session")
def sdk_runs(node):
    """Every SDK's cases, started at once on a pool of 4 (JVM and interpreter start-up overlap);
    each test below waits for its own SDK's results."""
    manifest = clients.build(clients.SDKS)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    seq = max((e["seq"] for e in node.emulator_log()), default=0)
    runs = {"seq": seq, "foreign": pool.submit(run_client, node, manifest, "python", *FOREIGN)}
    for sdk in clients.SDKS:
        runs[sdk] = [(case, pool.submit(run_client, node, manifest, sdk, *case[:4]))
                     for case in CASES]
    try:
        yield runs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("sdk", clients.SDKS)
def test_sdk_clients_get_their_own_pods_identity_through_interception(node, sdk_runs, sdk):
    results = [(case, f.result()) for case, f in sdk_runs[sdk]]
    version = results[0][1].get("version")
    print("MEASURE %s %s client wall times: %s s" % (sdk, version, ", ".join(
        "%s/%s %.1f" % (case[0], case[1], out["wall_s"]) for case, out in results)), flush=True)
    for (pod, credential, client_id, resource, want, mirid), out in results:
        expect_identity(out, want, resource, mirid)
        if credential == "default" and "chosen" in out:
            assert out["chosen"] == "ManagedIdentityCredential", out
    # No pod ever reached the emulator: nmi fetched every token as the node, over the uplink.
    entries = [e for e in node.emulator_log() if e["seq"] > sdk_runs["seq"]]
    assert entries, "nmi fetched no token"
    assert all(e["remote_addr"].split(":")[0] == devenv.UPLINK_NODE for e in entries), \
        sorted({e["remote_addr"] for e in entries})
    # The clients' requests reached nmi from their pods' own addresses.
    log = node.log("nmi")
    for pod in ("app-ua1", "app-multi", "app-sp"):
        assert "remote=%s" % node.pod(NS + "/" + pod)["ip"] in log, pod


def test_an_sdk_asking_for_another_pods_identity_is_refused(node, sdk_runs):
    out = sdk_runs["foreign"].result()
    print("MEASURE python foreign client_id refused after %.1f s (SDK retries of 404)"
          % out["wall_s"], flush=True)
    assert not out["ok"] and out["exit"] != 0, out
    assert "claims" not in out, out
    assert "No identity is assigned to this pod" in out["error"], out


def raw(node, pod, target, headers=None, host=devenv.IMDS_IP):
    data = harness.build_request(target, dict({"Metadata": "true"}, **(headers or {})),
                                 host=host)
    return harness.send_raw(80, data, host=devenv.IMDS_IP, timeout=10,
                            netns="/run/netns/" + node.pod(NS + "/" + pod)["netns"])


def test_a_pod_never_gets_another_pods_identity_by_any_spelling(node):
    """Raw bytes from app-ua1's namespace: client_id / msi_res_id / mi_res_id / object_id of
    app-multi's and app-sp's identities, podname/podns headers naming app-multi, odd path
    spellings. Only ua1 (app-ua1's own identity) may ever come back."""
    others = [UA["m1"], UA["m2"]]
    targets = []
    for u in others:
        targets += [harness.token_target(RESOURCE, client_id=u["client_id"]),
                    harness.token_target(RESOURCE, client_id=u["client_id"].upper()),
                    harness.token_target(RESOURCE, msi_res_id=u["resource_id"]),
                    harness.token_target(RESOURCE, mi_res_id=u["resource_id"])]
    targets.append(harness.token_target(RESOURCE, client_id=SP["client_id"]))
    base = harness.token_target(RESOURCE, client_id=UA["m1"]["client_id"])
    query = base.split("?", 1)[1]
    for path in ("//metadata/identity/oauth2/token", "/metadata/identity/oauth2/token/",
                 "/metadata/identity/oauth2/./token", "/metadata/identity/oauth2/x/../token",
                 "/metadata/%69dentity/oauth2/token", "/Metadata/Identity/OAuth2/Token",
                 "/metadata/identity\\oauth2/token"):
        targets.append(path + "?" + query)
    allowed = UA["ua1"]["client_id"]
    statuses = []
    for target in targets:
        for headers in ({}, {"podname": "app-multi", "podns": NS},
                        {"X-Forwarded-For": node.pod(NS + "/app-multi")["ip"]}):
            resp = raw(node, "app-ua1", target, headers)
            statuses.append(resp.status)
            assert "access_token" not in resp.text() or resp.status == 200, (target, resp)
            if resp.status == 200:
                body = resp.json()
                assert body["client_id"] == allowed, (target, headers, resp)
                assert devenv.claims_of(body["access_token"])["appid"] == allowed, target
            assert resp.header("Server") is None, (target, resp)  # nmi answered, not IMDS
    # Asking by another identity's client id or resource id is refused outright.
    assert all(s != 200 for s in statuses[:len(others) * 4 * 3 + 3]), statuses
    # The pod's own identity, asked for the same way, does work (the test can fail).
    resp = raw(node, "app-ua1", harness.token_target(RESOURCE,
                                                     client_id=UA["ua1"]["client_id"]))
    assert resp.status == 200 and resp.json()["client_id"] == allowed, resp
    # In any case, as IMDS compares client ids (issue 10, seam 9), and answered as IMDS spells it.
    resp = raw(node, "app-ua1", harness.token_target(RESOURCE,
                                                     client_id=UA["ua1"]["client_id"].upper()))
    assert resp.status == 200 and resp.json()["client_id"] == allowed, resp


def test_a_pod_without_identity_gets_a_clear_error_quickly(node):
    t0 = time.monotonic()
    resp = raw(node, "app-none", harness.token_target(RESOURCE))
    elapsed = time.monotonic() - t0
    assert resp.status == 404, resp
    assert resp.header("Server") is None, resp  # nmi, not the emulator
    assert "No identity is assigned to this pod" in resp.text(), resp
    assert elapsed < 1.0, elapsed


def test_the_nodes_own_traffic_is_not_intercepted(node):
    r = node.exec_host(["curl", "-sS", "-i", "-m", "5", "-H", "Metadata:true",
                        "http://169.254.169.254/metadata/instance?api-version=2021-02-01"])
    assert r.returncode == 0 and r.stdout.startswith("HTTP/1.1 200"), r.stdout + r.stderr
    assert "Server: IMDS/" in r.stdout, r.stdout
    assert '"aks-devenv-vmss_0"' in r.stdout, r.stdout


def test_host_token_names_the_pods_identity(node):
    r = node.exec_host(["curl", "-sS", "-m", "30",
                        "http://127.0.0.1:2579/host/token/?resource=https://vault.azure.net",
                        "-H", "podname: app-multi", "-H", "podns: " + NS])
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["clientid"] in (UA["m1"]["client_id"], UA["m2"]["client_id"]), body
    claims = devenv.claims_of(body["token"]["access_token"])
    assert claims["appid"] == body["clientid"] and claims["aud"] == RESOURCE, claims


def test_pods_are_registered_with_their_real_addresses(node):
    pods = node.api("GET", "/api/v1/namespaces/%s/pods" % NS)["items"]
    by_name = {p["metadata"]["name"]: p for p in pods}
    for p in node.state["pods"]:
        got = by_name[p["name"]]
        assert got["spec"]["nodeName"] == devenv.NODE_NAME
        assert got["status"]["podIP"] == p["ip"]
        r = node.exec_pod(NS + "/" + p["name"], ["ip", "-j", "-4", "addr", "show", "eth0"],
                          check=True)
        assert json.loads(r.stdout)[0]["addr_info"][0]["local"] == p["ip"]


def test_nmi_runs_as_the_daemonset_would(node):
    sb = node.nmi_sandbox()
    assert sb is not None, node.log("nmi")[-2000:]
    net_admin_raw = (1 << 12) | (1 << 13)
    assert sb["Uid"].split() == ["0"] * 4, sb
    assert int(sb["CapBnd"], 16) == net_admin_raw, sb
    assert int(sb["CapEff"], 16) == net_admin_raw, sb
    assert int(sb["CapPrm"], 16) == net_admin_raw, sb
    assert int(sb["CapAmb"], 16) == 0, sb
    assert sb["proc_sys_mount"].split(",")[0] == "ro", sb
    assert sb["netns_is_root"] is False
    # In nmi's mount namespace, /proc/sys refuses writes even to a full-capability root.
    r = subprocess.run(["nsenter", "-t", str(sb["pid"]), "-m", "-n", "sh", "-c",
                        "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r
    # nmi's rules are in the node's namespace, with the DNAT to the default 127.0.0.1:2579
    # (route_localnet=1 in the node namespace, set by devenv as kube-proxy would).
    nat = node.iptables("-t", "nat", "-S").stdout
    assert "-A PREROUTING -j NMI-METADATA" in nat, nat
    assert "--to-destination 127.0.0.1:2579" in nat, nat


def test_the_guard_refuses_the_root_network_namespace(node):
    """A name under /run/netns bound to the root namespace (`ip netns attach`): the devenv
    refuses to run anything there, iptables included."""
    name = "nmi-e2e-%d-rootguard" % os.getpid()
    subprocess.run(["ip", "netns", "attach", name, str(os.getpid())], check=True)
    try:
        fake = devenv.Devenv.__new__(devenv.Devenv)
        fake.dir = "/nonexistent"
        fake.state = dict(node.state, node=name, created=[name])
        with pytest.raises(devenv.GuardError):
            fake.iptables("-t", "nat", "-S")
        with pytest.raises(devenv.GuardError):
            fake.exec_host(["true"])
        with pytest.raises(devenv.GuardError):
            fake._start_nmi()
        # A namespace the devenv did not create is refused too.
        with pytest.raises(devenv.GuardError):
            node.run_in("nmi-e2e-not-ours", ["true"])
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
