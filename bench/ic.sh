#!/usr/bin/env bash
# Interconnect benchmarks (issue 3): the CCM against raw libfabric, raw TCP
# and itself. Targets, not tests: the script prints a table with ratios and
# exits 0 whatever the numbers (non-zero only when a run itself failed).
#
#   bench/ic.sh [--build DIR] [--rounds N] [--only LIST] [--quick]
#
#   handshake  two fresh processes on loopback (one link), started at the
#              same instant, 20 starts each of: the CCM (to partner_ready)
#              and the bare src/fabric link (to a first 256-byte RDMA read
#              of the partner: libfabric's connection set-up), alternating
#   lat        4 KiB write with delivery complete, one in flight: CCM port
#              (ccm_port_write CCM_WRITE_DELIVERED) vs raw libfabric vs raw
#              TCP (bench/fi_raw) vs the bare src/fabric link (ic_bench
#              fabnode), each both sleeping and busy-polling, loopback, one
#              link; sleep: the duet loop's epoll (CCM, src/fabric), or
#              fi_trywait + poll (raw libfabric), or blocking recv (TCP);
#              spin: loop_run_once(0) on both sides (CCM, src/fabric), or
#              fi_cq_read / MSG_DONTWAIT spinning (raw)
#   bw         (root) two network namespaces joined by two veth pairs, each
#              veth limited by tc tbf to RATE in both directions: streaming
#              delivered writes through CCM ports over one link, then two,
#              with 2 ports x BW_INFLIGHT ("4 16") x 64 KiB in flight
#   failover   (root) the same namespaces, no rate limit: under a stream of
#              4 KiB delivered writes, one veth set down (ioctl SIOCSIFFLAGS
#              in node a's namespace, what `ip link set down` does), TRIALS
#              times: cut -> link taken out -> every write in flight at the
#              cut completed on the other link; once with the default
#              probe/deadline (20/100 ms), once with FO_TUNED.
#
# --rounds N  repeat each comparison N times (default 3) and report medians
# --only L    comma-separated subset of handshake,lat,bw,failover
# --quick     fewer iterations (a smoke run, numbers not for the docs)
#
# Env: IC_PORT_BASE (29000; uses BASE..BASE+19), IC_PROVIDER (tcp;ofi_rxm,
# loopback), IC_NS_PROVIDER (tcp;ofi_rxm, namespaces), RATE (200mbit),
# TRIALS (10), FO_TUNED ("10 50":
# probe_ms link_deadline_ms), IC_LOG_LEVEL (warn), IC_B_ARGS (more
# options for the passive node b in namespaces, e.g. "--stats-ms 5" to see
# its reactor stalls as gaps between its stats lines), KEEP=1 keeps the
# work dir.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
ROUNDS=3
ONLY=handshake,lat,bw,failover
QUICK=0
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$(cd "$2" && pwd); shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--only) ONLY=$2; shift ;;
	--quick) QUICK=1 ;;
	-h | --help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "ic.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

IC=$BUILD/bench/ic_bench
FIRAW=$BUILD/bench/fi_raw
BASE=${IC_PORT_BASE:-29000}
PROV=${IC_PROVIDER:-tcp;ofi_rxm}
NSPROV=${IC_NS_PROVIDER:-tcp;ofi_rxm}
RATE=${RATE:-200mbit}
TRIALS=${TRIALS:-10}
read -r FO_PROBE FO_DL <<<"${FO_TUNED:-10 50}"
STARTS=20 ITERS=20000 BW_SECS=5
BW_INFLIGHT=${BW_INFLIGHT:-4 16}
[ $QUICK = 1 ] && STARTS=4 ITERS=2000 BW_SECS=2 TRIALS=3

BENCH_NAME=ic.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

for x in "$IC" "$FIRAW"; do
	[ -x "$x" ] || { echo "ic.sh: $x missing: ninja -C $BUILD" >&2; exit 2; }
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

W=$(mktemp -d "${TMPDIR:-/tmp}/ic-bench.XXXXXX")
TAG=$$
NSA=icba$TAG NSB=icbb$TAG
declare -a PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	netns_cleanup
	if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FAILED=0
umask 077
printf 'ic bench cluster secret, long enough\n' >"$W/secret"
chmod 600 "$W/secret"

# conf NAME PARTNER PROVIDER [extra [ic] lines...] (link lines among them)
conf() {
	local n=$1 p=$2 prov=$3
	shift 3
	write_node_config "$W/$n.conf" "$n" "$W" "log_level = ${IC_LOG_LEVEL:-warn}" \
		"[nbd]" "listen = 127.0.0.1:1" "[ic]" "provider = $prov" "partner = $p" \
		"cluster_id = icbench" "secret_file = $W/secret" "$@"
}

# kv LINE KEY: the value of key=value in a metric line
kv() { sed -n "s/.*[ =]$2=\([^ ]*\).*/\1/p" <<<" $1" | head -n1; }
med() { sort -g | awk '{v[NR]=$1} END {if (!NR) {print "nan"; exit} if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b+0 == 0) print "n/a"; else printf "%.2f", a/b}'; }

echo "# bench/ic.sh $(date -u '+%F %T') UTC, $(nproc) cpus, rounds=$ROUNDS, provider $PROV (loopback), $NSPROV (namespaces)"
echo "# load before: $(uptime | sed 's/.*load average/load average/')"

# pair NAME B-CMD... --- A-CMD...: start B (the passive partner), then A
# (the measuring side, at most 600 s); $W/NAME.out gets A's stdout,
# $W/NAME-{a,b}.err their logs. Whichever ends first is noticed at once: B
# ending first is an error (A is stopped); after A, B is stopped with TERM
# and must exit 0. Returns 0 when both did.
pair() {
	local name=$1 bcmd=() first="" rc=0 brc=0
	shift
	while [ "$1" != --- ]; do bcmd+=("$1"); shift; done
	shift
	"${bcmd[@]}" >"$W/$name-b.out" 2>"$W/$name-b.err" &
	local bp=$!
	timeout 600 "$@" >"$W/$name.out" 2>"$W/$name-a.err" &
	local ap=$!
	PIDS=("$ap" "$bp")
	wait -n -p first "$ap" "$bp" || rc=$?
	if [ "$first" = "$bp" ]; then
		echo "$name: partner b exited first (status $rc):"
		tail -n 5 "$W/$name-b.err"
		kill -TERM "$ap" 2>/dev/null
		wait "$ap" 2>/dev/null
		rc=1
	else
		[ $rc = 0 ] || { echo "$name: run failed (status $rc):"; tail -n 8 "$W/$name-a.err"; }
		kill -TERM "$bp" 2>/dev/null
		wait "$bp" || brc=$?
		[ $brc = 0 ] || { echo "$name: partner b exited with status $brc:"; tail -n 5 "$W/$name-b.err"; rc=1; }
	fi
	PIDS=()
	[ $rc = 0 ] || FAILED=1
	return $rc
}

# ---------------------------------------------------------------- handshake
if want handshake; then
	conf a b "$PROV" "link = ic0 127.0.0.1:$BASE 127.0.0.1:$((BASE + 1))"
	conf b a "$PROV" "link = ic0 127.0.0.1:$((BASE + 1)) 127.0.0.1:$BASE"
	echo
	echo "## handshake: $STARTS simultaneous starts of two fresh processes, loopback, 1 link"
	if ! "$IC" launch --config "$W/a.conf" --config "$W/b.conf" --runs "$STARTS" --both \
		>"$W/hs.out" 2>"$W/hs.err"; then
		echo "handshake runs failed:"; tail -n 5 "$W/hs.out" "$W/hs.err"; FAILED=1
	fi
	F=$(grep '^metric=fabric_first_read' "$W/hs.out")
	C=$(grep '^metric=ccm_handshake' "$W/hs.out")
	if [ -n "$F" ] && [ -n "$C" ]; then
		fa=$(kv "$F" after_open_p50_ms) ca=$(kv "$C" after_open_p50_ms)
		extra=$(awk -v a="$ca" -v b="$fa" 'BEGIN {printf "%.2f", a-b}')
		echo "| medians (ms) | wall: fork to both up | exec (fork to main) | opened (fork to both links open) | open to both up | handshake_us (mean of sides) | handshake_us (slower side) |"
		echo "|---|---|---|---|---|---|---|"
		for L in "$F" "$C"; do
			echo "| $(kv "$L" metric) | $(kv "$L" wall_p50_ms) ($(kv "$L" wall_min_ms)-$(kv "$L" wall_max_ms)) | $(kv "$L" exec_p50_ms) | $(kv "$L" open_done_p50_ms) | $(kv "$L" after_open_p50_ms) | $(kv "$L" handshake_p50_ms) | $(kv "$L" handshake_max_p50_ms) |"
		done
		echo "CCM beyond the bare link's connection set-up (open to both up, CCM - fabric): $extra ms; CCM's own handshake_us (slower side) p50 $(kv "$C" handshake_max_p50_ms) ms; target < 5 ms"
	fi
fi

# ---------------------------------------------------------------- latency
if want lat; then
	conf a b "$PROV" "link = ic0 127.0.0.1:$((BASE + 2)) 127.0.0.1:$((BASE + 3))"
	conf b a "$PROV" "link = ic0 127.0.0.1:$((BASE + 3)) 127.0.0.1:$((BASE + 2))"
	echo
	echo "## 4 KiB write, delivery complete, one in flight, loopback, $ITERS iterations x $ROUNDS rounds (medians of the rounds' p50/p99, us)"
	: >"$W/lat.out"
	ccm_lat() { # spin-flag wait-name
		pair "lat-ccm-$2" "$IC" node --config "$W/b.conf" --load none $1 --- \
			"$IC" node --config "$W/a.conf" --load lat --iters "$ITERS" $1 &&
			sed -n "s/^metric=ccm_write_dc_lat/metric=ccm_write_dc_lat_$2/p" "$W/lat-ccm-$2.out" >>"$W/lat.out"
	}
	fab_lat() { # spin-flag wait-name: the bare src/fabric link, same loop
		pair "lat-fab-$2" "$IC" fabnode --config "$W/b.conf" $1 --- \
			"$IC" fabnode --config "$W/a.conf" --load lat --iters "$ITERS" $1 &&
			sed -n "s/^metric=fab_write_dc_lat/metric=fab_write_dc_lat_$2/p" "$W/lat-fab-$2.out" >>"$W/lat.out"
	}
	for ((r = 0; r < ROUNDS; r++)); do
		"$FIRAW" --port $((BASE + 4)) --iters "$ITERS" --mode fi_lat_wait >>"$W/lat.out" 2>>"$W/lat.err" || FAILED=1
		fab_lat "" sleep
		ccm_lat "" sleep
		"$FIRAW" --port $((BASE + 4)) --iters "$ITERS" --mode fi_lat >>"$W/lat.out" 2>>"$W/lat.err" || FAILED=1
		fab_lat --spin spin
		ccm_lat --spin spin
		"$FIRAW" --port $((BASE + 4)) --iters "$ITERS" --mode tcp_lat >>"$W/lat.out" 2>>"$W/lat.err" || FAILED=1
	done
	lat_of() { grep "^metric=$1 " "$W/lat.out" | while read -r l; do kv "$l" "$2"; done | med; }
	echo "| path | wait | p50 | p99 | p50 / raw libfabric (same wait) |"
	echo "|---|---|---|---|---|"
	for w in sleep spin; do
		raw=$(lat_of "fi_write_4k_dc_lat_$w" p50_us)
		for m in "ccm_write_dc_lat_$w:CCM port (ccm_port_write, delivered)" \
			"fab_write_dc_lat_$w:src/fabric link (fab_write, delivered; no CCM)" \
			"fi_write_4k_dc_lat_$w:raw libfabric (fi_writemsg FI_DELIVERY_COMPLETE)" \
			"tcp_4k_lat_$w:raw TCP (4 KiB, 8 B answer)"; do
			k=${m%%:*} name=${m#*:}
			p50=$(lat_of "$k" p50_us)
			echo "| $name | $w | $p50 | $(lat_of "$k" p99_us) | $(ratio "$p50" "$raw") |"
		done
	done
	echo "target: CCM <= 1.15x raw libfabric"
fi

# ---------------------------------------------------------------- namespaces
ns_setup() {
	netns_pair "$NSA" "$NSB" || return 1
	local i
	for i in 0 1; do
		veth_link "$NSA" "ia$i-$TAG" "10.88.$i.1/24" "$NSB" "ib$i-$TAG" "10.88.$i.2/24" || return 1
	done
}

# ns_conf NLINKS [extra lines...]
ns_conf() {
	local n=$1 la=() lb=() i
	shift
	for ((i = 0; i < n; i++)); do
		la+=("link = ic$i 10.88.$i.1:$((BASE + 10 + i)) 10.88.$i.2:$((BASE + 10 + i))")
		lb+=("link = ic$i 10.88.$i.2:$((BASE + 10 + i)) 10.88.$i.1:$((BASE + 10 + i))")
	done
	conf a b "$NSPROV" "${la[@]}" "$@"
	conf b a "$NSPROV" "${lb[@]}" "$@"
}

# ns_run NAME LOAD-ARGS...: b passive in NSB, a with the load in NSA
# ($W/NAME.out is a's output).
ns_run() {
	local name=$1
	shift
	# shellcheck disable=SC2086
	pair "$name" ip netns exec "$NSB" "$IC" node --config "$W/b.conf" --load none "${@:2}" ${IC_B_ARGS:-} --- \
		ip netns exec "$NSA" "$IC" node --config "$W/a.conf" --load "$@"
}

if want bw || want failover; then
	if [ "$(id -u)" != 0 ] || ! command -v tc >/dev/null; then
		echo
		echo "## bw, failover: skipped (need root and tc for network namespaces)"
		ONLY=${ONLY//bw/}
		ONLY=${ONLY//failover/}
	elif ! ns_setup; then
		echo "ic.sh: cannot set up network namespaces" >&2
		exit 1
	fi
fi

if want bw; then
	for i in 0 1; do
		ip netns exec "$NSA" tc qdisc add dev "ia$i-$TAG" root tbf rate "$RATE" burst 128kb latency 20ms
		ip netns exec "$NSB" tc qdisc add dev "ib$i-$TAG" root tbf rate "$RATE" burst 128kb latency 20ms
	done
	echo
	echo "## two links against one: each veth limited by tc tbf to $RATE (both directions), streaming delivered writes of 64 KiB on 2 ports, ${BW_SECS} s after 1 s warm-up, $ROUNDS rounds (medians)"
	: >"$W/bw.out"
	for ((r = 0; r < ROUNDS; r++)); do
		for q in $BW_INFLIGHT; do
			for n in 1 2; do
				ns_conf $n
				f=bw-$q-$n-$r
				ns_run "$f" stream --ports 2 --inflight "$q" --size 64K --duration "$BW_SECS" &&
					grep '^metric=ccm_stream' "$W/$f.out" |
					sed "s/^/q=$q links=$n flaps=$(grep -c 'link ic[0-9] down' "$W/$f-a.err") /" >>"$W/bw.out"
			done
		done
	done
	bw_of() { grep "^q=$1 links=$2 " "$W/bw.out" | while read -r l; do kv "$l" "$3"; done | med; }
	echo "| in flight | links | Mbit/s | runs | share ic0 / ic1 | links taken out during the run (probe missed) | two links / one |"
	echo "|---|---|---|---|---|---|---|"
	for q in $BW_INFLIGHT; do
		b1=$(bw_of "$q" 1 mbit_per_s) b2=$(bw_of "$q" 2 mbit_per_s)
		echo "| 2 x $q x 64 KiB | 1 | $b1 | $(grep -c "^q=$q links=1 " "$W/bw.out") | 1 / - | $(bw_of "$q" 1 flaps) | |"
		echo "| 2 x $q x 64 KiB | 2 | $b2 | $(grep -c "^q=$q links=2 " "$W/bw.out") | $(bw_of "$q" 2 share_ic0) / $(bw_of "$q" 2 share_ic1) | $(bw_of "$q" 2 flaps) | $(ratio "$b2" "$b1")x |"
	done
	echo "target: two links >= 1.6x one; each link's limit $RATE"
	for i in 0 1; do
		ip netns exec "$NSA" tc qdisc del dev "ia$i-$TAG" root 2>/dev/null
		ip netns exec "$NSB" tc qdisc del dev "ib$i-$TAG" root 2>/dev/null
	done
fi

if want failover; then
	echo
	echo "## link failover: 2 links, stream of 4 KiB delivered writes (16 in flight), ic1 set down in a's namespace, $TRIALS trials (ms)"
	echo "| probe / deadline | cut -> ic1 out (p50) | cut -> writes sent before that done on ic0: p50 (min-max) | longest stall, p50 (max) | repair -> ic1 back (p50) | errors | times no link was left (a / b) |"
	echo "|---|---|---|---|---|---|---|"
	for cfg in "20 100" "$FO_PROBE $FO_DL"; do
		read -r probe dl <<<"$cfg"
		ns_conf 2 "probe_ms = $probe" "link_deadline_ms = $dl"
		if ns_run "fo-$probe" failover --inflight 16 --size 4K --trials "$TRIALS" \
			--cut-link ic1 --cut-if "ia1-$TAG"; then
			M=$(grep '^metric=ccm_failover' "$W/fo-$probe.out")
			echo "| $probe / $dl | $(kv "$M" detect_p50_ms) | $(kv "$M" moved_p50_ms) ($(kv "$M" moved_min_ms)-$(kv "$M" moved_max_ms)) | $(kv "$M" stall_p50_ms) (max $(kv "$M" stall_max_ms)) | $(kv "$M" back_p50_ms) | $(kv "$M" errors) | $(grep -c 'no link left' "$W/fo-$probe-a.err") / $(grep -c 'no link left' "$W/fo-$probe-b.err") |"
			grep '^trial=' "$W/fo-$probe.out" | sed "s/^/    $probe\/$dl /" >>"$W/fo-trials.txt"
		fi
	done
	echo "target: cut -> writes done on the other link, p50 < 100 ms"
	echo "per trial:"
	cat "$W/fo-trials.txt" 2>/dev/null
fi

echo
echo "# load after: $(uptime | sed 's/.*load average/load average/')"
exit $FAILED
