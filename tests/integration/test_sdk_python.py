"""Python azure-identity against nmi on loopback. azure-identity cannot bind its source address,
so a separate nmi registers the pod under 127.0.0.1 and the SDK runs in a subprocess with
AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:<nmi port>. Other addresses: 127.0.7.x."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from nmi_pytest import harness
from conftest import ua_client_id, ua_resource_id
from nmi_pytest.harness import assigned, azure_identity, pod

FILE_INDEX = 7
SCOPE = "https://management.azure.com/.default"
RESOURCE = "https://management.azure.com"

SDK_SCRIPT = textwrap.dedent(r"""
    import json, sys, time, logging
    from azure.identity import (ManagedIdentityCredential, DefaultAzureCredential,
                                CredentialUnavailableError)
    from azure.core.exceptions import ClientAuthenticationError
    args = json.loads(sys.argv[1])
    kind = args["kind"]
    kw = args.get("kwargs", {})
    if kind == "mi":
        cred = ManagedIdentityCredential(**kw)
    else:
        cred = DefaultAzureCredential(
            exclude_environment_credential=True, exclude_workload_identity_credential=True,
            exclude_shared_token_cache_credential=True, exclude_visual_studio_code_credential=True,
            exclude_azure_cli_credential=True, exclude_azure_powershell_credential=True,
            exclude_azure_developer_cli_credential=True, exclude_interactive_browser_credential=True,
            exclude_broker_credential=True, **kw)
    out = {}
    t0 = time.time()
    try:
        tok = cred.get_token(*args["scopes"])
        out = {"ok": True, "token": tok.token, "expires_on": tok.expires_on}
        info = cred.get_token_info(*args["scopes"])
        out["info_expires_on"] = info.expires_on
        out["info_refresh_on"] = info.refresh_on
        out["same_token_second_call"] = info.token == tok.token
    except CredentialUnavailableError as e:
        out = {"ok": False, "error": "CredentialUnavailableError", "message": str(e)}
    except ClientAuthenticationError as e:
        out = {"ok": False, "error": "ClientAuthenticationError", "message": str(e)}
    out["elapsed"] = time.time() - t0
    out["now"] = time.time()
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def sdk_nmi(emulator, make_module_nmi):
    a = azure_identity("id-a", "default", ua_client_id("a"), resource_id=ua_resource_id("a"))
    b = azure_identity("id-b", "default", ua_client_id("b"), resource_id=ua_resource_id("b"))
    p = pod("sdk-app", "default", "127.0.0.1")
    objs = [a, b, p, assigned(p, a), assigned(p, b)]
    return make_module_nmi(emulator, objs, ["--pod-wait-timeout-ms=300"])


def run_sdk(nmi, kind="mi", scopes=(SCOPE,), kwargs=None, timeout=60):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")) or k.lower().endswith("_proxy"):
            env.pop(k)
    env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = "http://127.0.0.1:%d" % nmi.port
    env["NO_PROXY"] = "*"
    p = subprocess.run([sys.executable, "-c", SDK_SCRIPT,
                        json.dumps({"kind": kind, "scopes": list(scopes),
                                    "kwargs": kwargs or {}})],
                       env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def check_token(out, client_id):
    assert out["ok"], out
    _, claims = harness.decode_jwt(out["token"])
    assert claims["appid"] == client_id
    assert claims["aud"] == RESOURCE
    # The emulator's tokens live 86400 s; expires_on is absolute epoch seconds.
    assert abs(out["expires_on"] - (out["now"] + 86400)) < 120, out
    # MSAL derives expires_on from expires_in (rounding may differ by a second between calls).
    assert abs(out["info_expires_on"] - out["expires_on"]) <= 2, out
    assert out["same_token_second_call"]
    return claims


# (id, credential kind, kwargs, expected client id)
SDK_ROWS = [
    ("mi-default", "mi", {}, "a-or-b"),
    ("mi-client-id", "mi", {"client_id": ua_client_id("b")}, ua_client_id("b")),
    ("mi-client-id-a", "mi", {"client_id": ua_client_id("a")}, ua_client_id("a")),
    ("mi-resource-id", "mi", {"identity_config": {"resource_id": ua_resource_id("b")}},
     ua_client_id("b")),
    # The pod's own identity spelt in upper case: answered at once (it waited 24 s for 404s).
    ("mi-client-id-upper-case", "mi", {"client_id": ua_client_id("b").upper()}, ua_client_id("b")),
    ("mi-resource-id-upper-case", "mi",
     {"identity_config": {"resource_id": ua_resource_id("b").upper()}}, ua_client_id("b")),
    ("dac-managed-identity-only", "dac", {"managed_identity_client_id": ua_client_id("b")},
     ua_client_id("b")),
    ("dac-default", "dac", {}, "a-or-b"),
]


@pytest.mark.parametrize("kind,kwargs,client_id", [r[1:] for r in SDK_ROWS],
                         ids=[r[0] for r in SDK_ROWS])
def test_sdk_gets_token(sdk_nmi, emulator, kind, kwargs, client_id):
    since = harness.last_seq(emulator)
    out = run_sdk(sdk_nmi, kind, kwargs=kwargs)
    claims = check_token(out, ua_client_id("a") if client_id == "a-or-b" else client_id)
    assert out["elapsed"] < 5, out
    if client_id == "a-or-b":
        # Two identities assigned and none asked for: nmi picks the first by name (id-a).
        assert claims["appid"] == ua_client_id("a")
    # nmi asked IMDS once, for the resource (scope without /.default).
    calls = harness.imds_token_calls(emulator, since)
    assert all(c["query"]["resource"] == [RESOURCE] for c in calls), calls


def test_sdk_object_id_is_unavailable(sdk_nmi):
    """nmi answers 400 "Identity not found" to object_id: azure-identity treats 400 as 'no
    identity' (CredentialUnavailableError) at once, without retrying."""
    out = run_sdk(sdk_nmi, "mi", kwargs={"identity_config": {
        "object_id": "11111111-2222-3333-4444-555555555555"}})
    assert out["ok"] is False and out["error"] == "CredentialUnavailableError", out
    assert "Identity not found" in out["message"], out
    assert out["elapsed"] < 5, out


def test_sdk_probe_shape(sdk_nmi):
    """What the SDKs' probes send (no Metadata header, or no resource) gets a fast 400 whose body
    does not say "Identity not found"."""
    for headers, target in (([], harness.token_target(RESOURCE)),
                            ([("Metadata", "true")], harness.TOKEN_PATH + "?api-version=2018-02-01")):
        r = sdk_nmi.get(target, headers)
        assert r.status == 400 and r.elapsed < 0.5, r
        assert b"Identity not found" not in r.body


def test_sdk_scope_without_default_suffix(sdk_nmi):
    out = run_sdk(sdk_nmi, "mi", scopes=("https://vault.azure.net/.default",),
                  kwargs={"client_id": ua_client_id("b")})
    assert out["ok"], out
    _, claims = harness.decode_jwt(out["token"])
    assert claims["aud"] == "https://vault.azure.net"
