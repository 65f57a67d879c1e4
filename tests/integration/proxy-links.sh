#!/usr/bin/env bash
# One of two interconnect links goes down during proxied I/O: no client
# error. Nodes a and b run in two network namespaces joined by two veth
# pairs (ic0, ic1); fio (crc32c verify) in a's namespace writes to b's
# volume through a's proxy port while one link is set down and up again,
# first ic1, then ic0. Needs root (skipped otherwise). The namespaces and
# links are this test's own and are always removed.
#
# Provider net;ofi_rxm with FI_AV_REMOVE_CLEANUP=0, as tests/ccm/failover-netns.sh
# (docs/CCM.md, "Known problems": tcp;ofi_rxm crashes on a downed interface).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need fio jq ip
need_fio_nbd
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"

supp=$REPO_ROOT/tests/ccm/lsan.supp
[ -f "$supp" ] && export LSAN_OPTIONS="suppressions=$supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export FI_AV_REMOVE_CLEANUP=${FI_AV_REMOVE_CLEANUP:-0}
PROVIDER=${DUET_TEST_PROVIDER:-net;ofi_rxm}

P=$PORT_BASE
MB=64
[ "$QUICK" = 1 ] && MB=32
TAG=$$
NSA=pxa$TAG NSB=pxb$TAG

# The namespaces go first (their links die with them once the nodes, ended
# by lib.sh's cleanup, have left), then lib.sh's cleanup.
trap '_rc=$?; netns_cleanup; (exit $_rc); _cleanup' EXIT

step "two namespaces, two veth pairs"
netns_pair "$NSA" "$NSB" || skip "cannot create network namespaces"
for i in 0 1; do
	veth_link "$NSA" "pa$i$TAG" "10.99.$i.1/24" "$NSB" "pb$i$TAG" "10.99.$i.2/24"
done

umask 077
write_cluster_key "$T/cluster.key"
write_conf() { # write_conf ME PEER MY_OCTET PEER_OCTET
	mkdir -p "$T/$1-shelf"
	write_node_config "$T/$1.conf" "$1" "$T" \
		"[nbd]" "listen = 127.0.0.1:$P" "proxy_listen = 127.0.0.1:$((P + 1))" \
		"[ic]" "provider = $PROVIDER" "partner = $2" "cluster_id = proxy-links" \
		"secret_file = $T/cluster.key" \
		"link = ic0 10.99.0.$3:$((P + 4)) 10.99.0.$4:$((P + 4))" \
		"link = ic1 10.99.1.$3:$((P + 5)) 10.99.1.$4:$((P + 5))" \
		"[proxy]" "timeout_ms = 30000"
}
start_in() { # start_in NAME NETNS
	echo "=== $(date +%T) start $1 in $2" >>"$T/$1.log"
	ip netns exec "$2" "$DUETD" --config "$T/$1.conf" 2>>"$T/$1.log" &
	NODE_PID[$1]=$!
	NODE_PORT[$1]=$P
	wait_for ctl "$1" status || fail "$1 did not come up"
}
links_up() { # links_up NODE N: N links up
	ctl "$1" status --json | jq -e --argjson n "$2" '[.links[] | select(.state == "up")] | length == $n'
}
link_is() { ctl "$1" status --json | jq -e --arg l "$2" --arg s "$3" 'any(.links[]; .name == $l and .state == $s)'; }
write_conf a b 1 2
write_conf b a 2 1

step "start a and b in their namespaces"
start_in a "$NSA"
start_in b "$NSB"
wait_for links_up a 2
ctl b volume create vol-b 256M >/dev/null
wait_for proxy_serves a vol-b

fio_bg() { # fio_bg NAME OFFSET_MB: paced random writes through a's proxy, verified
	ip netns exec "$NSA" fio --output-format=json --output="$T/fio-$1.json" --name=v \
		--ioengine=nbd --uri="nbd://127.0.0.1:$((P + 1))/vol-b" --verify=crc32c \
		--verify_fatal=1 --do_verify=1 --rw=randwrite --bs=64k --iodepth=16 \
		--size=${MB}M --offset=${2}M --rate=$((MB / 6))m >"$T/fio-$1.log" 2>&1 &
	FIO=$!
	track_pid $FIO
}
fio_ok() {
	local rc=0
	wait "$FIO" || rc=$?
	if [ $rc -ne 0 ] || [ "$(jq '[.jobs[].error] | add' "$T/fio-$1.json" 2>/dev/null)" != 0 ]; then
		cat "$T/fio-$1.log" >&2
		fail "fio $1: client error (status $rc)"
	fi
}
verify_on_b() { # the blocks are right on b's own port
	ip netns exec "$NSB" fio --name=v --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-b" \
		--verify=crc32c --verify_fatal=1 --verify_only --rw=randwrite --bs=64k \
		--iodepth=16 --size=${MB}M --offset=${2}M >"$T/check-$1.log" 2>&1 ||
		{ cat "$T/check-$1.log" >&2; fail "blocks of $1 wrong on b"; }
}

n=0
for link in ic1 ic0; do
	i=${link#ic}
	step "$link down and up again during proxied I/O"
	fio_bg "$link" $((n * MB))
	sleep 1.5
	ip -n "$NSA" link set "pa$i$TAG" down
	wait_for link_is a "$link" down
	sleep 1.5
	ip -n "$NSA" link set "pa$i$TAG" up
	fio_ok "$link"
	verify_on_b "$link" $((n * MB))
	wait_for -t 60 links_up a 2
	n=$((n + 1))
done

step "no error, no timeout"
ctl a status --json >"$T/a.json"
jq -e '.proxy.errors == 0 and .proxy.timeouts == 0 and .proxy.bad_replies == 0 and
	.proxy.commands > 0' "$T/a.json" >/dev/null || fail "a's proxy: $(jq -c .proxy "$T/a.json")"

stop_node a
stop_node b
