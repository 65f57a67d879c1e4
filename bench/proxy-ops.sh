#!/usr/bin/env bash
# Fabric operations and messages per proxied request (issue 11), from the
# nodes' own counters: load-independent at queue depth 1 (at higher depths
# how many requests share a batch depends on timing). A tools/duet-pair
# pair (one link); fio (nbd engine) sends SYS_N requests of each case to
# vol-a through b's proxy port, so b forwards and a serves. Per request and
# node: the proxy client's CCM messages sent and received
# (ccm_clients[].msgs_sent/msgs_received), its standalone acks
# (acks_sent), and the link's completed operations (links[].ops: message
# sends, RDMA reads and writes, probes; net of the probes' background,
# measured idle for 2 s first). Receives are the partner's sends.
#
#   bench/proxy-ops.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SYS_N requests per case (default 2000; 1 MiB cases use N/8),
#      SYS_PORT_BASE (44900; uses base .. base+3, +100, +101),
#      OPS_CASES (subset of "randread-4k-qd1 randwrite-4k-qd1
#      randread-4k-qd32 randwrite-4k-qd32 read-1m-qd8 write-1m-qd8").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
N=${SYS_N:-2000}
P=${SYS_PORT_BASE:-44900}
CASES=${OPS_CASES:-randread-4k-qd1 randwrite-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 read-1m-qd8 write-1m-qd8}
PAIR=$ROOT/tools/duet-pair
DUETCTL=$BUILD/tools/duetctl
export DUET_BUILD=$BUILD
for t in fio jq; do
	command -v "$t" >/dev/null || { echo "proxy-ops.sh: needs $t" >&2; exit 2; }
done
W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/duet-ops.XXXXXX")
cleanup() { "$PAIR" down "$W/pair" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PAIR" up "$W/pair" --base-port "$P" --links 1 --size 256M --log-level warn >/dev/null
ctl() { "$DUETCTL" --socket "$W/pair/$1.sock" "${@:2}"; }
for i in $(seq 1 300); do
	[ "$(ctl a status --json | jq -r .mirror.state)" = in_sync ] &&
		[ "$(ctl b status --json | jq -r .proxy.state)" = up ] && break
	sleep 0.1
done
fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=write --bs=1m \
	--size=256m --iodepth=4 >/dev/null 2>&1

# snap NODE: "link_ops msgs_sent msgs_received acks_sent forwarded served"
snap() {
	ctl "$1" status --json | jq -r '[([.links[].ops] | add),
		(.ccm_clients[] | select(.name == "proxy") | .msgs_sent, .msgs_received, (.acks_sent // 0)),
		.proxy.requests, .proxy.served.requests] | map(tostring) | join(" ")'
}
# The probes' background: link operations per second, idle.
a0=$(snap a) b0=$(snap b)
sleep 2
a1=$(snap a) b1=$(snap b)
bg_a=$(awk -v x="$a0" -v y="$a1" 'BEGIN { split(x, p); split(y, q); print (q[1] - p[1]) / 2 }')
bg_b=$(awk -v x="$b0" -v y="$b1" 'BEGIN { split(x, p); split(y, q); print (q[1] - p[1]) / 2 }')

echo "## fabric operations and messages per proxied request (b forwards, a serves; one link)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- background link operations (probes) per second, idle: a $bg_a, b $bg_b"
echo
echo "| case | requests | b: link ops (net) | b: msgs sent / received | b: standalone acks | a: link ops (net) | a: msgs sent / received | a: standalone acks |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in $CASES; do
	IFS=- read -r rw bs qd <<<"$c"
	n=$N
	[ "$bs" = 1m ] && n=$((N / 8))
	a0=$(snap a) b0=$(snap b)
	t0=$(date +%s%N)
	fio --name=ops --ioengine=nbd --uri="nbd://127.0.0.1:$((P + 3))/vol-a" --rw="$rw" \
		--bs="$bs" --iodepth="${qd#qd}" --number_ios="$n" --size=256m --norandommap \
		--randrepeat=0 >/dev/null 2>"$W/fio.err" || { cat "$W/fio.err" >&2; exit 1; }
	t1=$(date +%s%N)
	a1=$(snap a) b1=$(snap b)
	awk -v c="$c" -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" -v bga="$bg_a" \
		-v bgb="$bg_b" -v s=$(((t1 - t0) / 1000000)) 'BEGIN {
		split(a0, p); split(a1, q); split(b0, x); split(b1, y)
		r = y[5] - x[5]
		if (r <= 0) { print "| " c " | 0 | | | | | | |"; exit }
		printf "| %s | %d | %.2f | %.2f / %.2f | %.2f | %.2f | %.2f / %.2f | %.2f |\n", c, r,
			(y[1] - x[1] - bgb * s / 1000) / r, (y[2] - x[2]) / r, (y[3] - x[3]) / r,
			(y[4] - x[4]) / r, (q[1] - p[1] - bga * s / 1000) / r, (q[2] - p[2]) / r,
			(q[3] - p[3]) / r, (q[4] - p[4]) / r }'
done
