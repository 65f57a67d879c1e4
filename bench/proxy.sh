#!/usr/bin/env bash
# Proxy benchmark: fio's nbd engine against the same volume through its
# owner's direct port and through the partner's proxy port, in the same run.
# A local pair on loopback (one interconnect link, tcp;ofi_rxm): node b owns
# vol-b (1 GiB, written fully once first); "direct" is b's NBD port,
# "proxy" is a's proxy port. Jobs alternate direct/proxy for BENCH_ROUNDS
# rounds; the table shows the median of the rounds. The peer: "nbdkit-fwd",
# nbdkit's nbd plugin on its own port forwarding to b's direct port, the
# same extra NBD hop through a generic forwarder (no interconnect), so that
# the cost of a hop on this machine is measured beside duet's.
#
#   bench/proxy.sh [--write-doc] [BUILD_DIR]      (BUILD_DIR default: build)
#
# Env: BENCH_SECONDS (per job, port and round, default 5), BENCH_ROUNDS
# (default 3), BENCH_DIR (default $TMPDIR or /tmp), BENCH_PORT_BASE (default
# 23960; uses seven ports), BENCH_JOBS (a subset of the job names),
# BENCH_SYSCALLS (1, the default, with strace: also system calls per 4 KiB
# proxied read and write on both nodes, bench/syscalls.sh), BENCH_SPIN_US
# ([ic] spin_us of both nodes; default: duetd's), BENCH_REALTIME ([node]
# realtime of both nodes, on | off; default: duetd's), BENCH_CLIENT_RT (fio
# at SCHED_RR of this priority, bench/lib.sh), BENCH_CPU (1, the default:
# also CPU per I/O of the whole machine and of each node, bench/lib.sh),
# BENCH_FWD (1, the default: also the nbdkit-fwd peer; 0: without it).
# Prints Markdown tables; --write-doc also replaces the "Proxy" section of
# docs/BENCHMARKS.md with them. Targets (issue 11; not tests): proxy >= 0.5x
# direct IOPS for 4 KiB reads at iodepth 1, >= 0.8x at iodepth 32 and for
# 1 MiB.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=proxy.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_args "$@"
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
P=${BENCH_PORT_BASE:-23960}
SIZE=1G

bench_need_fio_bench fio jq ss

bench_workdir duet-bench-proxy

ctl() {
	local n=$1
	shift
	"$DUETCTL" --socket "$W/$n.sock" "$@"
}
wait_until() { # wait_until WHAT CMD...
	local what=$1 deadline=$((SECONDS + 60))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || {
			echo "proxy.sh: $what" >&2
			tail -5 "$W"/*.log >&2
			exit 1
		}
		sleep 0.05
	done
}

umask 077
write_cluster_key "$W/cluster.key"
node() { # node ME PEER NBD PROXY MY_IC PEER_IC
	mkdir -p "$W/$1-shelf"
	write_node_config "$W/$1.conf" "$1" "$W" "log_level = warn" \
		${BENCH_REALTIME:+"realtime = $BENCH_REALTIME"} \
		"[nbd]" "listen = 127.0.0.1:$3" "proxy_listen = 127.0.0.1:$4" \
		"[ic]" "partner = $2" "cluster_id = bench-proxy" "secret_file = $W/cluster.key" \
		"link = ic0 127.0.0.1:$5 127.0.0.1:$6" ${BENCH_SPIN_US:+"spin_us = $BENCH_SPIN_US"}
	"$DUETD" --config "$W/$1.conf" 2>"$W/$1.log" &
	PIDS+=($!)
	BENCH_PID_NAME[$!]=$1
}
node a b "$P" $((P + 1)) $((P + 4)) $((P + 5))
node b a $((P + 2)) $((P + 3)) $((P + 5)) $((P + 4))
wait_until "node a did not start" ctl a status
wait_until "node b did not start" ctl b status
ctl b volume create vol-b $SIZE >/dev/null
serves() { ctl a status --json | jq -e 'any(.volumes[]; .name == "vol-b" and .port == "proxy") and .proxy.state == "up"'; }
wait_until "a's proxy port does not serve vol-b" serves

URI_direct=nbd://127.0.0.1:$((P + 2))/vol-b
URI_proxy=nbd://127.0.0.1:$((P + 1))/vol-b
SIDES=(direct proxy)
if [ "${BENCH_FWD:-1}" = 1 ] && nbdkit nbd --dump-plugin >/dev/null 2>&1; then
	# One upstream connection per client connection (not shared), like the
	# proxy's port; nbdkit's parallel thread model keeps the client's depth.
	nbdkit -f -p $((P + 6)) -i 127.0.0.1 nbd hostname=127.0.0.1 port=$((P + 2)) export=vol-b \
		2>"$W/fwd.log" &
	PIDS+=($!)
	BENCH_PID_NAME[$!]=fwd
	bench_wait_port $((P + 6)) "$!" fwd
	URI_fwd=nbd://127.0.0.1:$((P + 6))/
	SIDES+=(fwd)
fi
has_fwd() { [ ${#SIDES[@]} = 3 ]; }

echo "pre-filling vol-b ($SIZE) through b's port..." >&2
bench_prefill vol-b "$URI_direct" $SIZE

# name | fio arguments | which side of the result to read
JOBS=(
	"randread-4k-qd1|--rw=randread --bs=4k --iodepth=1|read"
	"randread-4k-qd32|--rw=randread --bs=4k --iodepth=32|read"
	"randwrite-4k-qd1|--rw=randwrite --bs=4k --iodepth=1|write"
	"randwrite-4k-qd32|--rw=randwrite --bs=4k --iodepth=32|write"
	"read-1m-qd8|--rw=read --bs=1m --iodepth=8|read"
	"write-1m-qd8|--rw=write --bs=1m --iodepth=8|write"
)

# median of the rounds, by IOPS: its whole line
median() { sort -n -k1,1 | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }

rows=() cpu_rows=()
for j in "${JOBS[@]}"; do
	IFS='|' read -r name args side <<<"$j"
	bench_want_job "$name" || continue
	for s in "${SIDES[@]}"; do : >"$W/$name-$s.tsv"; done
	for ((r = 1; r <= ROUNDS; r++)); do
		for s in "${SIDES[@]}"; do
			uri_var=URI_$s
			echo "$name on $s, round $r/$ROUNDS (${SECS}s)..." >&2
			bench_fio "$name" "$args" "${!uri_var}" "$W/$name-$s.json" "$s"
			echo "$(bench_metric "$W/$name-$s.json" "$side") $(bench_cpu "$W/$name-$s.json" "$side")" \
				>>"$W/$name-$s.tsv"
		done
	done
	read -r d_iops _ d_p50 d_p99 d_busy d_us d_split <<<"$(median <"$W/$name-direct.tsv")"
	read -r p_iops _ p_p50 p_p99 p_busy p_us p_split <<<"$(median <"$W/$name-proxy.tsv")"
	f_iops=- f_p50=- f_us=- f_ratio=- pf_ratio=-
	if has_fwd; then
		read -r f_iops _ f_p50 _ _ f_us _ <<<"$(median <"$W/$name-fwd.tsv")"
		f_ratio=$(bench_ratio "$f_iops" "$d_iops")
		pf_ratio=$(bench_ratio "$p_iops" "$f_iops")
	fi
	ratio=$(bench_ratio "$p_iops" "$d_iops")
	target=""
	case $name in
	randread-4k-qd1) target="0.5" ;;
	*qd32 | *1m*) target="0.8" ;;
	esac
	rows+=("| $name | $d_iops | $p_iops | $f_iops | $d_p50 | $p_p50 | $f_p50 | $d_p99 | $p_p99 | **$ratio** | $f_ratio | **$pf_ratio** | ${target:--} |")
	per=op
	[[ $name != *1m* ]] || per=MiB
	cpu_rows+=("| $name | $d_busy | $p_busy | $d_us | $p_us | $f_us | $(bench_ratio "$d_us" "$p_us") | ${d_split:--} | ${p_split:--} | $per |")
done

bench_servers_alive "a node"
realtime_end=$(bench_realtime a="$W/a.sock" b="$W/b.sock")
ctl a status --json | jq -e '.proxy.errors == 0' >/dev/null || {
	echo "proxy.sh: the proxy reported errors: $(ctl a status --json | jq -c .proxy)" >&2
	exit 1
}

cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
table() {
	echo "| job | direct IOPS | proxy IOPS | nbdkit-fwd IOPS | direct p50 µs | proxy p50 µs | nbdkit-fwd p50 µs | direct p99 µs | proxy p99 µs | proxy/direct | nbdkit-fwd/direct | proxy/nbdkit-fwd | target (proxy/direct) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${rows[@]}"
	[ "${BENCH_CPU:-1}" = 1 ] || return 0
	echo
	echo "CPU per I/O (per MiB for the 1 MiB jobs), of the whole machine over each job's measured"
	echo "window (/proc/stat), and of each node (/proc/PID/stat, all threads); \"rest\" is fio, softirqs"
	echo "and kernel threads; \"cs\" the machine's context switches per I/O. Where both sides keep"
	echo "the CPUs near 100% busy, proxy/direct can be no better than the ratio of their CPU per I/O"
	echo "(\"CPU bound\"):"
	echo
	echo "| job | direct busy % | proxy busy % | direct CPU µs | proxy CPU µs | nbdkit-fwd CPU µs | CPU bound | direct split µs | proxy split µs | per |"
	echo "|---|---:|---:|---:|---:|---:|---:|---|---|---|"
	printf '%s\n' "${cpu_rows[@]}"
}
section() {
	echo "## Proxy"
	echo
	echo "fio $(fio --version | sed 's/^fio-//') with the nbd engine (libnbd), one connection per job, against"
	echo "the same 1 GiB volume of node b through b's own NBD port (direct) and through node a's"
	echo "proxy port (proxy: NBD into a, forwarded over the interconnect to b, executed there, answered"
	echo "back), in the same run. A local pair on loopback, one interconnect link (tcp;ofi_rxm), default"
	echo "[proxy] settings (4 ports of 16 MiB, 1 MiB requests). The volume was written fully once"
	echo "before the jobs, so reads hit written data (volume files are O_DIRECT by default: reads"
	echo "go to the disk, as direct's do). Jobs alternate direct and proxy for"
	echo "$ROUNDS rounds of ${SECS} s (after 1 s of ramp); the table shows the median round by IOPS."
	echo "The ratio is proxy IOPS / direct IOPS (for the 1 MiB jobs IOPS is MiB/s). The peer,"
	echo "nbdkit-fwd, is nbdkit $(nbdkit --version | awk '{print $2}')'s nbd plugin on its own port, forwarding to b's direct"
	echo "port: the same extra NBD hop through a generic forwarder, without the interconnect."
	echo "On a small shared machine the ratios move from run to run (by 0.1-0.3 on the development"
	echo "machine, whose load average is given below): compare several runs."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc) CPUs ($cpu), Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "- duet: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), $(basename "$build") build"
	echo "- command: \`BENCH_SECONDS=$SECS BENCH_ROUNDS=$ROUNDS bench/proxy.sh --write-doc\`"
	echo "- [node] realtime at the end: $realtime_end"
	echo
	table
	echo
	syscalls
	if [ -f "$ROOT/docs/PROXY.md" ]; then
		echo "What bounds these numbers here, and what was measured to choose the design:"
		echo "docs/PROXY.md, \"Performance\"."
		echo
	fi
}

SYSCALLS_OUT=""
if [ "${BENCH_SYSCALLS:-1}" = 1 ] && command -v strace >/dev/null; then
	SYSCALLS_OUT=$(SYS_CASES="proxy-read proxy-write" SYS_PORT_BASE=$((P + 40)) \
		"$ROOT/bench/syscalls.sh" "$build" | grep '^|' || echo "(bench/syscalls.sh failed)")
fi
syscalls() {
	[ -n "$SYSCALLS_OUT" ] || return 0
	echo "System calls per proxied request (load-independent; strace -f -c over a fixed number"
	echo "of 4 KiB requests at queue depth 1, bench/syscalls.sh):"
	echo
	echo "$SYSCALLS_OUT"
	echo
}

echo
table
echo
syscalls
if [ $write_doc = 1 ]; then
	doc=$ROOT/docs/BENCHMARKS.md
	mkdir -p "$(dirname "$doc")"
	[ -e "$doc" ] || printf '# Benchmarks\n\nEach benchmark runs duet and a peer in the same run on the same machine.\n\n' >"$doc"
	section >"$W/section.md"
	bench_write_section "$doc" Proxy "$W/section.md"
	echo "wrote the Proxy section of $doc" >&2
fi
