#!/usr/bin/env python3
"""Soak run of nmi (docs/testing.md, "Soak"): is nmi's memory bounded over time?

nmi runs on a simulated node (scripts/devenv: network namespaces, the real API server, the IMDS
and Azure AD emulators behind the node's uplink, nmi intercepting with iptables) for --minutes
(default $SOAK_MINUTES or 120) while:

  * six pods send mixed load to 169.254.169.254:80 from inside their network namespaces, so every
    request goes through nmi's DNAT: cached tokens, cache misses (a bounded rotating set of
    resources revisited only after nmi stopped refreshing them, and resources never asked before),
    probes without the Metadata header, proxied /metadata/instance and /metadata/versions; on a
    kept-alive connection and on fresh ones. The node asks /host/token/ for the pods;
  * the API server is restarted every 10 minutes (scripts/kube-testenv restart-apiserver);
  * one pod's identity is bound and unbound every minute (AzureIdentityBinding and the Assigned
    AzureAssignedIdentity, as MIC writes them; the identity alternates), and another pod is
    deleted and created again every minute (a new uid; its AzureAssignedIdentity goes and comes
    with it);
  * the emulators issue tokens that expire after 4 minutes, so nmi refreshes them ahead.

Every --sample-every seconds (60, or 10 for runs shorter than an hour) it records nmi's VmRSS and
VmHWM, open file descriptors and threads (/proc/<pid>), its /metrics exposition (bytes, series,
the cache, connection and upstream figures) and the load's outcomes. Results go to a run directory
(default build/soak/<timestamp>/): samples.csv, events.jsonl (every unexpected answer, with its
time), summary.json, soak.png and the daemons' logs. The summary compares the first window after
warm-up with the last one and fits a least-squares slope; PASS needs zero growth within the stated
tolerances, no unexpected answer and nmi alive throughout. Exit code 0 PASS, 1 FAIL, 2 the harness
could not run, 130 interrupted.

    /var/cache/nmi/venv-soak/bin/python bench/soak.py [--build build] [--minutes 120] [--out DIR]
    bench/soak.py --plot RUN_DIR       # redraw soak.png and the summary from samples.csv

Needs root (network namespaces). Nothing runs in the root network namespace: load threads and the
sampler join the devenv's namespaces only after its guard accepted them, and `devenv down` (also
on Ctrl-C and on failure) stops every process it started, by PID.
"""
import argparse
import collections
import csv
import datetime
import http.client
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# $NMI_CACHE_DIR/venv is a link that scripts/setup of another checkout may re-point during a
# two-hour run: import from the virtualenv this process started in.
sys.path[:] = [os.path.realpath(p) if p else p for p in sys.path]
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import devenv  # noqa: E402

KUBE_TESTENV = os.path.join(REPO, "scripts", "kube-testenv")
TOKEN_PATH = "/metadata/identity/oauth2/token"
TOKEN_API = "2018-02-01"
INSTANCE_API = "2021-02-01"
# Resources every pod asks for all the time: after the first request, cache hits.
HOT = ["https://management.azure.com/", "https://vault.azure.net"]
TOKEN_LIFETIME_SEC = 240
# nmi's defaults (refresh 300 s ahead, serve with 60 s left) assume hour-long tokens; with
# 4-minute tokens they would refresh on every hit. These keep "refresh ahead" meaningful.
NMI_TOKEN_ARGS = ["--token-refresh-ahead-sec=90", "--token-min-lifetime-sec=30"]
# nmi's token cache keeps refreshing a token used within the last 30 minutes (CacheOptions::
# recent_use); a token unused for longer expires (at most TOKEN_LIFETIME_SEC later) and is
# dropped by the sweeper (every 30 s). So the cache reaches its steady size after this long:
CACHE_SETTLE_SEC = 30 * 60 + TOKEN_LIFETIME_SEC + 60
# One rotating-set miss per pod every ROTATE_EVERY s, through ROTATE_SET resources: a resource is
# revisited after ROTATE_SET * ROTATE_EVERY = 40 min, when nmi no longer holds it (a miss again).
# One never-seen resource per pod every UNIQUE_EVERY s. Both stay well within nmi's per-pod limit
# of 32 distinct tokens per 30 minutes (at most 15 + 6 + the hot ones).
ROTATE_SET, ROTATE_EVERY, UNIQUE_EVERY = 20, 120, 300

# Identities the emulator knows (user-assigned, on the simulated VM) and the namespace of their
# AzureIdentity.
IDENTITIES = {"soak-a": "soak-a", "soak-b": "soak-b", "soak-c": "soak-a", "soak-d": "soak-a",
              "soak-e": "soak-c"}
# role: steady (bound for the whole run), rebind (bound and unbound every minute, alternating
# between two identities), recreate (the Pod deleted and created again every minute, new uid),
# none (no identity: 404).
PODS = [
    {"name": "steady-a1", "namespace": "soak-a", "selector": "soak-a", "role": "steady",
     "identities": ["soak-a"]},
    {"name": "steady-a2", "namespace": "soak-a", "selector": "soak-a", "role": "steady",
     "identities": ["soak-a"]},
    {"name": "steady-b", "namespace": "soak-b", "selector": "soak-b", "role": "steady",
     "identities": ["soak-b"]},
    {"name": "rebind", "namespace": "soak-a", "selector": "soak-rebind", "role": "rebind",
     "identities": ["soak-c", "soak-d"]},
    {"name": "recreate", "namespace": "soak-c", "selector": "soak-e", "role": "recreate",
     "identities": ["soak-e"]},
    {"name": "no-identity", "namespace": "soak-c", "selector": "none", "role": "none",
     "identities": []},
]
# Statuses that are right for a token request (pod or host) from a pod of each role. A rebind
# pod is unbound half of the time; a recreate pod has no AzureAssignedIdentity for a moment.
TOKEN_OK = {"steady": {200}, "rebind": {200, 404}, "recreate": {200, 404}, "none": {404}}
KIND_OK = {"probe": {400}, "proxied_instance": {200}, "proxied_versions": {200}}
# Weights of the request kinds a pod picks from (misses come on their own schedule).
MIX = [("cached", 50), ("probe", 15), ("proxied_instance", 10), ("proxied_versions", 10)]
FRESH_SHARE = 0.25          # requests sent on a fresh connection (then closed)
KEEPALIVE_RENEW_AFTER = 200  # requests before a pod's kept-alive connection is replaced


def log(msg):
    print("soak %s %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Network namespaces: a thread joins one of the devenv's namespaces after the guard accepted it
# ---------------------------------------------------------------------------------------------

def join_netns(env, ns):
    """Moves the calling thread (only it) into network namespace `ns` of `env`. devenv's guard
    refuses a namespace it did not create and the root one; checked again after the switch."""
    env.ns_prefix(ns)
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        devenv._setns_net(fd)
    finally:
        os.close(fd)
    here = os.stat("/proc/thread-self/ns/net").st_ino
    if here in devenv.root_netns_inodes() or here != os.stat("/run/netns/" + ns).st_ino:
        raise devenv.GuardError("thread is not in %s after setns" % ns)


class NetnsCaller:
    """A thread living in one namespace that runs the callables given to call()."""

    def __init__(self, env, ns):
        self._q = collections.deque()
        self._cv = threading.Condition()
        self._ready = threading.Event()
        self._error = None
        self._t = threading.Thread(target=self._run, args=(env, ns), daemon=True,
                                   name="netns-" + ns)
        self._t.start()
        self._ready.wait(10)
        if self._error:
            raise self._error

    def _run(self, env, ns):
        try:
            join_netns(env, ns)
        except BaseException as e:  # noqa: BLE001 - handed to the constructor
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        while True:
            with self._cv:
                while not self._q:
                    self._cv.wait()
                fn, box, done = self._q.popleft()
            if fn is None:
                return
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised by call()
                box["error"] = e
            done.set()

    def call(self, fn, timeout=60):
        box, done = {}, threading.Event()
        with self._cv:
            self._q.append((fn, box, done))
            self._cv.notify()
        if not done.wait(timeout):
            raise TimeoutError("call in namespace timed out")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def close(self):
        with self._cv:
            self._q.append((None, None, None))
            self._cv.notify()


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------

class Outcomes:
    """Counts of answers by (kind, role, status); unexpected ones also go to events.jsonl."""

    def __init__(self, events_path, t0):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.latency = collections.defaultdict(lambda: [0, 0.0, 0.0])  # kind: n, sum, max
        self.slow = collections.Counter()  # kind: answers slower than 1 s
        self.unexpected = collections.Counter()  # (kind, role, status)
        self.transport = collections.Counter()  # events that are not answers
        self.total = 0
        self.unexpected_total = 0
        self.t0 = t0
        self.events = open(events_path, "a", buffering=1)

    def record(self, kind, pod, role, status, seconds, ok, detail=""):
        with self.lock:
            self.total += 1
            self.counts[(kind, role, status)] += 1
            lat = self.latency[kind]
            lat[0] += 1
            lat[1] += seconds
            lat[2] = max(lat[2], seconds)
            if seconds > 1.0:
                self.slow[kind] += 1
            if not ok:
                self.unexpected_total += 1
                self.unexpected[(kind, role, status)] += 1
                self.event("unexpected", kind=kind, pod=pod, role=role, status=status,
                           seconds=round(seconds, 3), detail=detail[:300])

    def note(self, what, **fields):
        with self.lock:
            self.transport[what] += 1
            self.event(what, **fields)

    def event(self, what, **fields):
        rec = {"t": round(time.monotonic() - self.t0, 1),
               "time": datetime.datetime.now().isoformat(timespec="seconds"), "event": what}
        rec.update(fields)
        self.events.write(json.dumps(rec) + "\n")

    def snapshot(self):
        with self.lock:
            return self.total, self.unexpected_total, sum(self.transport.values())


class Client:
    """One kept-alive HTTP connection, plus fresh connections on demand (Connection: close)."""

    def __init__(self, host, port, outcomes, who):
        self.host, self.port = host, port
        self.outcomes = outcomes
        self.who = who
        self.conn = None
        self.used = 0

    def _new(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get(self, path, headers, fresh):
        """(status, body) or raises OSError / http.client.HTTPException."""
        if fresh:
            c = self._new()
            try:
                c.request("GET", path, headers=dict(headers, Connection="close"))
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()
        if self.conn is not None and self.used >= KEEPALIVE_RENEW_AFTER:
            self.close()
        reused = self.conn is not None
        if self.conn is None:
            self.conn = self._new()
            self.used = 0
        try:
            self.conn.request("GET", path, headers=headers)
            r = self.conn.getresponse()
            body = r.read()
            self.used += 1
            if r.will_close:
                self.close()
            return r.status, body
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
            self.close()
            if not reused:
                raise
            # The server closed a kept-alive connection between two requests: what any client
            # retries once on a new connection. Recorded, since nmi should not do that while
            # requests come every second (its idle timeout is 60 s).
            self.outcomes.note("keepalive_closed", who=self.who, error=repr(e))
            return self.get(path, headers, fresh=False)
        except BaseException:
            self.close()
            raise


def token_target(resource):
    return "%s?api-version=%s&resource=%s" % (TOKEN_PATH, TOKEN_API,
                                              urllib.parse.quote(resource, safe=""))


def check_token_body(body, allowed, host):
    """'' if the 200 answer carries a token of one of `allowed` client ids, else why not."""
    try:
        doc = json.loads(body)
        if host:
            cid, tok = doc.get("clientid", ""), doc.get("token", {}).get("access_token", "")
        else:
            cid, tok = doc.get("client_id", ""), doc.get("access_token", "")
    except (ValueError, AttributeError):
        return "200 without a token document: %r" % body[:120]
    if cid.lower() not in allowed:
        return "token of client_id %s, not one of this pod's identities" % cid
    if tok.count(".") != 2:
        return "access_token is not a JWT"
    return ""


class PodLoad(threading.Thread):
    """Requests from inside one pod's network namespace to 169.254.169.254:80 (nmi's DNAT)."""

    def __init__(self, env, pod, spec, outcomes, stop, interval, client_ids, seed):
        super().__init__(daemon=True, name="load-" + pod["name"])
        self.env, self.pod, self.spec = env, pod, spec
        self.outcomes, self.stop, self.interval = outcomes, stop, interval
        self.allowed = {client_ids[i].lower() for i in spec["identities"]}
        self.rng = random.Random(seed)
        self.error = None

    def run(self):
        try:
            join_netns(self.env, self.pod["netns"])
            self.loop()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
            self.outcomes.note("load_thread_died", who=self.pod["name"], error=repr(e))

    def loop(self):
        client = Client(devenv.IMDS_IP, 80, self.outcomes, self.pod["name"])
        name, role = self.pod["name"], self.spec["role"]
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        start = time.monotonic()
        # Spread the pods' miss schedules over the period.
        next_rotate = start + self.rng.uniform(5, ROTATE_EVERY)
        next_unique = start + self.rng.uniform(5, UNIQUE_EVERY)
        rot = self.rng.randrange(ROTATE_SET)
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_rotate:
                kind = "miss_rotating"
                resource = "https://soak.example/%s/set/%d" % (name, rot)
                rot = (rot + 1) % ROTATE_SET
                next_rotate += ROTATE_EVERY
            elif now >= next_unique:
                kind = "miss_unique"
                resource = "https://soak.example/%s/u/%s" % (name, uuid.uuid4().hex[:12])
                next_unique += UNIQUE_EVERY
            else:
                kind = self.rng.choices(kinds, weights)[0]
                resource = self.rng.choice(HOT)
            fresh = self.rng.random() < FRESH_SHARE
            if kind in ("cached", "miss_rotating", "miss_unique"):
                path, headers, ok = token_target(resource), {"Metadata": "true"}, TOKEN_OK[role]
            elif kind == "probe":
                path, headers, ok = token_target(resource), {}, KIND_OK[kind]
            elif kind == "proxied_instance":
                path = "/metadata/instance?api-version=%s" % INSTANCE_API
                headers, ok = {"Metadata": "true"}, KIND_OK[kind]
            else:
                path, headers, ok = "/metadata/versions", {"Metadata": "true"}, KIND_OK[kind]
            t = time.monotonic()
            try:
                status, body = client.get(path, headers, fresh)
            except (OSError, http.client.HTTPException) as e:
                self.outcomes.record(kind, name, role, "error:" + type(e).__name__,
                                     time.monotonic() - t, False, repr(e))
            else:
                detail = ""
                good = status in ok
                if good and status == 200 and kind not in ("proxied_instance",
                                                           "proxied_versions"):
                    detail = check_token_body(body, self.allowed, host=False)
                    good = not detail
                elif not good:
                    detail = body.decode("utf-8", "replace")
                self.outcomes.record(kind, name, role, status if not detail or status != 200
                                     else "200-wrong", time.monotonic() - t, good, detail)
            self.stop.wait(self.interval * self.rng.uniform(0.5, 1.5))
        client.close()


class HostLoad(threading.Thread):
    """/host/token/ from the node (127.0.0.1:2579) with podns/podname of a random pod."""

    def __init__(self, env, specs, outcomes, stop, interval, client_ids, seed):
        super().__init__(daemon=True, name="load-host")
        self.env, self.specs, self.outcomes = env, specs, outcomes
        self.stop, self.interval = stop, interval
        self.client_ids = client_ids
        self.rng = random.Random(seed)
        self.error = None

    def run(self):
        try:
            join_netns(self.env, self.env.node_ns)
            self.loop()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
            self.outcomes.note("load_thread_died", who="host", error=repr(e))

    def loop(self):
        client = Client("127.0.0.1", devenv.NMI_PORT, self.outcomes, "host")
        while not self.stop.is_set():
            spec = self.rng.choice(self.specs)
            role = spec["role"]
            allowed = {self.client_ids[i].lower() for i in spec["identities"]}
            path = "/host/token/?resource=%s" % urllib.parse.quote(self.rng.choice(HOT), safe="")
            headers = {"podns": spec["namespace"], "podname": spec["name"]}
            fresh = self.rng.random() < FRESH_SHARE
            t = time.monotonic()
            try:
                status, body = client.get(path, headers, fresh)
            except (OSError, http.client.HTTPException) as e:
                self.outcomes.record("host_token", spec["name"], role, "error:" + type(e).__name__,
                                     time.monotonic() - t, False, repr(e))
            else:
                good = status in TOKEN_OK[role]
                detail = "" if good else body.decode("utf-8", "replace")
                if good and status == 200:
                    detail = check_token_body(body, allowed, host=True)
                    good = not detail
                self.outcomes.record("host_token", spec["name"], role,
                                     "200-wrong" if status == 200 and detail else status,
                                     time.monotonic() - t, good, detail)
            self.stop.wait(self.interval * self.rng.uniform(0.5, 1.5))
        client.close()


# ---------------------------------------------------------------------------------------------
# The cluster side: what users, MIC and the kubelet would do
# ---------------------------------------------------------------------------------------------

def crd_path(ns, plural, name=None):
    p = "/apis/%s/namespaces/%s/%s" % (devenv.API, ns, plural)
    return p + "/" + name if name else p


class Cluster:
    """Identities, bindings, assignments and pods of the soak, through the devenv's API server."""

    def __init__(self, env, outcomes):
        self.env = env
        self.outcomes = outcomes
        self.ua = {u["name"]: u for u in env.state["user_assigned"]}
        self.identity = {name: devenv.azure_identity(name, ns, self.ua[name]["client_id"],
                                                     resource_id=self.ua[name]["resource_id"])
                         for name, ns in IDENTITIES.items()}
        self.pods = {p["name"]: env.pod(p["namespace"] + "/" + p["name"]) for p in PODS}
        self.rebind_state = None  # None: unbound, else the identity bound
        self.rebind_next = 0
        self.counts = collections.Counter()

    def binding_for(self, identity, selector):
        ns = IDENTITIES[identity]
        return devenv.binding("bind-" + identity, ns, identity, selector)

    def create(self, obj, exists_ok=True):
        kind = obj["kind"].lower()
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        md = obj["metadata"]
        base = ("/api/v1/namespaces/%s/%s" % (md["namespace"], plural) if obj["apiVersion"] == "v1"
                else crd_path(md["namespace"], plural))
        self.env.api("POST", base, obj, ok=(200, 201, 409) if exists_ok else (200, 201))

    def delete(self, path, body=None):
        self.env.api("DELETE", path, body, ok=(200, 202, 404))

    def setup(self):
        """AzureIdentities for every identity; steady and recreate pods bound and assigned."""
        for ident in self.identity.values():
            self.create(ident)
        for spec in PODS:
            if spec["role"] in ("steady", "recreate"):
                ident = self.identity[spec["identities"][0]]
                b = self.binding_for(spec["identities"][0], spec["selector"])
                self.create(b)
                self.create(devenv.assigned(self.pods[spec["name"]], ident, b))

    def rebind_tick(self):
        """Unbind when bound; bind the next identity (alternating) when unbound."""
        spec = next(p for p in PODS if p["role"] == "rebind")
        pod = self.pods[spec["name"]]
        if self.rebind_state is not None:
            name = self.rebind_state
            b = self.binding_for(name, spec["selector"])
            a = devenv.assigned(pod, self.identity[name], b)
            self.delete(crd_path(pod["namespace"], "azureassignedidentities",
                                 a["metadata"]["name"]))
            self.delete(crd_path(b["metadata"]["namespace"], "azureidentitybindings",
                                 b["metadata"]["name"]))
            self.rebind_state = None
            self.counts["unbind"] += 1
        else:
            name = spec["identities"][self.rebind_next % len(spec["identities"])]
            b = self.binding_for(name, spec["selector"])
            self.create(b)
            self.create(devenv.assigned(pod, self.identity[name], b))
            self.rebind_state = name
            self.rebind_next += 1
            self.counts["bind"] += 1

    def recreate_tick(self):
        """As the kubelet and MIC: the Pod and its assignment go; a Pod of the same name comes
        back (new uid), gets its address, then its assignment."""
        spec = next(p for p in PODS if p["role"] == "recreate")
        pod = self.pods[spec["name"]]
        ident = self.identity[spec["identities"][0]]
        b = self.binding_for(spec["identities"][0], spec["selector"])
        a = devenv.assigned(pod, ident, b)
        ns, name = pod["namespace"], pod["name"]
        self.delete(crd_path(ns, "azureassignedidentities", a["metadata"]["name"]))
        self.delete("/api/v1/namespaces/%s/pods/%s" % (ns, name),
                    {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
        deadline = time.monotonic() + 30
        while True:
            got = self.env.api("GET", "/api/v1/namespaces/%s/pods/%s" % (ns, name),
                               ok=(200, 404))
            if not got or got.get("kind") == "Status":  # 404: a Status body
                break
            if time.monotonic() > deadline:
                raise devenv.DevenvError("pod %s/%s not gone after 30 s" % (ns, name))
            time.sleep(0.1)
        self.env.api("POST", "/api/v1/namespaces/%s/pods" % ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"aadpodidbinding": pod["selector"]}},
            "spec": {"nodeName": devenv.NODE_NAME,
                     "containers": [{"name": "app", "image": "devenv/app"}]}})
        self.env.set_pod_ip(pod, pod["ip"])
        self.create(a)
        self.counts["recreate"] += 1


def one_request(host, port, path, headers):
    c = http.client.HTTPConnection(host, port, timeout=30)
    try:
        c.request("GET", path, headers=dict(headers, Connection="close"))
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def prime(env, cluster, outcomes):
    """Before the clock starts: every kind of request from every pod and from the host, with the
    rebind pod unbound and then bound, so that every label set the load can produce in nmi's
    metrics exists before the first sample (a label set first seen late would count as growth of
    the series)."""
    callers = {}
    try:
        for spec in PODS:
            callers[spec["name"]] = NetnsCaller(env, cluster.pods[spec["name"]]["netns"])
        callers["host"] = NetnsCaller(env, env.node_ns)

        def round_for(spec, token_ok):
            name, role = spec["name"], spec["role"]
            reqs = [("primer_token", token_target(r), {"Metadata": "true"}, token_ok)
                    for r in HOT + ["https://soak.example/%s/primer" % name]]
            reqs += [("primer_probe", token_target(HOT[0]), {}, KIND_OK["probe"]),
                     ("primer_proxied", "/metadata/instance?api-version=%s" % INSTANCE_API,
                      {"Metadata": "true"}, KIND_OK["proxied_instance"]),
                     ("primer_proxied", "/metadata/versions", {"Metadata": "true"},
                      KIND_OK["proxied_versions"])]
            answers = callers[name].call(lambda: [
                (kind, ok) + one_request(devenv.IMDS_IP, 80, path, h)
                for kind, path, h, ok in reqs])
            answers += callers["host"].call(lambda: [
                ("primer_host_token", token_ok) + one_request(
                    "127.0.0.1", devenv.NMI_PORT,
                    "/host/token/?resource=%s" % urllib.parse.quote(r, safe=""),
                    {"podns": spec["namespace"], "podname": name}) for r in HOT])
            for kind, ok, status, body in answers:
                outcomes.record(kind, name, role, status, 0.0, status in ok,
                                "" if status in ok else body.decode("utf-8", "replace"))

        rebind = next(p for p in PODS if p["role"] == "rebind")
        for spec in PODS:
            round_for(spec, {"steady": {200}, "recreate": {200}, "none": {404},
                             "rebind": {404}}[spec["role"]])
        cluster.rebind_tick()  # bound now; nmi sees the assignment a moment later
        deadline = time.monotonic() + 30
        while callers[rebind["name"]].call(lambda: one_request(
                devenv.IMDS_IP, 80, token_target(HOT[0]), {"Metadata": "true"}))[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the rebind pod got no token 30 s after its binding")
            time.sleep(0.2)
        round_for(rebind, {200})
    finally:
        for c in callers.values():
            c.close()


def restart_apiserver(env):
    t = time.monotonic()
    r = subprocess.run([KUBE_TESTENV, "restart-apiserver", "--dir", env.state["kube_dir"]],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise devenv.DevenvError("restart-apiserver failed:\n%s%s" % (r.stdout, r.stderr))
    return time.monotonic() - t


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def parse_exposition(text):
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if "{" in head:
            name, _, rest = head.partition("{")
            labels = []
            for part in _split_labels(rest.rstrip("}")):
                k, _, v = part.partition("=")
                labels.append((k, v.strip('"')))
            key = (name, frozenset(labels))
        else:
            key = (head, frozenset())
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def _split_labels(s):
    parts, cur, quoted, esc = [], "", False, False
    for ch in s:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == '"':
            cur += ch
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def msum(series, name, **labels):
    """Sum of the series called `name` whose labels include `labels` (value "!x": not x)."""
    total = 0.0
    for (n, ls), v in series.items():
        if n != name:
            continue
        d = dict(ls)
        if all((d.get(k) != want[1:]) if want.startswith("!") else d.get(k) == want
               for k, want in labels.items()):
            total += v
    return total


COLUMNS = [
    "t_s", "time", "nmi_pid", "rss_kib", "hwm_kib", "rss_anon_kib", "fds", "fds_api",
    "fds_imds", "fds_clients", "fds_listen", "fds_close_wait", "fds_dead", "fds_other",
    "threads", "nmi_log_bytes",
    "audit_lines",
    "metrics_bytes", "metrics_lines", "metrics_series", "metric_families",
    "cache_entries", "pod_cache_pods", "connections_active", "requests_waiting",
    "source_staleness_s", "cache_hits", "cache_misses", "cache_coalesced", "cache_refreshes",
    "token_rejections", "connections_rejected", "nmi_requests", "upstream_imds_ok",
    "upstream_imds_other", "upstream_proxy_ok", "upstream_proxy_other", "kube_api_errors",
    "load_requests", "load_unexpected", "load_transport_events", "emu_imds_token_calls",
    "emu_imds_token_not200", "emu_imds_other_calls", "apiserver_restarts", "binds", "unbinds",
    "recreations", "churn_errors",
]


def _tcp_sockets(pid):
    """{socket inode: (local port, remote address hex, remote port, state)} of the TCP sockets
    in the network namespace of process `pid`."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            raddr, _, rport = remote.partition(":")
            out[inode] = (int(local.rpartition(":")[2], 16), raddr, int(rport, 16), state)
    return out


IMDS_HEX = "FEA9FEA9"  # 169.254.169.254 as /proc/net/tcp writes it (bytes reversed)


def _other_socket_inodes(pid):
    """Inodes of the UDP, unix and netlink sockets the process can see."""
    out = set()
    for name, col in (("udp", 9), ("udp6", 9), ("unix", 6), ("netlink", 9)):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > col:
                out.add(fields[col])
    return out


def fd_kinds(pid):
    """nmi's open file descriptors by what they are: API server connections, IMDS connections,
    client connections (to the token port), listening sockets, TCP connections the peer closed
    (CLOSE_WAIT), sockets in no table any more (a closed connection whose descriptor is still
    open), everything else."""
    tcp = _tcp_sockets(pid)
    others = None
    kinds = collections.Counter()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] not in tcp:
            if others is None:
                others = _other_socket_inodes(pid)
            kinds["other" if target[8:-1] in others else "dead"] += 1
        elif target.startswith("socket:["):
            lport, raddr, rport, state = tcp[target[8:-1]]
            if state == "0A":
                kinds["listen"] += 1
            elif state == "08":
                kinds["close_wait"] += 1
            elif rport == devenv.API_PORT:
                kinds["api"] += 1
            elif raddr.endswith(IMDS_HEX) and rport == 80:
                kinds["imds"] += 1
            elif lport == devenv.NMI_PORT:
                kinds["clients"] += 1
            else:
                kinds["other"] += 1
        else:
            kinds["other"] += 1
    return kinds


class Sampler(threading.Thread):
    def __init__(self, env, nmi_pid, outcomes, cluster, stats, every, csv_path, stop, t0,
                 warmup_s):
        super().__init__(daemon=True, name="sampler")
        self.env, self.pid, self.outcomes = env, nmi_pid, outcomes
        self.cluster, self.stats = cluster, stats
        self.every, self.stop, self.t0 = every, stop, t0
        self.node = NetnsCaller(env, env.node_ns)
        self.csv_path = csv_path
        self.run_dir = os.path.dirname(csv_path)
        self.warmup_s = warmup_s
        self.first_post_warmup = os.path.join(self.run_dir, "metrics-after-warmup.txt")
        self.samples = []
        self.log_offset = 0
        self.audit_count = 0
        self.nmi_gone = None
        self.error = None

    def scrape(self):
        def get():
            c = http.client.HTTPConnection("127.0.0.1", devenv.METRICS_PORT, timeout=10)
            try:
                c.request("GET", "/metrics")
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()
        status, body = self.node.call(get, timeout=20)
        if status != 200:
            raise RuntimeError("/metrics answered %d" % status)
        return body

    def proc(self):
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon"):
                    out[k] = int(v.split()[0])
                elif k == "Threads":
                    out[k] = int(v)
        kinds = fd_kinds(self.pid)
        out["fds"] = sum(kinds.values())
        for k in ("api", "imds", "clients", "listen", "close_wait", "dead", "other"):
            out["fds_" + k] = kinds[k]
        return out

    def audit_lines(self):
        """Audit lines nmi logged so far ("token delivered", one per first delivery of a (pod,
        identity, resource, expiry)): the number of digests its AuditLog remembers, up to its
        capacity of 65,536."""
        try:
            with open(self.env.path("logs/nmi.log"), "rb") as f:
                f.seek(self.log_offset)
                data = f.read()
        except OSError:
            return self.audit_count
        cut = data.rfind(b"\n") + 1
        self.audit_count += data[:cut].count(b"nmi.audit token delivered")
        self.log_offset += cut
        return self.audit_count

    def emulator_calls(self):
        """IMDS requests the emulator saw since the last sample (its log is then cleared so that
        the emulator's own memory stays flat; a request finishing between the two calls is not
        counted)."""
        entries = self.env.emulator_control("GET", "/log?listener=imds") or []
        self.env.emulator_control("DELETE", "/log")
        token = [e for e in entries if e.get("route") == "token"
                 or e.get("path", "").lower().startswith(TOKEN_PATH)]
        return len(token), sum(1 for e in token if e.get("status") != 200), \
            len(entries) - len(token)

    def sample(self):
        if not devenv.pid_alive(self.pid, "nmi"):
            self.nmi_gone = time.monotonic() - self.t0
            raise Interrupted("nmi (pid %d) is gone" % self.pid)
        p = self.proc()
        body = self.scrape()
        text = body.decode("utf-8", "replace")
        series = parse_exposition(text)
        lines = text.splitlines()
        try:
            emu = self.emulator_calls()
        except (OSError, devenv.DevenvError) as e:
            self.outcomes.note("emulator_log_error", error=repr(e))
            emu = ("", "", "")
        total, unexpected, transport = self.outcomes.snapshot()
        try:
            log_bytes = os.path.getsize(self.env.path("logs/nmi.log"))
        except OSError:
            log_bytes = ""
        row = {
            "t_s": round(time.monotonic() - self.t0, 1),
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "nmi_pid": self.pid, "rss_kib": p["VmRSS"], "hwm_kib": p["VmHWM"],
            "rss_anon_kib": p["RssAnon"],
            "fds": p["fds"], "fds_api": p["fds_api"], "fds_imds": p["fds_imds"],
            "fds_clients": p["fds_clients"], "fds_listen": p["fds_listen"],
            "fds_close_wait": p["fds_close_wait"], "fds_dead": p["fds_dead"],
            "fds_other": p["fds_other"], "threads": p["Threads"], "nmi_log_bytes": log_bytes,
            "audit_lines": self.audit_lines(),
            "metrics_bytes": len(body), "metrics_lines": len(lines),
            "metrics_series": sum(1 for ln in lines if ln and not ln.startswith("#")),
            "metric_families": sum(1 for ln in lines if ln.startswith("# TYPE ")),
            "cache_entries": msum(series, "nmi_token_cache_entries"),
            "pod_cache_pods": msum(series, "nmi_pod_cache_pods"),
            "connections_active": msum(series, "nmi_connections_active"),
            "requests_waiting": msum(series, "nmi_requests_waiting"),
            "source_staleness_s": msum(series, "nmi_identity_source_staleness_seconds"),
            "cache_hits": msum(series, "nmi_token_cache_requests_total", result="hit"),
            "cache_misses": msum(series, "nmi_token_cache_requests_total", result="miss"),
            "cache_coalesced": msum(series, "nmi_token_cache_requests_total", result="coalesced"),
            "cache_refreshes": msum(series, "nmi_token_cache_requests_total", result="refresh"),
            "token_rejections": msum(series, "nmi_token_rejections_total"),
            "connections_rejected": msum(series, "nmi_connections_rejected_total"),
            "nmi_requests": msum(series, "nmi_requests_total"),
            "upstream_imds_ok": msum(series, "nmi_upstream_requests_total", upstream="imds",
                                     status="200"),
            "upstream_imds_other": msum(series, "nmi_upstream_requests_total", upstream="imds",
                                        status="!200"),
            "upstream_proxy_ok": msum(series, "nmi_upstream_requests_total", upstream="proxy",
                                      status="200"),
            "upstream_proxy_other": msum(series, "nmi_upstream_requests_total", upstream="proxy",
                                         status="!200"),
            "kube_api_errors": msum(series,
                                    "aadpodidentity_kubernetes_api_operations_errors_count"),
            "load_requests": total, "load_unexpected": unexpected,
            "load_transport_events": transport,
            "emu_imds_token_calls": emu[0], "emu_imds_token_not200": emu[1],
            "emu_imds_other_calls": emu[2],
            "apiserver_restarts": self.stats["restarts"],
            "binds": self.cluster.counts["bind"], "unbinds": self.cluster.counts["unbind"],
            "recreations": self.cluster.counts["recreate"],
            "churn_errors": self.stats["churn_errors"],
        }
        self.samples.append(row)
        # Series per metric name (families.jsonl) and the latest exposition: which series came
        # when, for the summary and for a look by hand.
        per_name = collections.Counter(name for name, _ in series)
        with open(os.path.join(self.run_dir, "families.jsonl"), "a") as f:
            f.write(json.dumps({"t_s": row["t_s"], "series": per_name}, sort_keys=True) + "\n")
        with open(os.path.join(self.run_dir, "metrics-last.txt"), "wb") as f:
            f.write(body)
        if not os.path.exists(self.first_post_warmup) and row["t_s"] >= self.warmup_s:
            with open(self.first_post_warmup, "wb") as f:
                f.write(body)
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)
        return row

    def run(self):
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                try:
                    row = self.sample()
                except Interrupted:
                    raise
                except Exception as e:  # noqa: BLE001 - a missed sample is recorded, not fatal
                    if not devenv.pid_alive(self.pid, "nmi"):
                        self.nmi_gone = time.monotonic() - self.t0
                        raise Interrupted("nmi (pid %d) is gone" % self.pid) from e
                    self.outcomes.note("sample_error", error=repr(e))
                else:
                    log("t=%5.0fs rss %.1f MiB (hwm %.1f) fds %d threads %d series %d "
                        "cache %d pods %d conns %d | load %d, unexpected %d"
                        % (row["t_s"], row["rss_kib"] / 1024, row["hwm_kib"] / 1024, row["fds"],
                           row["threads"], row["metrics_series"], row["cache_entries"],
                           row["pod_cache_pods"], row["connections_active"],
                           row["load_requests"], row["load_unexpected"]))
                next_at += self.every
                self.stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        finally:
            self.node.close()


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

def lsq_slope(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def warmup_seconds(run_s):
    """Warm-up: until the token cache can have reached its steady size (CACHE_SETTLE_SEC, 35
    min), but never more than 30 % of the run, so that short runs keep 70 % to measure."""
    return min(CACHE_SETTLE_SEC, 0.3 * run_s)


def cache_bound(run_s):
    """The most tokens the load can make nmi hold at once: every hot resource of every identity,
    plus one key per rotating or unique miss of the last CACHE_SETTLE_SEC (each pod with an
    identity makes at most that many)."""
    window = min(run_s, CACHE_SETTLE_SEC)
    pods = sum(1 for p in PODS if p["identities"])
    per_pod = (min(ROTATE_SET, math.ceil(window / ROTATE_EVERY) + 1)
               + math.ceil(window / UNIQUE_EVERY) + 1)
    return len(HOT) * len(IDENTITIES) + pods * per_pod


# name, column, unit scale, tolerance kind, tolerance
CHECKS = [
    ("VmRSS (MiB)", "rss_kib", 1 / 1024, "slope", 1.0),
    ("open fds", "fds", 1, "growth", 2),
    ("threads", "threads", 1, "growth", 0),
    # One label set of a histogram is 27 lines (25 buckets, _sum, _count): a bounded label value
    # seen for the first time late in the run (a rare status) may add one; a label taking
    # unbounded values keeps adding them.
    ("metric series", "metrics_series", 1, "growth", 27),
    ("token cache entries", "cache_entries", 1, "cache", None),
    ("pod cache pods", "pod_cache_pods", 1, "growth", 0),
]
REPORT_ONLY = [
    ("VmHWM (MiB)", "hwm_kib", 1 / 1024),
    # Anonymous memory only (heap, stacks): VmRSS without the pages of mapped files.
    ("RssAnon (MiB)", "rss_anon_kib", 1 / 1024),
    ("metrics bytes (KiB)", "metrics_bytes", 1 / 1024),
    ("fds: API server", "fds_api", 1),
    ("fds: IMDS", "fds_imds", 1),
    ("fds: clients", "fds_clients", 1),
    ("fds: CLOSE_WAIT", "fds_close_wait", 1),
    ("fds: dead sockets", "fds_dead", 1),
    ("fds: other", "fds_other", 1),
    ("audit log lines", "audit_lines", 1),
    ("connections active", "connections_active", 1),
    ("requests waiting", "requests_waiting", 1),
]


def series_growth(families, since_t):
    """{metric name: [series at the first sample >= since_t, at the last sample]} for every name
    whose number of series changed after warm-up."""
    if not families:
        return {}
    first = next((f for f in families if float(f["t_s"]) >= float(since_t)), families[-1])
    last = families[-1]
    names = set(first["series"]) | set(last["series"])
    return {n: [first["series"].get(n, 0), last["series"].get(n, 0)] for n in sorted(names)
            if first["series"].get(n, 0) != last["series"].get(n, 0)}


def read_families(run_dir):
    try:
        with open(os.path.join(run_dir, "families.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def analyse(samples, run_s, families=()):
    """Growth after warm-up of every sampled figure, and the verdict of each check."""
    warm = warmup_seconds(run_s)
    post = [s for s in samples if float(s["t_s"]) >= warm]
    result = {"warmup_s": round(warm), "run_s": round(run_s), "samples": len(samples),
              "post_warmup_samples": len(post), "checks": [], "report": []}
    if len(post) < 6:
        result["error"] = "too few samples after warm-up (%d; need 6)" % len(post)
        result["pass"] = False
        return result
    span = float(post[-1]["t_s"]) - float(post[0]["t_s"])
    # Windows compared: 10 % of the measured span, at least 3 samples.
    n = max(3, int(round(len(post) * 0.10)))
    result["window_samples"] = n
    settled = warm >= CACHE_SETTLE_SEC

    def figures(col, scale):
        xs = [float(s["t_s"]) / 3600 for s in post]
        ys = [float(s[col]) * scale for s in post]
        first = statistics.median(ys[:n])
        last = statistics.median(ys[-n:])
        return {"start": round(first, 3), "end": round(last, 3), "growth": round(last - first, 3),
                "slope_per_h": round(lsq_slope(xs, ys), 3), "min": round(min(ys), 3),
                "max": round(max(ys), 3),
                "first_sample": round(float(samples[0][col]) * scale, 3),
                "last_sample": round(float(samples[-1][col]) * scale, 3)}

    ok_all = True
    for label, col, scale, kind, tol in CHECKS:
        f = figures(col, scale)
        f["name"] = label
        if kind == "slope":
            f["rule"] = "least-squares slope after warm-up < %g per hour" % tol
            f["pass"] = f["slope_per_h"] < tol
        elif kind == "growth":
            f["rule"] = "last-window median - first-window median <= %g" % tol
            f["pass"] = f["growth"] <= tol
        else:
            bound = cache_bound(run_s)
            if settled:
                tol = max(3, 0.05 * f["start"])
                f["rule"] = ("growth <= %g (5 %% of the start, at least 3) and max <= %d (what "
                             "the load can make nmi hold)" % (round(tol, 1), bound))
                f["pass"] = f["growth"] <= tol and f["max"] <= bound
            else:
                f["rule"] = ("max <= %d, what the load can make nmi hold (the run is too short "
                             "for the cache to settle: %d min, so no flatness check)"
                             % (bound, CACHE_SETTLE_SEC // 60))
                f["pass"] = f["max"] <= bound
        ok_all = ok_all and f["pass"]
        result["checks"].append(f)
    for label, col, scale in REPORT_ONLY:
        if any(s.get(col) in ("", None) for s in post):
            continue
        f = figures(col, scale)
        f["name"] = label
        result["report"].append(f)
    result["series_growth_by_name"] = series_growth(families, post[0]["t_s"])
    result["measured_span_s"] = round(span)
    result["cache_settled"] = settled
    if not settled:
        result["note"] = ("short run: nmi's token cache fills for %d min by design (tokens used "
                          "in the last 30 min are kept fresh), so memory grows with it here; "
                          "the growth verdict means something from %d-minute runs on"
                          % (CACHE_SETTLE_SEC // 60, math.ceil(CACHE_SETTLE_SEC / 0.3 / 60)))
    result["pass"] = ok_all
    return result


def summarize(run_dir, samples, run_s, outcomes_doc, notes):
    a = analyse(samples, run_s, read_families(run_dir))
    doc = {"run_dir": run_dir, "analysis": a}
    doc.update(outcomes_doc)
    doc["notes"] = notes
    errors = []
    if outcomes_doc.get("nmi_died"):
        errors.append("nmi died at t=%ss" % outcomes_doc["nmi_died"])
    if outcomes_doc.get("unexpected_total"):
        errors.append("%d unexpected answers" % outcomes_doc["unexpected_total"])
    if outcomes_doc.get("left_behind"):
        errors.append("devenv down left behind: %s" % ", ".join(outcomes_doc["left_behind"]))
    if outcomes_doc.get("interrupted"):
        errors.append("interrupted: %s" % outcomes_doc["interrupted"])
    doc["errors"] = errors
    doc["pass"] = bool(a.get("pass")) and not errors
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(doc, f, indent=1, default=str)
    return doc


def print_summary(doc):
    a = doc["analysis"]
    out = []
    out.append("")
    out.append("== nmi soak: %s" % doc["run_dir"])
    out.append("run %.1f min, warm-up %.1f min, %d samples (%d after warm-up, windows of %s)"
               % (a["run_s"] / 60, a["warmup_s"] / 60, a["samples"], a["post_warmup_samples"],
                  a.get("window_samples", "-")))
    if "error" in a:
        out.append("analysis: " + a["error"])
    if "note" in a:
        out.append("note: " + a["note"])
    for f in a.get("checks", []) + a.get("report", []):
        verdict = ("PASS" if f["pass"] else "FAIL") if "pass" in f else "    "
        out.append("  %-4s %-22s start %10.2f -> end %10.2f  growth %+9.2f  slope %+9.2f/h  "
                   "(first sample %.2f, last %.2f)"
                   % (verdict, f["name"], f["start"], f["end"], f["growth"], f["slope_per_h"],
                      f["first_sample"], f["last_sample"]))
        if "rule" in f:
            out.append("         %s" % f["rule"])
    if a.get("series_growth_by_name"):
        out.append("series that came or went after warm-up (name: first post-warm-up -> last):")
        for name, (first, last) in a["series_growth_by_name"].items():
            out.append("  %s: %d -> %d" % (name, first, last))
    lo = doc.get("load", {})
    if lo:
        out.append("load: %d requests (%.1f/s); by kind and status:"
                   % (lo["total"], lo["total"] / max(1, a["run_s"])))
        for kind, statuses in sorted(lo["by_kind"].items()):
            out.append("  %-18s %s" % (kind, ", ".join("%s: %d" % kv
                                                       for kv in sorted(statuses.items()))))
    out.append("unexpected answers: %d%s" % (
        doc.get("unexpected_total", 0),
        "" if not doc.get("unexpected") else " (" + ", ".join(
            "%s %s %s: %d" % (k["kind"], k["role"], k["status"], k["count"])
            for k in doc["unexpected"]) + "; events.jsonl has each with its time)"))
    if doc.get("transport"):
        out.append("other events: " + ", ".join("%s %d" % kv for kv in doc["transport"].items()))
    if doc.get("churn"):
        out.append("churn: " + ", ".join("%s %s" % kv for kv in doc["churn"].items()))
    for e in doc.get("errors", []):
        out.append("error: " + e)
    out.append("RESULT: %s" % ("PASS" if doc["pass"] else "FAIL"))
    print("\n".join(out), flush=True)


def plot(run_dir, samples, run_s):
    """soak.png: memory, fds/threads, caches, metrics, connections and load over time."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing (scripts/setup installs it in the test virtualenv); "
            "no plot. Later: bench/soak.py --plot %s" % run_dir)
        return None
    t = [float(s["t_s"]) / 60 for s in samples]

    def col(name, scale=1.0):
        return [float(s[name]) * scale if s.get(name) not in ("", None) else float("nan")
                for s in samples]

    def deltas(name, per=60.0):
        v = col(name)
        out = [float("nan")]
        for i in range(1, len(v)):
            dt = (t[i] - t[i - 1]) * 60
            out.append((v[i] - v[i - 1]) / dt * per if dt > 0 else float("nan"))
        return out

    warm = warmup_seconds(run_s) / 60
    restarts = [float(s["t_s"]) / 60 for i, s in enumerate(samples)
                if i and s["apiserver_restarts"] != samples[i - 1]["apiserver_restarts"]]
    fig, axes = plt.subplots(3, 2, figsize=(14, 11), sharex=True)
    ax = axes[0][0]
    ax.plot(t, col("rss_kib", 1 / 1024), label="VmRSS")
    ax.plot(t, col("hwm_kib", 1 / 1024), label="VmHWM", linestyle="--")
    ax.set_ylabel("MiB")
    ax.set_title("nmi memory")
    ax2 = ax.twinx()
    ax2.plot(t, col("rss_anon_kib", 1 / 1024), color="tab:green", label="RssAnon (heap, stacks)")
    ax2.set_ylabel("RssAnon MiB", color="tab:green")
    ax2.legend(loc="lower right", fontsize=8)
    ax = axes[0][1]
    ax.plot(t, col("fds"), label="open fds")
    ax.plot(t, col("fds_api"), label="fds: API server", linewidth=0.8)
    ax.plot(t, col("fds_imds"), label="fds: IMDS", linewidth=0.8)
    ax.plot(t, [a + b for a, b in zip(col("fds_close_wait"), col("fds_dead"))],
            label="fds: closed by the peer (CLOSE_WAIT or dead)", linewidth=0.8)
    ax.plot(t, col("threads"), label="threads")
    ax.plot(t, col("connections_active"), label="nmi_connections_active")
    ax.plot(t, col("requests_waiting"), label="nmi_requests_waiting")
    ax.set_title("file descriptors, threads, connections")
    ax = axes[1][0]
    ax.plot(t, col("cache_entries"), label="nmi_token_cache_entries")
    ax.plot(t, col("pod_cache_pods"), label="nmi_pod_cache_pods")
    ax.axhline(cache_bound(run_s), color="grey", linestyle=":", label="cache bound of the load")
    ax.set_title("caches")
    ax = axes[1][1]
    ax.plot(t, col("metrics_series"), label="series (lines without #)")
    ax.set_ylabel("series")
    ax2 = ax.twinx()
    ax2.plot(t, col("metrics_bytes", 1 / 1024), color="tab:red", label="exposition KiB")
    ax2.set_ylabel("KiB", color="tab:red")
    ax2.legend(loc="lower right", fontsize=8)
    ax.set_title("/metrics exposition")
    ax = axes[2][0]
    ax.plot(t, deltas("load_requests"), label="load requests/min")
    ax.plot(t, deltas("cache_misses"), label="cache misses/min")
    ax.plot(t, deltas("cache_refreshes"), label="background refreshes/min")
    ax.plot(t, deltas("upstream_proxy_ok"), label="proxied 200/min")
    ax.set_yscale("symlog")
    ax.set_title("traffic (per minute)")
    ax.set_xlabel("minutes")
    ax = axes[2][1]
    ax.plot(t, col("load_unexpected"), label="unexpected answers (cumulative)", color="tab:red")
    ax.plot(t, col("token_rejections"), label="nmi_token_rejections_total")
    ax.plot(t, col("upstream_imds_other"), label="upstream imds non-200")
    ax.plot(t, col("kube_api_errors"), label="kube API errors (nmi)")
    ax.set_title("errors (cumulative)")
    ax.set_xlabel("minutes")
    for row in axes:
        for a in row:
            a.axvspan(0, warm, color="grey", alpha=0.12, lw=0)
            for r in restarts:
                a.axvline(r, color="tab:purple", alpha=0.35, lw=0.8)
            a.grid(alpha=0.3)
            a.legend(loc="upper left", fontsize=8)
    fig.suptitle("nmi soak, %.0f min (grey: warm-up; purple: API server restarts)" % (run_s / 60))
    fig.tight_layout()
    path = os.path.join(run_dir, "soak.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def outcomes_doc(outcomes):
    by_kind = collections.defaultdict(collections.Counter)
    by_role = collections.defaultdict(lambda: collections.defaultdict(collections.Counter))
    for (kind, role, status), n in outcomes.counts.items():
        by_kind[kind][str(status)] += n
        by_role[kind][role][str(status)] += n
    lat = {k: {"n": v[0], "mean_ms": round(v[1] / v[0] * 1000, 2) if v[0] else 0,
               "max_ms": round(v[2] * 1000, 1), "over_1s": outcomes.slow.get(k, 0)}
           for k, v in outcomes.latency.items()}
    return {
        "load": {"total": outcomes.total, "by_kind": {k: dict(v) for k, v in by_kind.items()},
                 "by_kind_and_role": {k: {r: dict(c) for r, c in v.items()}
                                      for k, v in by_role.items()},
                 "latency": lat},
        "unexpected_total": outcomes.unexpected_total,
        "unexpected": [{"kind": k, "role": r, "status": str(s), "count": n}
                       for (k, r, s), n in sorted(outcomes.unexpected.items(), key=str)],
        "transport": dict(outcomes.transport),
    }


def read_samples(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def soak_config():
    return {
        "pods": [{"name": p["name"], "namespace": p["namespace"], "selector": p["selector"]}
                 for p in PODS],
        "user_assigned": [devenv.ua(name) for name in IDENTITIES],
        "apps": [],
        "token_lifetime_sec": TOKEN_LIFETIME_SEC,
    }


def run(args):
    minutes = args.minutes
    run_s = minutes * 60
    every = args.sample_every or (10 if minutes < 60 else 60)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.abspath(args.out or os.path.join(args.build, "soak", stamp))
    os.makedirs(run_dir, exist_ok=True)
    for b in ("nmi", "azure-emulator"):
        if not os.access(os.path.join(args.build, "bin", b), os.X_OK):
            log("%s/bin/%s is missing (make build)" % (args.build, b))
            return 2
    if os.geteuid() != 0:
        log("needs root (network namespaces)")
        return 2
    if importlib.util.find_spec("matplotlib") is None:
        log("matplotlib is missing: the run goes on, but draws no plot (scripts/setup installs "
            "it in the test virtualenv; then bench/soak.py --plot RUN_DIR)")
    work = tempfile.mkdtemp(prefix="nmi-soak-")
    prefix = "nmi-sk%d-" % os.getpid()
    nmi_args = NMI_TOKEN_ARGS + list(args.nmi_arg)
    # Copies of the binaries, so that a rebuild during a two-hour run changes nothing under it.
    binaries = os.path.join(run_dir, "bin")
    os.makedirs(binaries, exist_ok=True)
    for b in ("nmi", "azure-emulator"):
        shutil.copy2(os.path.join(args.build, "bin", b), os.path.join(binaries, b))
    env = devenv.Devenv(os.path.join(work, "devenv"), prefix=prefix,
                        nmi_binary=os.path.join(binaries, "nmi"),
                        emulator_binary=os.path.join(binaries, "azure-emulator"),
                        config=soak_config(), nmi_args=nmi_args, verbosity=args.nmi_verbosity)
    stop = threading.Event()
    threads = []
    t0 = time.monotonic()
    outcomes = Outcomes(os.path.join(run_dir, "events.jsonl"), t0)
    stats = collections.Counter()
    sampler = None
    cluster = None
    interrupted = None
    nmi_died = None
    restart_times = []
    left = []

    def on_term(signum, frame):
        raise Interrupted("signal %d" % signum)

    old_term = signal.signal(signal.SIGTERM, on_term)
    settings = {"minutes": minutes, "sample_every_s": every, "build": os.path.abspath(args.build),
                "nmi_args": nmi_args, "nmi_verbosity": args.nmi_verbosity,
                "token_lifetime_sec": TOKEN_LIFETIME_SEC, "pods": PODS, "hot": HOT,
                "rotate": {"set": ROTATE_SET, "every_s": ROTATE_EVERY},
                "unique_every_s": UNIQUE_EVERY, "pod_interval_s": args.pod_interval,
                "host_interval_s": args.host_interval, "fresh_share": FRESH_SHARE,
                "restart_every_s": args.restart_every, "bind_every_s": args.bind_every,
                "recreate_every_s": args.recreate_every, "devenv_prefix": prefix,
                "started": datetime.datetime.now().isoformat(timespec="seconds")}
    with open(os.path.join(run_dir, "settings.json"), "w") as f:
        json.dump(settings, f, indent=1)
    try:
        log("run directory %s; devenv in %s (namespaces %s*)" % (run_dir, env.dir, prefix))
        env.up(log=log)
        nmi_pid = env.nmi_pid()
        cluster = Cluster(env, outcomes)
        cluster.setup()
        client_ids = {name: u["client_id"] for name, u in cluster.ua.items()}
        prime(env, cluster, outcomes)
        t0 = time.monotonic()
        outcomes.t0 = t0
        sampler = Sampler(env, nmi_pid, outcomes, cluster, stats, every,
                          os.path.join(run_dir, "samples.csv"), stop, t0, warmup_seconds(run_s))
        for i, spec in enumerate(PODS):
            pod = env.pod(spec["namespace"] + "/" + spec["name"])
            threads.append(PodLoad(env, pod, spec, outcomes, stop, args.pod_interval, client_ids,
                                   seed=args.seed + i))
        threads.append(HostLoad(env, PODS, outcomes, stop, args.host_interval, client_ids,
                                seed=args.seed + 100))
        for th in threads:
            th.start()
        sampler.start()
        log("load running for %d min (nmi pid %d, samples every %d s)" % (minutes, nmi_pid, every))
        # The controller: one schedule of cluster changes, in this thread.
        schedule = {"bind": args.bind_every * 0.33, "recreate": args.recreate_every * 0.83,
                    "restart": float(args.restart_every)}
        every_of = {"bind": args.bind_every, "recreate": args.recreate_every,
                    "restart": args.restart_every}
        while True:
            now = time.monotonic() - t0
            if now >= run_s:
                break
            for th in threads:
                if not th.is_alive():
                    raise RuntimeError("load thread %s died: %r" % (th.name, th.error))
            if sampler.error is not None:
                if sampler.nmi_gone is not None:
                    nmi_died = sampler.nmi_gone
                raise sampler.error
            action = min(schedule, key=schedule.get)
            due = schedule[action]
            if due > now:
                time.sleep(min(1.0, due - now, max(0.0, run_s - now)))
                continue
            schedule[action] = due + every_of[action]
            if due >= run_s:
                continue
            try:
                if action == "restart":
                    d = restart_apiserver(env)
                    stats["restarts"] += 1
                    restart_times.append(round(d, 1))
                    outcomes.event("apiserver_restarted", seconds=round(d, 1))
                    log("API server restarted in %.1f s" % d)
                elif action == "bind":
                    cluster.rebind_tick()
                else:
                    cluster.recreate_tick()
            except (devenv.DevenvError, OSError, subprocess.SubprocessError) as e:
                stats["churn_errors"] += 1
                outcomes.note("churn_error", action=action, error=repr(e)[:400])
                log("%s failed: %r" % (action, e))
        log("duration reached; stopping the load")
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = str(e) or type(e).__name__
        if sampler is not None and sampler.nmi_gone is not None:
            nmi_died = sampler.nmi_gone
        log("interrupted: %s" % interrupted)
    except Exception as e:  # noqa: BLE001 - the run fails, the cleanup below still happens
        interrupted = "harness error: %r" % e
        log(interrupted)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop.set()
        for th in threads:
            th.join(35)
        if sampler is not None:
            sampler.join(30)
            if sampler.nmi_gone is not None:
                nmi_died = sampler.nmi_gone
        # Keep the daemons' logs before `down` removes the devenv's directory.
        for name in ("nmi", "emulator"):
            src = env.path(os.path.join("logs", name + ".log"))
            if os.path.exists(src):
                shutil.copy(src, os.path.join(run_dir, name + ".log"))
        kube_log = os.path.join(env.state["kube_dir"], "logs", "kube-apiserver.log")
        if os.path.exists(kube_log):
            shutil.copy(kube_log, os.path.join(run_dir, "kube-apiserver.log"))
        pids = env.all_pids()
        try:
            env.down(log=log)
        except Exception as e:  # noqa: BLE001
            log("devenv down failed: %r" % e)
        left = env.leftovers(pids)
        if left:
            log("left behind: %s" % ", ".join(left))
        shutil.rmtree(work, ignore_errors=True)
        outcomes.events.close()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    samples = sampler.samples if sampler is not None else []
    actual_s = samples and float(samples[-1]["t_s"]) or 0
    doc = outcomes_doc(outcomes)
    doc["churn"] = {"apiserver_restarts": stats["restarts"],
                    "restart_seconds": restart_times,
                    "binds": cluster.counts["bind"] if cluster else 0,
                    "unbinds": cluster.counts["unbind"] if cluster else 0,
                    "pod_recreations": cluster.counts["recreate"] if cluster else 0,
                    "churn_errors": stats["churn_errors"]}
    doc["interrupted"] = interrupted
    doc["nmi_died"] = nmi_died
    doc["left_behind"] = left
    doc["settings"] = settings
    notes = []
    if actual_s < run_s * 0.95:
        notes.append("the run ended early (%.0f of %.0f s)" % (actual_s, run_s))
    result = summarize(run_dir, samples, max(actual_s, 1), doc, notes)
    if samples:
        png = plot(run_dir, samples, max(actual_s, 1))
        if png:
            log("plot: %s" % png)
    print_summary(result)
    if interrupted and not nmi_died and "harness" not in interrupted:
        return 130
    if interrupted and "harness" in interrupted:
        return 2
    return 0 if result["pass"] else 1


def replot(run_dir):
    samples = read_samples(os.path.join(run_dir, "samples.csv"))
    run_s = float(samples[-1]["t_s"])
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            old = json.load(f)
    except OSError:
        old = {}
    keep = {k: v for k, v in old.items() if k not in ("analysis", "run_dir", "pass", "errors",
                                                      "notes")}
    result = summarize(run_dir, samples, run_s, keep, old.get("notes", []))
    png = plot(run_dir, samples, run_s)
    if png:
        log("plot: %s" % png)
    print_summary(result)
    return 0 if result["pass"] else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.environ.get("BUILD_DIR") or os.path.join(REPO, "build"),
                   help="build directory holding bin/nmi and bin/azure-emulator")
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 120),
                   help="duration of the load (default $SOAK_MINUTES or 120)")
    p.add_argument("--out", help="run directory (default BUILD/soak/<timestamp>)")
    p.add_argument("--sample-every", type=float, default=0,
                   help="seconds between samples (default 60; 10 for runs under an hour)")
    p.add_argument("--restart-every", type=float, default=600, help="API server restarts (s)")
    p.add_argument("--bind-every", type=float, default=60, help="bind/unbind period (s)")
    p.add_argument("--recreate-every", type=float, default=60, help="pod re-creation period (s)")
    p.add_argument("--pod-interval", type=float, default=0.5,
                   help="mean seconds between two requests of one pod")
    p.add_argument("--host-interval", type=float, default=2.0,
                   help="mean seconds between two /host/token requests")
    p.add_argument("--nmi-verbosity", type=int, default=0, help="nmi -v (default 0, the chart's)")
    p.add_argument("--nmi-arg", action="append", default=[], help="extra nmi flag (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plot", metavar="RUN_DIR", help="only redraw the plot and summary of a run")
    args = p.parse_args()
    if args.plot:
        return replot(args.plot)
    args.build = os.path.abspath(args.build)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
