"""Process lifecycle: graceful drain on SIGTERM, and a second nmi taking over the port during an
upgrade (SO_REUSEPORT). Pods: 127.0.8.x."""
import os
import subprocess
import threading
import time

from nmi_pytest import harness
from nmi_pytest.waits import wait_until
from conftest import ident, ua_client_id, ua_resource_id
from nmi_pytest.harness import assert_token, assigned, pod

FILE_INDEX = 8



# Both nmis of a hand-over run in the same DaemonSet on the same node (the port lock).
SAME_DAEMONSET = dict(extra_args=["--daemonset-name=nmi"], env={"POD_NAMESPACE": "kube-system"})


def launch_on_port(n, port):
    """Starts Nmi `n` on a given proxy port (the harness picks free ports otherwise)."""
    n.port = port
    n.probe_port = harness.free_port(FILE_INDEX)
    n.metrics_port = harness.free_port(FILE_INDEX)
    env = dict(os.environ)
    for k in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "FORCENAMESPACED", "NODE_NAME",
              "POD_NAMESPACE"):
        env.pop(k, None)
    env.update(n.env or {})
    argv = n.argv()
    if n.netns is not None:
        argv = n.netns.prefix() + argv
    n._log = open(n.log_path, "ab")
    n.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=n._log,
                              stderr=subprocess.STDOUT, env=env)
    return n


def start_on_port(n, port):
    launch_on_port(n, port)
    n._wait_ready(10.0)
    return n


def test_sigterm_lets_a_waiting_request_finish(emulator, ips):
    ip = ips.next()
    i = ident("a")
    p = pod("drain-pod", "default", ip)
    created = assigned(p, i, status="Created")
    n = harness.Nmi(emulator, [p, i, created], FILE_INDEX, ["--shutdown-grace-sec=10"])
    with n:
        result = {}

        def ask():
            result["r"] = n.token(ip, "https://drain.example/", timeout=20)

        t = threading.Thread(target=ask)
        t.start()
        wait_until(lambda: n.metric_value("nmi_requests_waiting") == 1, 5,
                   message="the request to wait for its identity")
        assert t.is_alive(), "the request did not wait for its identity"
        offset = n.log_size()
        n.proc.send_signal(15)  # SIGTERM: nmi drains
        assert n.wait_for_log(r"received signal 15, draining", offset), n.log_since(offset)
        # A negative check: draining, nmi does not exit for 0.3 s while its request waits.
        time.sleep(0.3)
        assert n.proc.poll() is None, "nmi exited before its request in flight finished"
        n.write_objects([p, i, assigned(p, i, status="Assigned")])
        t.join(15)
        assert not t.is_alive()
        assert_token(result["r"], "https://drain.example/", client_id=ua_client_id("a"))
        assert n.proc.wait(15) == 0
        assert "draining" in n.log()


def test_second_instance_takes_over_the_port(pki):
    # A namespace of this test, with the kernel's default net.ipv4.tcp_migrate_req=0, as on most
    # nodes: what is queued on a listener when it closes is reset, so a hand-over without a failed
    # request depends on the successor taking every new connection before the previous nmi closes
    # its listener (Server::preferThisListener).
    ns = harness.NamedNetns("nmi-it-lc-%d" % os.getpid(), create=True)
    emu = None
    old = new = None
    try:
        from conftest import UA_NAMES  # noqa: PLC0415
        ua = [{"client_id": ua_client_id(n), "resource_id": ua_resource_id(n)} for n in UA_NAMES]
        emu = harness.AzureEmulator(harness.NMI_EMULATOR, {
            "imds": {"listen": "127.0.0.1:0", "user_assigned": ua, "max_concurrent": 0,
                     "max_rps": 0},
            "aad": {"listen": "127.0.0.1:0", "apps": []}}, netns=ns.name).start()
        ip = "127.0.8.200"
        i = ident("b")
        p = pod("upgrade-pod", "default", ip)
        objects = [p, i, assigned(p, i)]
        old = harness.Nmi(emu, objects, FILE_INDEX, netns=ns, **SAME_DAEMONSET).start()
        new = harness.Nmi(emu, objects, FILE_INDEX, netns=ns, **SAME_DAEMONSET)
        start_on_port(new, old.port)
        assert "hand-over from the nmi of the same daemonset" in new.log(), new.log()
        failures = []
        served = [0]
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    r = old.token(ip, "https://upgrade.example/", timeout=5)
                    if r.status != 200:
                        failures.append(r.status)
                    else:
                        served[0] += 1
                except (OSError, harness.ConnectionClosed) as e:
                    failures.append(repr(e))

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: served[0] >= 10, 5, message="10 requests served by the old instance")
        old.stop()  # SIGTERM, drained, exit 0: the new instance keeps the port
        at_stop = served[0]
        wait_until(lambda: served[0] >= at_stop + 10 or failures, 5,
                   message="10 requests served after the switch")
        stop.set()
        for t in threads:
            t.join(10)
        assert served[0] > 20
        assert failures == [], failures
        # After the switch, only the new instance answers.
        assert_token(new.token(ip, "https://after.example/"), "https://after.example/",
                     client_id=ua_client_id("b"))
    finally:
        for n in (old, new):
            if n is not None:
                n.stop(check=False)
        if emu is not None:
            emu.stop()
        ns.close()


# Issue 10, seam 8: a second nmi that is not the hand-over of the same DaemonSet must not take
# half of the port's connections (SO_REUSEPORT would let it): it refuses to start and names the
# holder; the first keeps every connection.
def test_a_second_nmi_of_another_daemonset_is_refused(emulator, ips):
    ip = ips.next()
    i = ident("c")
    p = pod("lock-pod", "default", ip)
    objects = [p, i, assigned(p, i)]
    # No successor follows it: on SIGTERM it drains at once (--handover-wait-sec=0) instead of
    # serving on until one serves.
    first = harness.Nmi(emulator, objects, FILE_INDEX,
                        extra_args=SAME_DAEMONSET["extra_args"] + ["--handover-wait-sec=0"],
                        env=SAME_DAEMONSET["env"]).start()
    intruders = [
        harness.Nmi(emulator, objects, FILE_INDEX, extra_args=["--daemonset-name=nmi"],
                    env={"POD_NAMESPACE": "other"}),
        harness.Nmi(emulator, objects, FILE_INDEX),  # no DaemonSet at all
        harness.Nmi(emulator, objects, FILE_INDEX, node="node-2", **SAME_DAEMONSET),
    ]
    try:
        for n in intruders:
            launch_on_port(n, first.port)
            rc = n.proc.wait(timeout=10)
            assert rc == 1, n.log()
            assert "refusing to start on port %d" % first.port in n.log(), n.log()
            assert "pid %d" % first.proc.pid in n.log(), n.log()
            n.proc = None
        for _ in range(30):
            assert_token(first.token(ip, "https://lock.example/"), "https://lock.example/",
                         client_id=ua_client_id("c"))
    finally:
        for n in intruders:
            n.stop(check=False)
        first.stop()
