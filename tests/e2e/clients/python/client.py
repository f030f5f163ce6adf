"""nmi end-to-end client: Python azure-identity asks IMDS (169.254.169.254, no endpoint override)
for a token and prints one JSON line with the decoded claims, never the token itself.

usage: client.py --credential managed|default [--client-id ID] --resource URL|SCOPE
"""
import argparse
import base64
import json
import sys
import time


def scope_for(resource):
    return resource if resource.endswith("/.default") else resource + "/.default"


def claims_of(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--credential", choices=("managed", "default"), required=True)
    ap.add_argument("--client-id", default="")
    ap.add_argument("--resource", required=True)
    args = ap.parse_args()

    out = {"sdk": "python", "credential": args.credential}
    t0 = time.monotonic()
    try:
        import azure.identity
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        out["version"] = azure.identity.__version__
        if args.credential == "managed":
            kw = {"client_id": args.client_id} if args.client_id else {}
            cred = ManagedIdentityCredential(**kw)
        else:
            kw = {"managed_identity_client_id": args.client_id} if args.client_id else {}
            cred = DefaultAzureCredential(**kw)
        tok = cred.get_token(scope_for(args.resource))
        if args.credential == "default":
            chosen = getattr(cred, "_successful_credential", None)
            out["chosen"] = type(chosen).__name__ if chosen is not None else None
        out.update({"ok": True, "claims": claims_of(tok.token), "expires_on": tok.expires_on})
    except Exception as e:  # noqa: BLE001 - every failure becomes the one JSON line
        out.update({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    out["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
