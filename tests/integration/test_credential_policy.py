"""Where nmi sends a service principal's credential (issue 10, seam 5): under --forceNamespaced
only a Secret of the identity's own namespace is used, and in every mode the credential goes
only to the Azure clouds' Azure AD or a host the operator lists (--aad-allowed-hosts). Both
refusals are a 403 IMDS-shaped error to the pod and one log line. Pods: 127.0.10.x."""
import copy
import socket
import threading
import time

import pytest

from nmi_pytest import harness
from conftest import SP_SECRET, SP_SECRET_ID
from nmi_pytest.harness import TENANT, assert_json_error, assert_token, assigned, azure_identity, pod, secret

FILE_INDEX = 10
SECRET_REFUSED = "The identity's credential Secret is not in the identity's namespace"
HOST_REFUSED = "The identity's Azure AD host is not allowed by nmi"
UNAVAILABLE = "A token could not be obtained at this time"
FLAGS = ["--pod-wait-timeout-ms=300"]


class ConnectionRecorder:
    """A TCP listener on 127.0.0.1 that accepts, records and closes every connection: a host a
    credential must never reach. `count` is the number of connections seen."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.received = b""
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def authority(self):
        return "127.0.0.1:%d" % self.port

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.count += 1
            conn.settimeout(1.0)
            try:
                self.received += conn.recv(4096)  # a TLS ClientHello, if anything
            except OSError:
                pass
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def recorder():
    r = ConnectionRecorder()
    yield r
    r.close()


def sp_identity(name, ns, ad_endpoint, secret_ref):
    return azure_identity(name, ns, SP_SECRET_ID, type=1, tenant_id=TENANT,
                          ad_endpoint=ad_endpoint, secret_ref=secret_ref)


@pytest.fixture(scope="module")
def world(ips, emulator, recorder):
    """Pods in namespaces "victim" and "evil", each assigned one service principal identity."""
    w = {"ip": {}, "objects": []}
    add = w["objects"].append
    ad = emulator.aad_url + "/"
    add(secret("sp-creds", "victim", {"clientSecret": SP_SECRET}))
    add(secret("evil-creds", "evil", {"clientSecret": SP_SECRET}))
    idents = {
        # The victim's own service principal, its Secret beside it.
        "victim": sp_identity("id-sp", "victim", ad, ("victim", "sp-creds")),
        # An identity in "evil" naming the victim's Secret.
        "steal": sp_identity("id-steal", "evil", ad, ("victim", "sp-creds")),
        # clientPassword without a namespace: the identity's own.
        "own-empty-ns": sp_identity("id-own", "evil", ad, ("", "evil-creds")),
        # Azure AD hosts that are not allowed, each with a Secret of its own namespace.
        "unlisted": sp_identity("id-unlisted", "evil", "https://%s/" % recorder.authority,
                                ("evil", "evil-creds")),
        "userinfo": sp_identity("id-userinfo", "evil",
                                "https://login.microsoftonline.com@%s/" % recorder.authority,
                                ("evil", "evil-creds")),
        "plain-http": sp_identity("id-http", "evil", "http://%s/" % recorder.authority,
                                  ("evil", "evil-creds")),
        # The emulator's own Azure AD: allowed only when listed.
        "emulator": sp_identity("id-emu", "evil", ad, ("evil", "evil-creds")),
    }
    for key, ident in idents.items():
        ns = ident["metadata"]["namespace"]
        add(ident)
        w["ip"][key] = ips.next()
        p = pod("pod-" + key, ns, w["ip"][key])
        add(p)
        add(assigned(p, ident))
    return w


def aad_calls(emulator, since):
    return [e for e in emulator.log("aad") if e["seq"] > since]


def refusal_lines(nmi, offset):
    return [line for line in nmi.log_since(offset).splitlines()
            if "service principal refused" in line]


# ---------------------------------------------------------------------------------------------
# Secrets: only the identity's namespace under --forceNamespaced
# ---------------------------------------------------------------------------------------------

def test_secret_of_another_namespace_is_refused(emulator, world, make_nmi):
    n = make_nmi(emulator, world["objects"], FLAGS + ["--forceNamespaced"])
    since = harness.last_seq(emulator)
    offset = n.log_size()
    r = n.token(world["ip"]["steal"], "https://vault.azure.net/steal")
    assert_json_error(r, 403, SECRET_REFUSED, "forbidden")
    assert r.elapsed < 0.5, "took %.3f s" % r.elapsed
    assert aad_calls(emulator, since) == []  # the credential never left nmi
    lines = refusal_lines(n, offset)
    assert len(lines) == 1, n.log_since(offset)
    assert "identity=evil/id-steal" in lines[0] and "pod=evil/pod-steal" in lines[0], lines
    assert 'secret_namespace="victim"' in lines[0], lines
    assert SP_SECRET not in n.log()
    # Refused every time, never from a cache.
    assert_json_error(n.token(world["ip"]["steal"], "https://vault.azure.net/steal"), 403,
                      SECRET_REFUSED)
    # The victim's own identity, Secret in its namespace, works in the same nmi.
    res = "https://vault.azure.net/victim"
    assert_token(n.token(world["ip"]["victim"], res), res, SP_SECRET_ID)
    assert [c["status"] for c in aad_calls(emulator, since)] == [200]


def test_managed_mode_refuses_it_too(emulator, world, make_nmi):
    """Managed mode implies --forceNamespaced: a binding instead of an assignment."""
    objs = [copy.deepcopy(o) for o in world["objects"] if o["kind"] != "AzureAssignedIdentity"]
    for o in objs:
        if o["kind"] == "Pod" and o["metadata"]["name"] == "pod-steal":
            o["metadata"]["labels"] = {"aadpodidbinding": "steal"}
    objs.append(harness.binding("bind-steal", "evil", "id-steal", "steal"))
    n = make_nmi(emulator, objs, FLAGS + ["--operation-mode=managed", "--forceNamespaced"])
    since = harness.last_seq(emulator)
    r = n.token(world["ip"]["steal"], "https://vault.azure.net/steal-managed")
    assert_json_error(r, 403, SECRET_REFUSED, "forbidden")
    assert aad_calls(emulator, since) == []


def test_empty_secret_namespace_means_the_identitys(emulator, world, make_nmi):
    n = make_nmi(emulator, world["objects"], FLAGS + ["--forceNamespaced"])
    res = "https://vault.azure.net/own"
    assert_token(n.token(world["ip"]["own-empty-ns"], res), res, SP_SECRET_ID)


def test_without_force_namespaced_any_namespace_is_read(emulator, world, make_nmi):
    """Outside namespaced mode the original's behaviour is kept: whoever may write an
    AzureIdentity may name any Secret nmi can read (docs/compat.md)."""
    n = make_nmi(emulator, world["objects"], FLAGS)
    res = "https://vault.azure.net/not-namespaced"
    assert_token(n.token(world["ip"]["steal"], res), res, SP_SECRET_ID)
    assert_token(n.token(world["ip"]["own-empty-ns"], res), res, SP_SECRET_ID)


# ---------------------------------------------------------------------------------------------
# Azure AD hosts: the Azure clouds, plus --aad-allowed-hosts
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,host", [
    ("unlisted", "127.0.0.1:{port}"),
    ("userinfo", "(unparsable)"),
    ("plain-http", "127.0.0.1:{port}"),
])
def test_unlisted_host_is_refused_and_nothing_is_sent(emulator, world, recorder, make_nmi,
                                                       key, host):
    for flags in (FLAGS, FLAGS + ["--forceNamespaced"]):
        n = make_nmi(emulator, world["objects"], flags)
        before = recorder.count
        offset = n.log_size()
        r = n.token(world["ip"][key], "https://vault.azure.net/" + key)
        assert_json_error(r, 403, HOST_REFUSED, "forbidden")
        assert r.elapsed < 0.5, "took %.3f s" % r.elapsed
        time.sleep(0.2)  # a negative check: no connection to the host for 0.2 s after the answer
        assert recorder.count == before, "nmi connected to the unlisted host"
        lines = refusal_lines(n, offset)
        assert len(lines) == 1, n.log_since(offset)
        assert "identity=evil/id-" in lines[0], lines
        assert "host=" + host.format(port=recorder.port) in lines[0], lines
        assert SP_SECRET not in n.log()


def test_listing_the_host_lets_the_request_out(emulator, world, recorder, make_nmi):
    """The same identity once the operator lists its host: nmi connects there (the recorder is no
    Azure AD, so the pod then gets a 503). This also shows the recorder would have seen nmi."""
    n = make_nmi(emulator, world["objects"],
                 FLAGS + ["--token-retry-budget-sec=1",
                          "--aad-allowed-hosts=" + recorder.authority])
    before = recorder.count
    r = n.token(world["ip"]["unlisted"], "https://vault.azure.net/listed", timeout=15)
    assert_json_error(r, 503, UNAVAILABLE)
    assert recorder.count > before
    assert b"\x16\x03" in recorder.received  # a TLS handshake began
    assert SP_SECRET.encode() not in recorder.received


def test_emulator_host_works_only_when_listed(emulator, world, make_nmi):
    res = "https://vault.azure.net/emulator"
    n = make_nmi(emulator, world["objects"], FLAGS, allow_emulator_aad=False)
    since = harness.last_seq(emulator)
    assert_json_error(n.token(world["ip"]["emulator"], res), 403, HOST_REFUSED, "forbidden")
    assert aad_calls(emulator, since) == []
    listed = make_nmi(emulator, world["objects"], FLAGS + [
        "--aad-allowed-hosts=adfs.contoso.example," + emulator.aad_addr])
    assert_token(listed.token(world["ip"]["emulator"], res), res, SP_SECRET_ID)
    assert [c["status"] for c in aad_calls(emulator, since)] == [200]


def test_python_sdk_gives_up_at_once(emulator, world, make_nmi):
    """azure-identity does not retry a 403: the pod sees nmi's description without waiting.
    (Depending on its version it raises ClientAuthenticationError or, through MSAL,
    CredentialUnavailableError naming the error.)"""
    from test_sdk_python import run_sdk
    p = pod("sdk-app", "evil", "127.0.0.1")
    ident = [o for o in world["objects"] if o["kind"] == "AzureIdentity"
             and o["metadata"]["name"] == "id-emu"][0]
    objs = [o for o in world["objects"] if o["kind"] in ("AzureIdentity", "Secret")]
    n = make_nmi(emulator, objs + [p, assigned(p, ident)], FLAGS, allow_emulator_aad=False)
    out = run_sdk(n, "mi")
    assert out["ok"] is False, out
    assert out["error"] in ("ClientAuthenticationError", "CredentialUnavailableError"), out
    assert HOST_REFUSED in out["message"], out
    assert out["elapsed"] < 5, out
