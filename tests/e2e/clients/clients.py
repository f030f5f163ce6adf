"""Build, cache and run nmi's end-to-end SDK clients (standard library only).

Four clients ask IMDS at 169.254.169.254 for a token with the real Azure SDKs and no endpoint
override, so that inside a pod network namespace every request goes through nmi's interception:

  python  azure-identity from the test virtualenv (tests/requirements.txt)
  js      @azure/identity 4.13.1, `npm ci` from js/package-lock.json
  go      azidentity, go.mod + go.sum, built with -trimpath
  java    com.azure:azure-identity (azure-sdk-bom), jar + target/lib

Everything built lives under $NMI_CACHE_DIR/e2e (default /var/cache/nmi/e2e), in directories keyed
by the hash of the inputs (js-<hash>, go-<hash>, java-<hash>), so a second build is a no-op and a
changed lockfile or source gets a fresh directory. build() writes <cache>/clients.json:

  {"python": {"argv": [...], "version": "1.27.0", "key": "..."}, "js": {...}, ...}

Every client takes `--credential managed|default [--client-id ID] --resource URL|SCOPE` and prints
one JSON line: {"sdk", "credential", "version", "ok": true, "claims": {...}, "expires_on": N,
"elapsed_ms": N} or {"ok": false, "error": "..."} with exit status 1. The token itself is never
printed. run() starts one (optionally in a network namespace) with a scrubbed environment.
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
SDKS = ("python", "js", "go", "java")

# Variables that would point an SDK somewhere other than 169.254.169.254, or through a proxy, or at
# another credential: run() removes them unless the caller passes them on purpose.
SCRUBBED_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "MSAL_")
SCRUBBED_NAMES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "JAVA_TOOL_OPTIONS",
                  "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "NODE_OPTIONS", "GODEBUG")


class BuildError(RuntimeError):
    pass


def cache_dir():
    return os.path.join(os.environ.get("NMI_CACHE_DIR") or "/var/cache/nmi", "e2e")


def manifest_path():
    return os.path.join(cache_dir(), "clients.json")


def _hash_files(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.relpath(p, HERE).encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()[:12]


def _files_under(d, suffix):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.join(root, f) for f in files if f.endswith(suffix)]
    return sorted(out)


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise BuildError("%s not found on PATH (scripts/setup installs it)" % name)
    return path


def _run(argv, log, cwd=None, env=None, timeout=900):
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    log("  %s (%.1f s)" % (" ".join(os.path.basename(a) if i == 0 else a
                                     for i, a in enumerate(argv)), time.monotonic() - t0))
    if r.returncode != 0:
        raise BuildError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode,
                                                  r.stdout[-4000:], r.stderr[-4000:]))
    return r


def _fresh_dir(final):
    """A temporary sibling of `final`, renamed into place by _commit() once complete."""
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=os.path.basename(final) + ".tmp-", dir=parent)


def _commit(tmp, final):
    with open(os.path.join(tmp, ".complete"), "w") as f:
        f.write(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


def _done(d):
    return os.path.exists(os.path.join(d, ".complete"))


# -- the four clients ---------------------------------------------------------------------------

def build_python(log, previous, python=None):
    python = python or os.path.join(os.path.dirname(cache_dir()), "venv", "bin", "python")
    if not os.path.exists(python):
        raise BuildError("%s missing: scripts/setup creates the test virtualenv" % python)
    # The installed version from the distribution's metadata (cheap), checked by an import only
    # when the interpreter or that version changed since the last build.
    r = _run([python, "-c", "import importlib.metadata as m; print(m.version('azure-identity'))"],
             lambda *_: None)
    version = r.stdout.strip()
    key = hashlib.sha256((os.path.realpath(python) + "\0" + version).encode()).hexdigest()[:12]
    if previous.get("key") != key:
        _run([python, "-c", "import azure.identity"], log)
    return {"argv": [python, os.path.join(HERE, "python", "client.py")], "version": version,
            "key": key}


def build_js(log):
    src = os.path.join(HERE, "js")
    key = _hash_files([os.path.join(src, "package.json"), os.path.join(src, "package-lock.json")])
    d = os.path.join(cache_dir(), "js-" + key)
    if not _done(d):
        node, npm = _tool("node"), _tool("npm")
        major = _run([node, "-p", "process.versions.node.split('.')[0]"], lambda *_: None)
        if int(major.stdout.strip()) < 20:
            raise BuildError("@azure/identity 4.13.1 needs Node.js >= 20, %s is %s"
                             % (node, major.stdout.strip()))
        log("js: npm ci into %s" % d)
        tmp = _fresh_dir(d)
        try:
            for f in ("package.json", "package-lock.json"):
                shutil.copy(os.path.join(src, f), tmp)
            env = dict(os.environ, npm_config_update_notifier="false")
            _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
                  "--cache", os.path.join(cache_dir(), "npm-cache")], log, cwd=tmp, env=env)
            _run([node, "-e", "require('@azure/identity')"], log, cwd=tmp)
            _commit(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    with open(os.path.join(d, "node_modules", "@azure", "identity", "package.json")) as f:
        version = json.load(f)["version"]
    return {"argv": ["/usr/bin/env", "NODE_PATH=" + os.path.join(d, "node_modules"),
                     _tool("node"), os.path.join(src, "client.js")],
            "version": version, "key": key}


def go_env():
    c = cache_dir()
    return dict(os.environ, GOMODCACHE=os.path.join(c, "go-mod"),
                GOCACHE=os.path.join(c, "go-build"), GOFLAGS="-modcacherw -mod=readonly",
                CGO_ENABLED="0", GOTOOLCHAIN="local", GOWORK="off")


def build_go(log):
    src = os.path.join(HERE, "go")
    key = _hash_files([os.path.join(src, f) for f in ("go.mod", "go.sum")]
                      + _files_under(src, ".go"))
    d = os.path.join(cache_dir(), "go-" + key)
    binary = os.path.join(d, "client")
    if not _done(d):
        go = _tool("go")
        log("go: building %s" % binary)
        tmp = _fresh_dir(d)
        try:
            _run([go, "build", "-trimpath", "-o", os.path.join(tmp, "client"), "."], log,
                 cwd=src, env=go_env())
            _commit(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    version = ""
    with open(os.path.join(src, "go.mod")) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and words[0].endswith("/sdk/azidentity"):
                version = words[1]
    return {"argv": [binary], "version": version, "key": key}


JAVA_OPTS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k"]


def build_java(log):
    src = os.path.join(HERE, "java")
    inputs = [os.path.join(src, "pom.xml")] + _files_under(os.path.join(src, "src"), ".java")
    key = _hash_files(inputs)
    d = os.path.join(cache_dir(), "java-" + key)
    jar = os.path.join(d, "target", "nmi-e2e-client.jar")
    if not _done(d):
        mvn = _tool("mvn")
        _tool("java")
        log("java: mvn package in %s" % d)
        tmp = _fresh_dir(d)
        try:
            shutil.copy(os.path.join(src, "pom.xml"), tmp)
            shutil.copytree(os.path.join(src, "src"), os.path.join(tmp, "src"))
            _run([mvn, "-B", "-q", "-Dmaven.repo.local=" + os.path.join(cache_dir(), "m2"),
                  "package"], log, cwd=tmp)
            _commit(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    version = ""
    for f in os.listdir(os.path.join(d, "target", "lib")):
        if f.startswith("azure-identity-") and f.endswith(".jar"):
            version = f[len("azure-identity-"):-len(".jar")]
    return {"argv": [_tool("java")] + JAVA_OPTS + ["-jar", jar], "version": version, "key": key}


BUILDERS = {"python": build_python, "js": build_js, "go": build_go, "java": build_java}


def build(sdks=SDKS, log=None, python=None):
    """Builds (or finds cached) the given clients; returns and writes the manifest."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    os.makedirs(cache_dir(), exist_ok=True)
    with open(os.path.join(cache_dir(), ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = {}
        if os.path.exists(manifest_path()):
            with open(manifest_path()) as f:
                manifest = json.load(f)
        for sdk in sdks:
            t0 = time.monotonic()
            if sdk == "python":
                entry = build_python(log, manifest.get("python", {}), python)
            else:
                entry = BUILDERS[sdk](log)
            entry["ready_seconds"] = round(time.monotonic() - t0, 2)
            manifest[sdk] = entry
        tmp = manifest_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        os.rename(tmp, manifest_path())
    return manifest


def load_manifest():
    with open(manifest_path()) as f:
        return json.load(f)


# -- running ------------------------------------------------------------------------------------

def clean_env(extra=None):
    """The caller's environment without anything that could redirect an SDK (see
    SCRUBBED_PREFIXES), plus `extra` (e.g. {"AZURE_CLIENT_ID": ...} set on purpose)."""
    env = {}
    for k, v in os.environ.items():
        if k.startswith(SCRUBBED_PREFIXES) or k in SCRUBBED_NAMES or k.lower() in SCRUBBED_NAMES:
            continue
        env[k] = v
    env.update(extra or {})
    return env


def command(sdk, credential, resource, client_id=None, netns=None, manifest=None):
    """The argv that runs one client, inside `ip netns exec <netns>` when netns is given."""
    entry = (manifest or load_manifest())[sdk]
    argv = list(entry["argv"]) + ["--credential", credential, "--resource", resource]
    if client_id:
        argv += ["--client-id", client_id]
    return (["ip", "netns", "exec", netns] if netns else []) + argv


def run(sdk, credential, resource, client_id=None, netns=None, env=None, timeout=120,
        manifest=None):
    """Runs one client; returns its JSON line as a dict, plus "rc", "stderr" and "wall_s"."""
    argv = command(sdk, credential, resource, client_id, netns, manifest)
    t0 = time.monotonic()
    p = subprocess.run(argv, env=clean_env(env), capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    try:
        out = json.loads(lines[-1]) if len(lines) == 1 else None
    except ValueError:
        out = None
    if out is None:
        out = {"ok": False, "error": "expected one JSON line, got: %r" % p.stdout[-2000:]}
    out.update({"rc": p.returncode, "stderr": p.stderr[-4000:], "wall_s": round(wall, 2)})
    return out
