"""Token load from inside a pod (standard library only; the test sends this file on stdin to the
pod's python). Asks http://169.254.169.254 for a token at a steady rate until its stop file
appears or its duration ends, then prints one JSON line: counts, failures (with time and reason)
and the client ids seen, never a token.

    python - RATE DURATION CLIENT_ID MODE STOPFILE < load.py
    MODE: keepalive (one connection reused, as SDKs' pools do) or fresh (a connection a request)

A request counts as failed when it gets no answer, an answer other than 200, or a token for
another client id. One exception, as every HTTP client's pool has it (urllib3, Go net/http): a
reused keep-alive connection that the server closed while idle is not an answer; the request is
sent again once on a new connection, and only that second attempt counts.
"""
import base64
import http.client
import json
import os
import sys
import time

PATH = ("/metadata/identity/oauth2/token?api-version=2018-02-01"
        "&resource=https%3A%2F%2Fvault.azure.net&client_id=")


def claims(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def main():
    rate, duration, client_id, mode, stopfile = (float(sys.argv[1]), float(sys.argv[2]),
                                                 sys.argv[3], sys.argv[4], sys.argv[5])
    out = {"requests": 0, "ok": 0, "failures": [], "retried_stale": 0, "appids": {},
           "mode": mode}
    conn = None
    t0 = time.monotonic()
    next_at = t0
    while True:
        now = time.monotonic()
        if now - t0 > duration or (out["requests"] % 20 == 0 and os.path.exists(stopfile)):
            break
        if now < next_at:
            time.sleep(next_at - now)  # pacing: RATE requests a second
        next_at += 1.0 / rate
        out["requests"] += 1
        reason = None
        for attempt in (0, 1):
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=10)
            try:
                conn.request("GET", PATH + client_id, headers={"Metadata": "true"})
                resp = conn.getresponse()
                body = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected,
                    http.client.BadStatusLine) as e:
                conn.close()
                conn = None
                if reused and attempt == 0:
                    out["retried_stale"] += 1
                    continue
                reason = "%s: %s" % (type(e).__name__, e)
                break
            except OSError as e:
                conn.close()
                conn = None
                reason = "%s: %s" % (type(e).__name__, e)
                break
            if mode == "fresh" or resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
            if resp.status != 200:
                reason = "status %d: %s" % (resp.status, body[:200].decode("utf-8", "replace"))
                break
            try:
                appid = claims(json.loads(body)["access_token"]).get("appid")
            except (ValueError, KeyError, IndexError) as e:
                reason = "bad body: %s" % e
                break
            out["appids"][appid] = out["appids"].get(appid, 0) + 1
            if appid != client_id:
                reason = "token for %s" % appid
            break
        if reason is None:
            out["ok"] += 1
        elif len(out["failures"]) < 50:
            out["failures"].append({"t": round(time.monotonic() - t0, 3), "reason": reason})
        else:
            out.setdefault("more_failures", 0)
            out["more_failures"] += 1
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out), flush=True)


main()
