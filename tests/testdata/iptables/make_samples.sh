#!/usr/bin/env bash
# Regenerates the iptables-save samples of this directory from real iptables (both backends), in
# network namespaces of its own; the root namespace's firewall is never touched. Run as root:
#   tests/testdata/iptables/make_samples.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export XTABLES_LOCKFILE=$(mktemp /tmp/nmi-samples.XXXXXX.lock)
namespaces=()
cleanup() { for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done; rm -f "$XTABLES_LOCKFILE"; }
trap cleanup EXIT

# kube-proxy (iptables mode) as it looks on a node, plus aad-pod-identity's chain.
kube_rules='*mangle
:KUBE-IPTABLES-HINT - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
:KUBE-SEP-ABC - [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-SVC-WEB - [0:0]
:aad-metadata - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SERVICES -d 20.50.0.7/32 -p tcp -m comment --comment "default/web:http loadbalancer IP" -m tcp --dport 80 -j KUBE-EXT-WEB
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.244.0.30:8080" -j KUBE-SEP-ABC
-A KUBE-SVC-NPX46M4PTMTKRN6Y ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-MARK-MASQ
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/kubernetes:https -> 10.0.0.4:6443" -j KUBE-SEP-ABC
-A KUBE-SEP-ABC -s 10.0.0.4/32 -m comment --comment "default/kubernetes:https" -j KUBE-MARK-MASQ
-A KUBE-SEP-ABC -p tcp -m comment --comment "default/kubernetes:https" -m tcp -j DNAT --to-destination 10.0.0.4:6443
-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579
-A aad-metadata -j RETURN
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
'
# nmi's rules as nmi installs them (target 10.244.0.1:2579).
nmi_rules='*filter
:NMI-METADATA-GUARD - [0:0]
-A NMI-METADATA-GUARD -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m conntrack ! --ctstate DNAT -j REJECT --reject-with tcp-reset
-I FORWARD 1 -j NMI-METADATA-GUARD
COMMIT
*nat
:NMI-METADATA - [0:0]
-A NMI-METADATA ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.1:2579
-A NMI-METADATA -j RETURN
-I PREROUTING 1 -j NMI-METADATA
COMMIT
'
for b in nft legacy; do
  ns=nmi-samples-$$-$b; ip netns add "$ns"; namespaces+=("$ns")
  run() { ip netns exec "$ns" "$@"; }
  run "iptables-$b-save" -t nat > "$here/${b}_empty_nat.txt"
  run "iptables-$b-save" -t filter > "$here/${b}_empty_filter.txt"
  printf '%s' "$kube_rules" | run "iptables-$b-restore" --noflush -w
  printf '%s' "$nmi_rules" | run "iptables-$b-restore" --noflush -w
  # kube-proxy re-inserting its jump (as after a kube-proxy restart): KUBE-SERVICES, then nmi's
  run "iptables-$b" -w -t nat -D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
  run "iptables-$b" -w -t nat -I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
  # the original NMI still present, its jump behind nmi's
  run "iptables-$b" -w -t nat -A PREROUTING -j aad-metadata
  run "iptables-$b-save" -t nat > "$here/${b}_kube_nat.txt"
  run "iptables-$b-save" -t filter > "$here/${b}_kube_filter.txt"
  run "iptables-$b-save" > "$here/${b}_kube_all.txt"
  # someone flushed nmi's nat chain
  run "iptables-$b" -w -t nat -F NMI-METADATA
  run "iptables-$b-save" -t nat > "$here/${b}_flushed_nat.txt"
done
echo "samples written to $here"
