"""nmi's interception in network namespaces, with the backend of env NMI_IPT_BACKEND (nft or
legacy; ctest runs the file once per backend, each in namespaces of its own).

Shown: pods get their own tokens through the DNAT with their own source address; the node's own
traffic goes to IMDS untouched; drift (flushed chain, deleted jump, a dangerous rule in front) is
repaired within one check interval (5 s by default) while no pod reaches the IMDS stand-in; a
harmless rule in front is left alone; a killed nmi leaves pods refused, never open, and the
restart window is measured; connections from before the rules are dropped; SIGTERM keeps the
rules and `nmi cleanup` removes them; aad-pod-identity's SIGTERM cleanup leaves nmi's rules
alone; route_localnet=0 is reported; the backend in use is detected; iptables failures are
retried, never fatal. Figures are printed as `MEASURE name = value unit`.
"""
import os
import re
import time

import pytest

from conftest import BACKEND, UA, identity_objects
from netns_lab import (GuardError, IMDS_IP, Lab, NODE_IP, NodeNmi, POD_IPS, Prober, UPLINK_NODE,
                       harness, metric, pod_curl, pod_token, report, wait_until)

NAT_RULES = ["! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
             "--to-destination %s:2579" % NODE_IP, "-j RETURN"]
GUARD_RULES = ["-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m conntrack ! --ctstate DNAT "
               "-j REJECT --reject-with tcp-reset"]
INTERVAL = 5.0  # --ipt-check-interval-sec default
REPAIR_BUDGET = INTERVAL + 2.0
TOKEN_PATH = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net"


def rules_in_place(lab):
    return (lab.rules("nat", "NMI-METADATA") == NAT_RULES
            and lab.rules("filter", "NMI-METADATA-GUARD") == GUARD_RULES
            and "-j NMI-METADATA" in lab.rules("nat", "PREROUTING")
            and "-j NMI-METADATA-GUARD" in lab.rules("filter", "FORWARD"))


def assert_pod_token(lab, pod, client_id):
    resp = pod_token(lab, pod)
    harness.assert_token(resp, "https://vault.azure.net", client_id=client_id)
    assert resp.header("Server") is None, resp  # nmi answered, not the stand-in


def reconcile_count(nmi, result):
    return metric(nmi, "nmi_iptables_reconcile_total", result=result) or 0.0


def never_open(prober, lab, since_seq, since_time):
    """No pod reached the IMDS stand-in: nothing in its log from a pod address, and no answer
    from it in the prober's results."""
    assert lab.imds_requests_from_pods(since_seq) == []
    outcomes = prober.outcomes(since_time)
    assert "imds" not in outcomes, outcomes


def test_guard_refuses_iptables_outside_the_labs_namespaces():
    unbuilt = Lab(BACKEND, "guard")  # no namespace created
    with pytest.raises(GuardError):
        unbuilt.iptables("-t", "nat", "-S")
    with pytest.raises(GuardError):
        unbuilt.save("nat")


def test_pods_get_their_own_tokens_through_interception(lab, nmi):
    seq = lab.last_seq()
    assert rules_in_place(lab), lab.save("nat") + lab.save("filter")
    rc, out = pod_curl(lab, "podA", TOKEN_PATH)
    assert rc == 0 and out.startswith("HTTP/1.1 200"), out
    assert '"client_id":"%s"' % UA["a"] in out, out
    assert_pod_token(lab, "podB", UA["b"])
    # nmi saw each pod's own address (the DNAT keeps the source).
    log = nmi.log()
    assert "remote=%s" % POD_IPS["podA"] in log and "remote=%s" % POD_IPS["podB"] in log
    # A pod with no identity gets a clear answer at once, from nmi.
    t0 = time.monotonic()
    resp = pod_token(lab, "podC")
    assert resp.status == 404 and resp.header("Server") is None, resp
    assert time.monotonic() - t0 < 2.0
    # nmi fetched the tokens from the stand-in as the node; no pod ever reached it.
    calls = harness.imds_token_calls(lab.emulator, seq)
    assert calls and all(c["remote_addr"].startswith(UPLINK_NODE + ":") for c in calls), calls
    assert lab.imds_requests_from_pods(seq) == []
    assert metric(nmi, "nmi_iptables_rules_installed") == 1
    assert nmi.readyz()[0] == 200


def test_the_nodes_own_traffic_is_not_intercepted(lab, nmi):
    seq = lab.last_seq()
    rc, out = pod_curl(lab, "node", "/metadata/instance?api-version=2021-02-01")
    assert rc == 0 and out.startswith("HTTP/1.1 200"), out
    assert "Server: IMDS/" in out, out
    direct = [e for e in lab.emulator.log() if e["seq"] > seq]
    assert [e["remote_addr"].split(":")[0] for e in direct] == [UPLINK_NODE], direct


def test_a_flushed_chain_fails_closed_and_is_repaired(lab, nmi):
    repaired = reconcile_count(nmi, "repaired")
    seq = lab.last_seq()
    with Prober(lab, "podA") as prober:
        wait_until(lambda: prober.first("nmi-200", 0), 5, message="a token before the flush")
        t0 = time.monotonic()
        lab.iptables("-t", "nat", "-F", "NMI-METADATA")
        took = lab.wait_rules("nat", "NMI-METADATA", lambda r: r == NAT_RULES, REPAIR_BUDGET)
        t_back = time.monotonic()
        wait_until(lambda: prober.first("nmi-200", t_back), 3, message="a token after repair")
    assert took is not None, lab.save("nat")
    report("%s.flush_repair_seconds" % BACKEND, "%.2f" % took, "s (flush -> rules back; the "
           "next check comes within --ipt-check-interval-sec=5)")
    work = re.findall(r"interception rules in place \(\w+ backend, (\d+) ms\)", nmi.log())
    report("%s.repair_work_ms" % BACKEND, work[-1], "ms (save, restore, verify)")
    never_open(prober, lab, seq, t0)
    during = prober.outcomes(t0, t0 + took)
    assert during and set(during) <= {"nmi-200", "reset", "refused", "closed"}, set(during)
    report("%s.flush_window_refused_attempts" % BACKEND,
           sum(1 for o in during if o != "nmi-200"), "of %d" % len(during))
    wait_until(lambda: reconcile_count(nmi, "repaired") == repaired + 1, 5,
               message="the repair counted")
    assert "repairing interception rules: nat: chain NMI-METADATA has 0 rules instead of 2" \
        in nmi.log()


def test_a_deleted_jump_is_added_again(lab, nmi):
    seq = lab.last_seq()
    with Prober(lab, "podB") as prober:
        t0 = time.monotonic()
        lab.iptables("-t", "nat", "-D", "PREROUTING", "-j", "NMI-METADATA")
        took = lab.wait_rules("nat", "PREROUTING", lambda r: "-j NMI-METADATA" in r,
                              REPAIR_BUDGET)
        t_back = time.monotonic()
        if took is not None:
            wait_until(lambda: prober.first("nmi-200", t_back), 3, message="a token after repair")
    assert took is not None
    report("%s.jump_repair_seconds" % BACKEND, "%.2f" % took, "s")
    never_open(prober, lab, seq, t0)
    assert lab.rules("nat", "PREROUTING")[0] == "-j NMI-METADATA"
    assert_pod_token(lab, "podB", UA["b"])


def test_the_jump_moves_in_front_of_a_rule_that_could_accept_metadata_traffic(lab, nmi):
    seq = lab.last_seq()
    dangerous = ["-s", "10.244.0.0/16", "-p", "tcp", "-j", "ACCEPT"]
    try:
        with Prober(lab, "podA") as prober:
            t0 = time.monotonic()
            lab.iptables("-t", "nat", "-I", "PREROUTING", "1", *dangerous)
            took = lab.wait_rules("nat", "PREROUTING",
                                  lambda r: r[:1] == ["-j NMI-METADATA"], REPAIR_BUDGET)
            t_back = time.monotonic()
            if took is not None:
                wait_until(lambda: prober.first("nmi-200", t_back), 3,
                           message="a token after the move")
        assert took is not None, lab.save("nat")
        report("%s.dangerous_rule_jump_moved_seconds" % BACKEND, "%.2f" % took, "s")
        assert lab.rules("nat", "PREROUTING") == ["-j NMI-METADATA",
                                                  "-s 10.244.0.0/16 -p tcp -j ACCEPT"]
        # Meanwhile the guard refused the un-DNATed traffic.
        never_open(prober, lab, seq, t0)
        assert "is behind `-s 10.244.0.0/16 -p tcp -j ACCEPT`" in nmi.log()
        assert_pod_token(lab, "podA", UA["a"])
    finally:
        lab.iptables("-t", "nat", "-D", "PREROUTING", *dangerous, check=False)


def test_the_jump_stays_behind_rules_that_cannot_touch_metadata_traffic(lab, nmi):
    lab.iptables("-t", "nat", "-N", "CNI-SERVICES")
    lab.iptables("-t", "nat", "-A", "CNI-SERVICES", "-d", "10.96.0.0/12", "-p", "tcp", "-j",
                 "DNAT", "--to-destination", "10.244.0.99:8080")
    lab.iptables("-t", "nat", "-I", "PREROUTING", "1", "-j", "CNI-SERVICES")
    lab.iptables("-t", "nat", "-I", "PREROUTING", "1", "-p", "udp", "-j", "ACCEPT")
    try:
        repaired = reconcile_count(nmi, "repaired")
        ok = reconcile_count(nmi, "ok")
        # Two full checks see the harmless rules in front and change nothing.
        wait_until(lambda: reconcile_count(nmi, "ok") >= ok + 2, 2 * INTERVAL + 3,
                   message="two checks")
        assert reconcile_count(nmi, "repaired") == repaired
        assert lab.rules("nat", "PREROUTING") == ["-p udp -j ACCEPT", "-j CNI-SERVICES",
                                                  "-j NMI-METADATA"]
        assert_pod_token(lab, "podA", UA["a"])
    finally:
        lab.iptables("-t", "nat", "-D", "PREROUTING", "-p", "udp", "-j", "ACCEPT", check=False)
        lab.iptables("-t", "nat", "-D", "PREROUTING", "-j", "CNI-SERVICES", check=False)
        lab.iptables("-t", "nat", "-F", "CNI-SERVICES", check=False)
        lab.iptables("-t", "nat", "-X", "CNI-SERVICES", check=False)


def test_a_killed_nmi_leaves_pods_refused_until_it_is_back(lab, holder):
    nmi = holder.ensure()
    seq = lab.last_seq()
    with Prober(lab, "podA", period=0.005, timeout=0.3) as prober:
        wait_until(lambda: prober.first("nmi-200", 0), 5, message="a token before the kill")
        t_kill = time.monotonic()
        nmi.kill()
        # nmi stays dead until the pod has tried 50 times (each attempt must be refused).
        wait_until(lambda: len(prober.outcomes(t_kill + 0.05)) >= 50, 10,
                   message="50 attempts while nmi is dead")
        dead = prober.outcomes(t_kill + 0.05)
        t_start = time.monotonic()
        nmi.spawn()
        t_first = wait_until(lambda: prober.first("nmi-200", t_start), 10, message="the first 200")
        wait_until(lambda: len(prober.outcomes(t_first)) >= 10, 5,
                   message="10 attempts after the restart")
    assert rules_in_place(lab)
    assert dead and set(dead) <= {"refused", "reset"}, set(dead)
    never_open(prober, lab, seq, t_kill)
    after_start = prober.outcomes(t_start, t_first)
    # A probe may also time out: the listener is up before the event loop serves it (and the ASan
    # build starts slowly); what matters is that no attempt ever reaches IMDS (never_open above).
    assert set(after_start) <= {"refused", "reset", "nmi-200", "closed", "timeout"}, \
        set(after_start)
    report("%s.restart_refused_window_ms" % BACKEND, "%.0f" % ((t_first - t_start) * 1000),
           "ms (start -> first 200; %d refused attempts)" % len(
               [o for o in after_start if o != "nmi-200"]))
    report("%s.kill_to_first_200_ms" % BACKEND, "%.0f" % ((t_first - t_kill) * 1000),
           "ms (of which %.0f ms dead on purpose)" % ((t_start - t_kill) * 1000))
    nmi._wait_ready(10)


def test_aad_pod_identity_sigterm_cleanup_leaves_nmis_rules(lab, nmi):
    before = reconcile_count(nmi, "repaired")
    # The original NMI's rules (its chain, its jump inserted at position 1).
    lab.iptables("-t", "nat", "-N", "aad-metadata")
    lab.iptables("-t", "nat", "-A", "aad-metadata", "!", "-s", "127.0.0.1/32", "-d",
                 "169.254.169.254/32", "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "DNAT",
                 "--to-destination", "%s:2579" % NODE_IP)
    lab.iptables("-t", "nat", "-A", "aad-metadata", "-j", "RETURN")
    lab.iptables("-t", "nat", "-I", "PREROUTING", "1", "-j", "aad-metadata")
    # aad-metadata DNATs metadata traffic: nmi moves its jump in front of it.
    took = lab.wait_rules("nat", "PREROUTING",
                          lambda r: r[:2] == ["-j NMI-METADATA", "-j aad-metadata"],
                          REPAIR_BUDGET)
    assert took is not None, lab.save("nat")
    wait_until(lambda: reconcile_count(nmi, "repaired") > before, 5,
               message="the move to be counted")
    # Its SIGTERM handler: -D PREROUTING -j aad-metadata; -F; -X.
    seq = lab.last_seq()
    repaired = reconcile_count(nmi, "repaired")
    ok = reconcile_count(nmi, "ok")
    lab.iptables("-t", "nat", "-D", "PREROUTING", "-j", "aad-metadata")
    lab.iptables("-t", "nat", "-F", "aad-metadata")
    lab.iptables("-t", "nat", "-X", "aad-metadata")
    assert rules_in_place(lab)
    for pod, short in (("podA", "a"), ("podB", "b")):
        assert_pod_token(lab, pod, UA[short])
    wait_until(lambda: reconcile_count(nmi, "ok") > ok, INTERVAL + 3, message="a check")
    assert reconcile_count(nmi, "repaired") == repaired  # nothing of nmi's was touched
    assert lab.imds_requests_from_pods(seq) == []


def test_sigterm_keeps_the_rules_and_nmi_cleanup_restores_the_node(lab, holder):
    nmi = holder.ensure()
    seq = lab.last_seq()
    assert nmi.stop() == 0
    # Fail closed: the rules stay, pods are refused (nothing listens), never let through.
    assert rules_in_place(lab)
    rc, out = pod_curl(lab, "podA", TOKEN_PATH, timeout=3)
    assert rc == 7, out  # curl: (7) connection refused
    assert lab.imds_requests_from_pods(seq) == []
    # Uninstall.
    done = nmi.cleanup()
    assert done.returncode == 0, done.stderr
    assert "removed nat chain NMI-METADATA" in done.stdout, done.stdout
    assert "removed filter chain NMI-METADATA-GUARD" in done.stdout, done.stdout
    assert "NMI-METADATA" not in lab.save("nat") and "NMI-METADATA" not in lab.save("filter")
    rc, out = pod_curl(lab, "podA", "/metadata/instance?api-version=2021-02-01")
    assert rc == 0 and "Server: IMDS/" in out, out
    assert [e["remote_addr"].split(":")[0] for e in lab.imds_requests_from_pods(seq)] == [
        POD_IPS["podA"]]
    # Nothing left: still exit 0.
    again = nmi.cleanup()
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout


def test_connections_from_before_the_rules_are_dropped(lab, holder):
    assert holder.stop().cleanup().returncode == 0
    seq = lab.last_seq()
    # Connection tracking is on in a node's namespace once any rule needs it (kube-proxy's
    # KUBE-FORWARD has this one); an empty lab namespace tracks nothing.
    invalid = ["FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"]
    lab.iptables("-A", *invalid)
    # A keep-alive connection from podA straight to the stand-in, while nothing intercepts.
    conn = harness.Conn(80, host=IMDS_IP, netns=lab.path("podA"), timeout=3)
    try:
        request = harness.build_request("/metadata/instance?api-version=2021-02-01", harness.META,
                                        close=False)
        conn.send(request)
        first = conn.read()
        assert first.status == 200 and first.header("Server", "").startswith("IMDS/"), first
        sport = conn.sock.getsockname()[1]
        assert any("sport=%d " % sport in line for line in lab.conntrack_to_imds())
        nmi = holder.ensure()
        # nmi dropped the connection's conntrack entry once its rules were in place.
        wait_until(lambda: (metric(nmi, "nmi_conntrack_flows_deleted_total") or 0) >= 1, 5,
                   message="the conntrack deletion")
        assert not any("sport=%d " % sport in line for line in lab.conntrack_to_imds())
        # The next request on that connection never reaches the stand-in.
        try:
            conn.send(request)
            second = conn.read()
            outcome = "answered %d by %s" % (second.status, second.header("Server"))
        except (harness.ConnectionClosed, OSError) as e:
            outcome = "failed: %s" % type(e).__name__
        assert outcome.startswith("failed"), outcome
        report("%s.preexisting_connection" % BACKEND, outcome, "")
    finally:
        conn.close()
        lab.iptables("-D", *invalid, check=False)
    assert len(lab.imds_requests_from_pods(seq)) == 1
    assert_pod_token(lab, "podA", UA["a"])


def test_route_localnet_off_is_reported_and_on_works(lab, holder):
    holder.stop()
    lab.run("node", ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=0"])
    loopback = NodeNmi(lab, identity_objects(), listen_address=None)  # default 127.0.0.1
    try:
        loopback.spawn()
        status, body = wait_until(lambda: (lambda s: s if s[0] == 503 and "route_localnet" in s[1]
                                         else None)(loopback.readyz()), 10, message="not ready")
        assert ("interception: route_localnet=0: DNAT to 127.0.0.1 cannot work; set "
                "net.ipv4.conf.all.route_localnet=1 (kube-proxy does) or run with "
                "--nmi-listen-address=<node IP>") in body, body
        # The rules are in anyway (closed is better than open).
        assert lab.rules("nat", "NMI-METADATA")[0].endswith("--to-destination 127.0.0.1:2579")
        seq = lab.last_seq()
        with pytest.raises((OSError, harness.ConnectionClosed)):
            pod_token(lab, "podA", timeout=1.0)
        assert lab.imds_requests_from_pods(seq) == []
        # The operator sets it (nmi never writes sysctls); the next check sees it.
        lab.run("node", ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"])
        t0 = time.monotonic()
        wait_until(lambda: loopback.readyz()[0] == 200, INTERVAL + 3, message="ready")
        report("%s.route_localnet_ready_after_seconds" % BACKEND, "%.2f" % (time.monotonic() - t0),
               "s")
        assert_pod_token(lab, "podA", UA["a"])
    finally:
        loopback.stop(check=False)
        lab.run("node", ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=0"])


def test_auto_detects_the_backend_the_node_uses(lab, holder):
    holder.stop()
    auto = NodeNmi(lab, identity_objects(), extra_args=["--iptables-backend=auto"])
    try:
        auto.start()
        assert "iptables backend=%s (auto: " % BACKEND in auto.log(), auto.log()
        assert rules_in_place(lab)
        assert_pod_token(lab, "podB", UA["b"])
    finally:
        auto.stop()
    if BACKEND == "nft":
        # Detection read the legacy tables without creating any.
        r = lab.run("node", ["iptables-nft-save"])
        assert "legacy tables present" not in r.stderr, r.stderr


def test_iptables_failures_are_retried_shown_and_recovered_from(lab, holder, tmp_path):
    assert holder.stop().cleanup().returncode == 0
    # An iptables-restore that always finds the xtables lock taken, first in nmi's PATH.
    fake = tmp_path / ("iptables-%s-restore" % BACKEND)
    fake.write_text("#!/bin/sh\necho 'Another app is currently holding the xtables lock. "
                    "Stopped waiting after 5s.' >&2\nexit 4\n")
    fake.chmod(0o755)
    env = {"PATH": "%s:%s" % (tmp_path, os.environ.get("PATH", "/usr/sbin:/usr/bin"))}
    flaky = NodeNmi(lab, identity_objects(), env=env)
    try:
        flaky.spawn()
        status, body = wait_until(lambda: (lambda s: s if s[0] == 503 and "exited 4" in s[1]
                                         else None)(flaky.readyz()), 10, message="not ready")
        assert ("interception: iptables-%s-restore exited 4: Another app is currently holding "
                "the xtables lock. Stopped waiting after 5s. (table filter) (retrying in"
                % BACKEND) in body, body
        wait_until(lambda: "retrying in 2000 ms (failure 2)" in flaky.log(), 5,
                   message="a second retry")
        assert flaky.running()
        assert metric(flaky, "nmi_iptables_reconcile_total", result="error") >= 2
        assert metric(flaky, "nmi_iptables_rules_installed") == 0
        # The lock is free again: the next retry installs the rules.
        t0 = time.monotonic()
        fake.unlink()
        wait_until(lambda: flaky.readyz()[0] == 200, 10, message="ready")
        report("%s.recovered_after_lock_freed_seconds" % BACKEND, "%.2f" % (time.monotonic() - t0),
               "s")
        assert rules_in_place(lab)
        assert_pod_token(lab, "podA", UA["a"])
    finally:
        flaky.stop()


def test_the_lock_file_flag_reaches_legacy_iptables(lab, holder):
    """legacy iptables takes the xtables lock named by --iptables-lock-file (an unusable path
    makes it fail, visibly); iptables-nft takes no such lock, so the same path changes nothing."""
    assert holder.stop().cleanup().returncode == 0
    other = NodeNmi(lab, identity_objects(),
                    extra_args=["--iptables-lock-file=/nonexistent-nmi-dir/xtables.lock"])
    try:
        other.spawn()
        if BACKEND == "legacy":
            status, body = wait_until(lambda: (lambda s: s if s[0] == 503 and "exited 4" in s[1]
                                             else None)(other.readyz()), 10, message="not ready")
            assert "can't open lock file /nonexistent-nmi-dir/xtables.lock" in body, body
            assert other.running()
        else:
            wait_until(lambda: other.readyz()[0] == 200 or None, 10, message="ready")
            assert rules_in_place(lab)
            assert_pod_token(lab, "podA", UA["a"])
    finally:
        other.stop()
