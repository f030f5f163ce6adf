#!/usr/bin/env bash
# DNAT-path benchmark: a pod of a simulated node (scripts/devenv) asks 169.254.169.254 for a cached
# token, so every request goes through nmi's iptables DNAT to 127.0.0.1:2579 in the node namespace.
# In the same run, behind the same DNAT rule, the ceiling: nmi is stopped with SIGTERM (its rules
# stay: nmi fails closed and removes them only on uninstall / `nmi cleanup`), nginx (one worker,
# access log off) takes 127.0.0.1:2579 in the node namespace and serves a static copy of nmi's
# token answer (same size, same Content-Type), and the same wrk runs from the same pod.
# Prints Markdown tables (docs/benchmarks.md, "DNAT path").
#
#   bench/dnat.sh [BUILD_DIR]        (default $BUILD_DIR or build; needs root; `make bench-dnat`)
#
# Environment: DURATION (seconds per run, default 10), CONNECTIONS (default "8 64"),
# THREADS (wrk threads, default 2), NMI_THREADS (nmi --io-threads, default 2).
# Nothing touches the root network namespace's firewall: iptables runs only in the devenv's node
# namespace (nmi itself), and devenv's guard refuses the root namespace.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-${BUILD_DIR:-$repo/build}}" && pwd)
duration=${DURATION:-10}
connections=${CONNECTIONS:-"8 64"}
threads=${THREADS:-2}
nmi_threads=${NMI_THREADS:-2}
pod=nginx-flex-kv-int
url='http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F'

work=$(mktemp -d /tmp/nmi-bench-dnat.XXXXXX)
dir=$work/devenv                     # the devenv's state (devenv down removes it)
export NMI_DEVENV_PREFIX="nmi-bd$$-" # namespaces of our own, named by this PID
nginx_pid=
devenv() { "$repo/scripts/devenv" --dir "$dir" "$@"; }
say() { echo "bench: $*" >&2; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$nginx_pid" ] && [ "$(readlink "/proc/$nginx_pid/exe" 2>/dev/null)" = "$(command -v nginx)" ]; then
    kill -TERM "$nginx_pid" 2>/dev/null
    for _ in $(seq 1 100); do [ -e "/proc/$nginx_pid" ] || break; sleep 0.05; done
  fi
  [ -f "$dir/state.json" ] && devenv down >/dev/null 2>&1
  if ls /run/netns 2>/dev/null | grep -q "^$NMI_DEVENV_PREFIX"; then
    echo "bench: namespaces left behind: $(ls /run/netns | grep "^$NMI_DEVENV_PREFIX" | tr '\n' ' ')" >&2
    rc=1
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
for b in nmi azure-emulator; do
  [ -x "$build/bin/$b" ] || { echo "bench: $build/bin/$b is missing (make build)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is missing (scripts/setup installs it)" >&2; exit 1; }
if ! command -v nginx >/dev/null; then
  say "installing nginx (Debian) for the ceiling measurement"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

# The node as the DaemonSet runs it, at the chart's default verbosity (-v=0: no per-request log;
# the audit line of the first delivery stays on).
say "devenv up ($dir, namespaces $NMI_DEVENV_PREFIX*)"
devenv up --build-dir "$build" --nmi-arg -v=0 --nmi-arg "--io-threads=$nmi_threads" 2>&1 | sed 's/^/  /' >&2
state() { devenv env | python3 -c "import json, sys; s = json.load(sys.stdin); print($1)"; }
nmi_pid=$(state 's["pids"]["nmi"]')
client_id=$(state '[u["client_id"] for u in s["user_assigned"] if u["name"] == "kv-int"][0]')
resource_id=$(state '[u["resource_id"] for u in s["user_assigned"] if u["name"] == "kv-int"][0]')
pod_ip=$(state '[p["ip"] for p in s["pods"] if p["name"] == "'"$pod"'"][0]')
[ "$(readlink "/proc/$nmi_pid/exe")" = "$build/bin/nmi" ] || { echo "bench: nmi is not running" >&2; exit 1; }

# The pod's identity: AzureIdentity, binding and the AzureAssignedIdentity MIC would write.
say "identity kv-int for pod default/$pod ($pod_ip)"
devenv kubectl apply -f - >/dev/null <<EOF
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: kv-int, namespace: default}
spec: {type: 0, resourceID: $resource_id, clientID: $client_id}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: kv-int-binding, namespace: default}
spec: {azureIdentity: kv-int, selector: kv-int}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureAssignedIdentity
metadata:
  name: $pod-default-kv-int
  namespace: default
  labels: {nodename: devenv-node}
spec:
  azureIdentityRef:
    apiVersion: aadpodidentity.k8s.io/v1
    kind: AzureIdentity
    metadata: {name: kv-int, namespace: default}
    spec: {type: 0, resourceID: $resource_id, clientID: $client_id}
  azureBindingRef:
    apiVersion: aadpodidentity.k8s.io/v1
    kind: AzureIdentityBinding
    metadata: {name: kv-int-binding, namespace: default}
    spec: {azureIdentity: kv-int, selector: kv-int}
  pod: $pod
  podNamespace: default
  nodename: devenv-node
  replicas: 1
status: {status: Assigned, availableReplicas: 1}
EOF

# Warm the cache with one request from the pod, then capture one cached answer (body and headers).
devenv exec "$pod" -- curl -sf -m 30 -o /dev/null -H Metadata:true "$url" ||
  { echo "bench: the pod's first token request failed" >&2; tail -20 "$dir/logs/nmi.log" >&2; exit 1; }
devenv exec "$pod" -- curl -sf -m 10 -D "$work/nmi.headers" -o "$work/token.json" -H Metadata:true "$url"
body_size=$(stat -c %s "$work/token.json")
content_type=$(awk -F': ' 'tolower($1) == "content-type" {sub(/\r$/, "", $2); print $2}' "$work/nmi.headers")
python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
assert t["client_id"] == sys.argv[2] and t["access_token"].count(".") == 2, "not the pod identity token"
' "$work/token.json" "$client_id" || { echo "bench: the answer is not kv-int's token" >&2; exit 1; }
metric() {  # the sum of nmi's series NAME (its metrics port in the node namespace)
  devenv host -- curl -s -m 5 http://127.0.0.1:9090/metrics | awk -v n="$1" '$1 ~ "^"n {s += $2} END {print s + 0}'
}
upstream_before=$(metric nmi_upstream_requests_total)

# wrk from the pod's network namespace -> "rps p50 p99 non2xx socket_errors"
run() {
  local c=$1 out
  out=$(devenv exec "$pod" -- wrk -t"$threads" -c"$c" -d"${duration}s" --latency -H "Metadata: true" "$url")
  awk '
    /Requests\/sec/ {rps = $2}
    $1 == "50%" {p50 = $2}
    $1 == "99%" {p99 = $2}
    /Non-2xx/ {bad = $NF}
    /Socket errors/ {gsub(/,/, ""); err = $4 + $6 + $8 + $10}
    END {print rps, p50, p99, bad + 0, err + 0}' <<<"$out"
}
declare -A res
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for c in $connections; do
  say "nmi, $c connections, ${duration} s"
  res[nmi,$c]=$(run "$c")
done
rss=$(awk '/VmRSS/ {print $2}' "/proc/$nmi_pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$nmi_pid/status")
upstream=$(($(metric nmi_upstream_requests_total) - upstream_before))
rules_before=$(devenv host -- iptables-nft -t nat -S | grep -c -- '--to-destination 127.0.0.1:2579' || true)

# nmi stops; its DNAT rule stays (fail closed: nothing reaches IMDS from the pod now).
say "SIGTERM to nmi (pid $nmi_pid)"
kill -TERM "$nmi_pid"
for _ in $(seq 1 300); do
  [ "$(readlink "/proc/$nmi_pid/exe" 2>/dev/null)" = "$build/bin/nmi" ] || break
  [ "$(awk '{print $3}' "/proc/$nmi_pid/stat" 2>/dev/null)" = Z ] && break
  sleep 0.05
done
if [ "$(readlink "/proc/$nmi_pid/exe" 2>/dev/null)" = "$build/bin/nmi" ] &&
  [ "$(awk '{print $3}' "/proc/$nmi_pid/stat" 2>/dev/null)" != Z ]; then
  echo "bench: nmi did not exit within 15 s of SIGTERM" >&2
  exit 1
fi
rules_after=$(devenv host -- iptables-nft -t nat -S | grep -c -- '--to-destination 127.0.0.1:2579' || true)
if [ "$rules_before" -lt 1 ] || [ "$rules_after" != "$rules_before" ]; then
  echo "bench: nmi's DNAT rule to 127.0.0.1:2579 is not in place (before $rules_before, after $rules_after)" >&2
  exit 1
fi

# nginx in the node namespace on nmi's address: one worker, the same body and Content-Type.
mkdir -p "$work/nginx/html/metadata/identity/oauth2" "$work/nginx/tmp"
cp "$work/token.json" "$work/nginx/html/metadata/identity/oauth2/token"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  default_type "$content_type";
  client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  server { listen 127.0.0.1:2579; root $work/nginx/html; keepalive_requests 100000000;
           location / { try_files \$uri =404; } }
}
CONF
chmod 755 "$work" # nginx's worker runs as an unprivileged user
say "nginx on 127.0.0.1:2579 in the node namespace (one worker)"
devenv host -- nginx -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -p "$work/nginx"
for _ in $(seq 1 100); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.05; done
nginx_pid=$(cat "$work/nginx/nginx.pid")
devenv exec "$pod" -- curl -sf -m 10 -D "$work/nginx.headers" -o "$work/nginx.body" -H Metadata:true "$url" ||
  { echo "bench: the pod does not reach nginx through the DNAT rule" >&2; cat "$work/nginx/error.log" >&2; exit 1; }
cmp -s "$work/nginx.body" "$work/token.json" && grep -qi '^server: nginx' "$work/nginx.headers" &&
  grep -qiF "content-type: $content_type" "$work/nginx.headers" ||
  { echo "bench: the pod's answer through the DNAT rule is not nginx's copy of the token" >&2; exit 1; }
for c in $connections; do
  say "nginx, $c connections, ${duration} s"
  res[nginx,$c]=$(run "$c")
done

to_us() { # wrk latency (e.g. 512.00us, 1.20ms, 1.01s) -> microseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : (u == "m") ? 60000000 : 0
    print n * f }'
}

echo "Pod default/$pod ($pod_ip) -> http://169.254.169.254:80 -> DNAT 127.0.0.1:2579 (node namespace);"
echo "wrk -t$threads -c<connections> -d${duration}s --latency -H 'Metadata: true', one run each; nmi --io-threads $nmi_threads;"
echo "Both answers: $body_size bytes, Content-Type: $content_type. $(nproc) CPUs, load average before the runs: $load_before."
echo
echo "| path | connections | requests/s | p50 | p99 | non-2xx | socket errors |"
echo "|---|---|---|---|---|---|---|"
for c in $connections; do
  read -r rps p50 p99 bad err <<<"${res[nmi,$c]}"
  echo "| nmi cached token via DNAT ($body_size bytes) | $c | $rps | $p50 | $p99 | $bad | $err |"
  read -r rps p50 p99 bad err <<<"${res[nginx,$c]}"
  echo "| nginx static, same DNAT rule ($body_size bytes) | $c | $rps | $p50 | $p99 | $bad | $err |"
done
echo
echo "| connections | nmi / nginx requests/s (target >= 0.70) | nmi / nginx p99 (target <= 1.50) |"
echo "|---|---|---|"
for c in $connections; do
  read -r rps p50 p99 _ _ <<<"${res[nmi,$c]}"
  read -r nrps _ np99 _ _ <<<"${res[nginx,$c]}"
  awk -v c="$c" -v a="$rps" -v b="$nrps" -v p="$(to_us "$p99")" -v q="$(to_us "$np99")" 'BEGIN {
    r = (b > 0) ? a / b : 0; l = (q > 0) ? p / q : 0
    printf "| %s | %.2f %s | %.2f %s |\n", c, r, (r >= 0.7) ? "(met)" : "(missed)", l, (l <= 1.5) ? "(met)" : "(missed)" }'
done
echo
echo "nmi RSS after its runs: $((rss / 1024)).$(((rss % 1024) * 10 / 1024)) MiB (peak $((hwm / 1024)).$(((hwm % 1024) * 10 / 1024)) MiB); upstream token calls during its runs: $upstream"
