#!/usr/bin/env python3
"""Self-test of tools/azure-emulator through tests/lib/azure_emulator.py.

Usage: azure_emulator_selftest.py PATH/TO/azure-emulator
Builds nothing: it starts the given binary, talks to it with urllib (IMDS over HTTP, Azure AD over
HTTPS verified with the emulator's CA, a certificate client assertion signed by `openssl`, a
CONNECT through the proxy), and checks JWT signatures, a fault and the request log; then a second
emulator whose IMDS listener has the Windows HTTP stack, over raw sockets (interim 100 Continue,
path folding, HEAD framing, keep-alive after errors). Exits non-zero on the first failure.
"""
import base64
import hashlib
import json
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from azure_emulator import AzureEmulator, EmulatorError  # noqa: E402

TENANT = "72f988bf-0000-0000-0000-000000000001"
SP_TENANT = "aaaaaaaa-0000-0000-0000-00000000000a"
SA = "11111111-1111-1111-1111-111111111111"
UA1 = "22222222-2222-2222-2222-222222222222"
UA2 = "33333333-3333-3333-3333-333333333333"
UA1_RES = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/one"
SECRET_APP = "bbbbbbbb-0000-0000-0000-00000000000b"
CERT_APP = "cccccccc-0000-0000-0000-00000000000c"


class Failure(Exception):
    pass


def check(cond, msg, detail=None):
    if not cond:
        raise Failure(msg if detail is None else "%s: %s" % (msg, detail))
    print("ok:", msg)


def request(url, data=None, headers=None, context=None, method=None, opener=None):
    """Return (status, headers, body bytes) for any status."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        if opener is not None:
            resp = opener.open(req, timeout=10)
        else:
            resp = urllib.request.urlopen(req, timeout=10, context=context)
        with resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_assertion(tmp, aud):
    """An RS256 client assertion the way go-autorest builds it, signed by openssl."""
    der = subprocess.run(["openssl", "x509", "-in", tmp / "cert.pem", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    header = {"alg": "RS256", "typ": "JWT",
              "x5t": base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode(),
              "x5c": [base64.b64encode(der).decode()]}
    now = int(time.time())
    claims = {"aud": aud, "iss": CERT_APP, "sub": CERT_APP, "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 600}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", tmp / "key.pem"],
                         input=signing_input.encode(), check=True, capture_output=True).stdout
    return signing_input + "." + b64url(sig)


def main(binary):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="azemu-selftest-"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp / "key.pem",
                    "-out", tmp / "cert.pem", "-days", "1", "-subj", "/CN=selftest-sp"],
                   check=True, capture_output=True)
    config = {
        "tenant_id": TENANT,
        "token_lifetime_sec": 3600,
        "imds": {"listen": "127.0.0.1:0", "system_assigned": {"client_id": SA},
                 "user_assigned": [{"client_id": UA1, "resource_id": UA1_RES}, {"client_id": UA2}]},
        "aad": {"listen": "127.0.0.1:0", "tls": True, "apps": [
            {"tenant_id": SP_TENANT, "client_id": SECRET_APP, "secret": "s3cret"},
            {"tenant_id": SP_TENANT, "client_id": CERT_APP, "certificate_pem": str(tmp / "cert.pem")}]},
        "proxy": {"listen": "127.0.0.1:0"},
    }
    with AzureEmulator(binary, config) as emu:
        check(emu.healthy(), "control API answers /healthz")
        pid = emu.pid

        # IMDS token.
        token_url = (emu.imds_url + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
                     + urllib.parse.quote("https://vault.azure.net", safe="") + "&msi_res_id=" + urllib.parse.quote(UA1_RES, safe=""))
        status, headers, body = request(token_url, headers={"Metadata": "true"})
        check(status == 200, "IMDS token: 200", (status, body[:300]))
        check(headers["Content-Type"] == "application/json; charset=utf-8", "IMDS token: JSON content type")
        tok = json.loads(body)
        check(sorted(tok) == ["access_token", "client_id", "expires_in", "expires_on", "ext_expires_in",
                              "not_before", "resource", "token_type"], "IMDS token: exactly the IMDS fields")
        check(all(isinstance(v, str) for v in tok.values()), "IMDS token: every value is a string")
        check(tok["resource"] == "https://vault.azure.net" and tok["client_id"] == UA1, "IMDS token: resource and client_id")
        header, claims = emu.verify_jwt(tok["access_token"], audience="https://vault.azure.net")
        check(claims["xms_mirid"] == UA1_RES and claims["tid"] == TENANT and claims["appid"] == UA1,
              "IMDS token: JWT verifies against the JWKS, with xms_mirid/tid/appid")
        forged = tok["access_token"][:-4] + ("AAAA" if not tok["access_token"].endswith("AAAA") else "BBBB")
        try:
            emu.verify_jwt(forged)
            check(False, "verify_jwt rejects a tampered signature")
        except ValueError:
            check(True, "verify_jwt rejects a tampered signature")

        status, _, body = request(token_url)
        check(status == 400 and json.loads(body)["error_description"] == "Required metadata header not specified",
              "IMDS: no Metadata header -> 400")

        # Azure AD over HTTPS, verifying the emulator's CA.
        ctx = ssl.create_default_context(cafile=emu.aad_ca)
        v1 = emu.aad_url + "/" + SP_TENANT + "/oauth2/token?api-version=1.0"
        form = {"grant_type": "client_credentials", "client_id": SECRET_APP, "client_secret": "s3cret",
                "resource": "https://management.azure.com/"}
        status, _, body = request(v1, data=urllib.parse.urlencode(form).encode(), context=ctx)
        check(status == 200, "AAD v1 secret token over verified HTTPS", (status, body[:300]))
        aad_tok = json.loads(body)
        check(isinstance(aad_tok["expires_on"], str) and aad_tok["token_type"] == "Bearer", "AAD v1: string numbers")
        _, claims = emu.verify_jwt(aad_tok["access_token"], audience="https://management.azure.com/")
        check(claims["iss"] == "https://sts.windows.net/%s/" % SP_TENANT and claims["appid"] == SECRET_APP,
              "AAD v1 token: JWT verifies, iss/appid")

        form["client_secret"] = "wrong"
        status, _, body = request(v1, data=urllib.parse.urlencode(form).encode(), context=ctx)
        err = json.loads(body)
        check(status == 401 and err["error"] == "invalid_client" and err["error_codes"] == [7000215]
              and err["error_description"].startswith("AADSTS7000215: ") and "\r\nTrace ID: " in err["error_description"],
              "AAD: wrong secret -> 401 invalid_client AADSTS7000215")

        # Certificate credential: assertion signed by openssl; aud includes the query string.
        form = {"grant_type": "client_credentials", "client_id": CERT_APP, "resource": "https://vault.azure.net",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": make_assertion(tmp, v1)}
        status, _, body = request(v1, data=urllib.parse.urlencode(form).encode(), context=ctx)
        check(status == 200, "AAD v1 certificate assertion token", (status, body[:300]))
        form["client_assertion"] = make_assertion(tmp, "https://login.microsoftonline.com/%s/oauth2/token" % SP_TENANT)
        status, _, body = request(v1, data=urllib.parse.urlencode(form).encode(), context=ctx)
        check(status == 401 and json.loads(body)["error_codes"] == [50013], "AAD: assertion with a wrong aud -> 401 AADSTS50013")

        # HTTPS through the CONNECT proxy.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"https": "http://" + emu.proxy_addr}),
                                             urllib.request.HTTPSHandler(context=ctx))
        status, _, body = request(emu.jwks_url, opener=opener)
        check(status == 200 and json.loads(body) == emu.jwks(), "JWKS via the CONNECT proxy equals the control JWKS")

        # A fault.
        emu.set_fault(target="imds", status=500, count=1, retry_after="2")
        status, headers, _ = request(token_url, headers={"Metadata": "true"})
        check(status == 500 and headers["Retry-After"] == "2", "fault: IMDS answers 500 with Retry-After")
        status, _, _ = request(token_url, headers={"Metadata": "true"})
        check(status == 200, "fault: consumed after one request")

        # The request log.
        entries = emu.log()
        imds = [e for e in entries if e["listener"] == "imds"]
        check([e["status"] for e in imds] == [200, 400, 500, 200], "log: IMDS statuses in order")
        check(imds[0]["headers"]["Metadata"] == ["true"] and imds[1]["headers"]["Metadata"] == [],
              "log: Metadata header values")
        check(imds[0]["raw_target"].startswith("/metadata/identity/oauth2/token?api-version=2018-02-01")
              and imds[0]["client_id"] == UA1 and imds[0]["query"]["resource"] == ["https://vault.azure.net"],
              "log: raw target, query and identity served")
        check("fault" in imds[2], "log: the fault is recorded")
        aad = [e for e in entries if e["listener"] == "aad" and e.get("form")]
        check(aad and all("client_secret" not in e["form"] and "client_assertion" not in e["form"] for e in aad),
              "log: no secret or assertion in AAD form fields")
        check(any(e.get("assertion", {}).get("claims", {}).get("iss") == CERT_APP for e in aad),
              "log: assertion claims recorded")
        check(any(e["listener"] == "proxy" and e["method"] == "CONNECT" for e in entries), "log: proxy CONNECT")
        emu.clear_log()
        check(emu.log() == [], "log: cleared")

        # Identities replaced at run time.
        emu.set_imds_identities(user_assigned=[{"client_id": UA2}])
        status, _, body = request(token_url.split("&msi_res_id")[0], headers={"Metadata": "true"})
        check(status == 200 and json.loads(body)["client_id"] == UA2, "set_imds_identities: the only UA is the default")
        with open(emu.log_file) as f:
            check(len([json.loads(line) for line in f]) >= 10, "log file: one JSON line per request")

    try:
        os.kill(pid, 0)
        check(False, "emulator stopped")
    except ProcessLookupError:
        check(True, "emulator stopped")
    emu.remove_workdir()
    subprocess.run(["rm", "-rf", str(tmp)], check=False)


def read_response(sock, buf, head_only=False):
    """One response from sock (Content-Length framing only, which is all the Windows stack uses).
    Returns (status line, headers dict with lower-case names, body, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failure("connection closed before a response head: %r" % buf)
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    n = 0 if head_only or lines[0].startswith("HTTP/1.1 1") else int(headers["content-length"])
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failure("connection closed in a body")
        buf += chunk
    return lines[0], headers, buf[:n], buf[n:]


def windows_stack(binary):
    config = {"imds": {"listen": "127.0.0.1:0", "user_assigned": [{"client_id": UA1}],
                       "max_concurrent": 0, "max_rps": 0}}
    with AzureEmulator(binary, config, http_stack="windows") as emu:
        check(emu.imds_http_stack == "windows", "windows stack: named in the ready file")
        host, port = emu.imds_addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=5)
        try:
            # 100 Continue before the client sends its body, then the final answer.
            sock.sendall(b"POST /metadata/identity./issuecredential HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                         b"Metadata: true\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            interim = b""
            while len(interim) < 25:
                chunk = sock.recv(25 - len(interim))
                if not chunk:
                    break
                interim += chunk
            check(interim == b"HTTP/1.1 100 Continue\r\n\r\n", "windows stack: 100 Continue first", interim)
            sock.sendall(b"{}")
            status, headers, body, buf = read_response(sock, b"")
            check(status == "HTTP/1.1 200 OK" and b"LEAKED-NODE-CREDENTIAL-issuecredential" in body,
                  "windows stack: /metadata/identity./issuecredential folded to the IMDSv2 route", (status, body))
            # Errors keep the connection; HEAD has the GET body's length and no body.
            sock.sendall(b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /Metadata/Versions. HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n"
                         b"HEAD /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n"
                         b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, headers, _, buf = read_response(sock, buf)
            check(status == "HTTP/1.1 400 Bad Request" and "connection" not in headers,
                  "windows stack: a 400 keeps the connection", (status, headers))
            status, headers, get_body, buf = read_response(sock, buf)
            check(status == "HTTP/1.1 200 OK" and b"apiVersions" in get_body
                  and headers["server"] == "IMDS/150.870.65.1234", "windows stack: pipelined, folded path")
            status, headers, _, buf = read_response(sock, buf, head_only=True)
            check(status == "HTTP/1.1 200 OK" and headers["content-length"] == str(len(get_body)),
                  "windows stack: HEAD carries the GET body's Content-Length", headers)
            status, headers, _, buf = read_response(sock, buf)
            check(status == "HTTP/1.1 404 Not Found" and headers.get("connection") == "close",
                  "windows stack: no body after HEAD, next answer in order", (status, buf))
        finally:
            sock.close()
        imds = emu.log("imds")
        check([(e["method"], e["path"], e["status"]) for e in imds] == [
            ("POST", "/metadata/identity/issuecredential", 200), ("GET", "/metadata/versions", 400),
            ("GET", "/Metadata/Versions", 200), ("HEAD", "/metadata/versions", 200), ("GET", "/nowhere", 404)],
            "windows stack: every request logged with its folded path",
            [(e["method"], e["path"], e["status"]) for e in imds])
    emu.remove_workdir()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1])
        windows_stack(sys.argv[1])
    except (Failure, EmulatorError, OSError, subprocess.CalledProcessError, KeyError, ValueError) as e:
        print("FAIL:", e, file=sys.stderr)
        sys.exit(1)
    print("PASS")
