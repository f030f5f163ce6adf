#!/usr/bin/env bash
# Loopback benchmark of nmi's cached token path and probe path, beside a static nginx answer of
# the same size (one worker) as the ceiling of this machine. Prints a Markdown table.
#
#   bench/loopback.sh [BUILD_DIR]        (default build; run `make build` first)
#
# Environment: DURATION (seconds per run, default 10), CONNECTIONS (default "8 64"),
# THREADS (wrk threads, default 2), NMI_THREADS (nmi --io-threads, default 2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$repo/build}/bin
duration=${DURATION:-10}
connections=${CONNECTIONS:-"8 64"}
threads=${THREADS:-2}
nmi_threads=${NMI_THREADS:-2}
work=$(mktemp -d /tmp/nmi-bench.XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing (scripts/setup installs it)" >&2; exit 1; }
if ! command -v nginx >/dev/null; then
  echo "bench: installing nginx (Debian) for the ceiling measurement" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

client_id=8b3f1c2e-5d4a-4e6b-9c7d-0a1b2c3d4e5f
cat >"$work/emulator.json" <<JSON
{"imds": {"listen": "127.0.0.1:0", "max_concurrent": 0, "max_rps": 0,
          "user_assigned": [{"client_id": "$client_id"}]}}
JSON
cat >"$work/identities.json" <<JSON
{"kind": "List", "items": [
 {"apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "bench", "namespace": "default", "uid": "bench-uid", "labels": {"aadpodidbinding": "bench"}},
  "spec": {"nodeName": "node-a"}, "status": {"phase": "Running", "podIP": "127.0.0.1"}},
 {"apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
  "metadata": {"name": "bench-identity", "namespace": "default"}, "spec": {"type": 0, "clientID": "$client_id"}},
 {"apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
  "metadata": {"name": "bench-binding", "namespace": "default"}, "spec": {"azureIdentity": "bench-identity", "selector": "bench"}}
]}
JSON

"$bin/azure-emulator" --config "$work/emulator.json" --ready-file "$work/ready.json" >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -f "$work/ready.json" ] && break; sleep 0.05; done
imds=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["imds"])' "$work/ready.json")

port=$(free_port); probe=$(free_port); metrics=$(free_port)
"$bin/nmi" --identity-file "$work/identities.json" --operation-mode=managed --forceNamespaced \
  --nmi-port "$port" --http-probe-port "$probe" --prometheus-port "$metrics" --io-threads "$nmi_threads" \
  --imds-token-endpoint "$imds" --per-pod-miss-rate 1000 --disable-interception >"$work/nmi.log" 2>&1 &
nmi_pid=$!
pids+=($nmi_pid)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$probe/readyz" >/dev/null 2>&1 && break; sleep 0.05; done

token_path="/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
curl -sf -H Metadata:true "http://127.0.0.1:$port$token_path" >"$work/token.json"   # warm the cache
body_size=$(stat -c %s "$work/token.json")

# nginx: one worker, the same body (as a static file) with the same content type.
nginx_port=$(free_port)
mkdir -p "$work/nginx/html/metadata/identity/oauth2"
cp "$work/token.json" "$work/nginx/html/metadata/identity/oauth2/token"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  default_type "application/json; charset=utf-8";
  client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  server { listen 127.0.0.1:$nginx_port; root $work/nginx/html; keepalive_requests 100000000;
           location / { try_files \$uri =404; } }
}
CONF
mkdir -p "$work/nginx/tmp"
chmod 755 "$work"   # nginx's worker runs as www-data
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$nginx_port/metadata/identity/oauth2/token" >/dev/null 2>&1 && break; sleep 0.05; done
cmp -s <(curl -s "http://127.0.0.1:$nginx_port/metadata/identity/oauth2/token") "$work/token.json" ||
  { echo "bench: nginx does not serve the token body" >&2; exit 1; }

run() {  # run NAME URL HEADER... -> "rps p50 p99"
  local url=$1; shift
  local out
  out=$(wrk -t"$threads" -c"$c" -d"${duration}s" --latency "$@" "$url")
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$rps $p50 $p99 ${non2xx:-0}"
}

echo "| path | connections | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
for c in $connections; do
  read -r rps p50 p99 bad <<<"$(run "http://127.0.0.1:$nginx_port/metadata/identity/oauth2/token")"
  echo "| nginx static ($body_size bytes) | $c | $rps | $p50 | $p99 | $bad |"
  read -r rps p50 p99 bad <<<"$(run "http://127.0.0.1:$port$token_path" -H "Metadata: true")"
  echo "| nmi cached token ($body_size bytes) | $c | $rps | $p50 | $p99 | $bad |"
  read -r rps p50 p99 bad <<<"$(run "http://127.0.0.1:$port/metadata/identity/oauth2/token")"
  echo "| nmi probe (no Metadata header, 400) | $c | $rps | $p50 | $p99 | $bad |"
done
rss=$(awk '/VmRSS/ {print $2}' "/proc/$nmi_pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$nmi_pid/status")
upstream=$(curl -s "http://127.0.0.1:$metrics/metrics" | awk '/^nmi_upstream_requests_total/ {s+=$2} END {print s+0}')
echo
echo "nmi RSS after the runs: $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB); upstream token calls during the runs: $upstream"
