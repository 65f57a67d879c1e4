#!/usr/bin/env bash
# Mirror benchmark: what the NVRAM log and its mirror cost a writer. fio's
# nbd engine, in the same run, against
#   on        duetd a of a pair (a, b on loopback, one interconnect link),
#             [mirror] mirror = on: every write logged and RDMA-written into
#             b's image before the acknowledgement; the log and the image
#             at their default places, files next to the shelves
#   on-tmpfs  the same with both files on tmpfs (BENCH_TMPFS): what
#             durability = memory recommends, no write-back of the log
#   local     a single duetd, [mirror] mirror = local (the log, no partner)
#   off       a single duetd, [mirror] mirror = off (no log: straight to the
#             volume file, as before the mirror)
#   nbdkit    nbdkit's file plugin
# each on its own 1 GiB volume on the same filesystem, written fully once
# before the jobs. Then the raw link round trip (build/bench/fi_raw: a 4 KiB
# delivery-complete fi_write, and the same through src/fabric), so the
# mirror's share of the latency shows.
#
#   bench/mirror.sh [--write-doc] [BUILD_DIR]      (BUILD_DIR default: build)
#
# Env: BENCH_SECONDS  seconds per job and server (default 10)
#      BENCH_REPEAT   runs of each job per server, rotating who goes first;
#                     the median run by IOPS is reported (default 1)
#      BENCH_DIR      where shelves and logs live (default $TMPDIR or /tmp)
#      BENCH_TMPFS    the tmpfs directory of on-tmpfs (default /dev/shm)
#      BENCH_PORT_BASE  first of the ports used, 40 of them (default 24950)
#      BENCH_SPIN_US  [ic] spin_us of both nodes (default: duetd's)
#      BENCH_REALTIME [node] realtime of every duetd, on | off (default: duetd's)
#      BENCH_GROUP_WINDOW [mirror] group_window of every duetd (default: duetd's)
#      BENCH_CPU      1 (default): CPU per write of each median run (bench/lib.sh)
#      BENCH_CLIENT_RT fio at SCHED_RR of this priority (bench/lib.sh; default
#                     normal priority)
#      BENCH_SERVERS  a subset of "on on-tmpfs local off nbdkit" (default all)
#      BENCH_JOBS     a subset of the job names, space separated
#      BENCH_DISK     1 (default): also the disk's own O_DIRECT 1 MiB write
#                     bandwidth (fio, libaio, iodepth 8, a file beside the
#                     shelves), the bound of a sustained mirrored stream
#      BENCH_SYSCALLS 1 (default, needs strace): also system calls per 4 KiB
#                     write, mirror on (a and b) and off (bench/syscalls.sh)
# Prints Markdown tables; --write-doc also replaces the "Mirror" section of
# docs/BENCHMARKS.md with them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=mirror.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_args "$@"
FI_RAW=$build/bench/fi_raw
SECS=${BENCH_SECONDS:-10}
REPEAT=${BENCH_REPEAT:-1}
P=${BENCH_PORT_BASE:-24950}
SERVERS=${BENCH_SERVERS:-on on-tmpfs local off nbdkit}
TMPFS=${BENCH_TMPFS:-/dev/shm}
SIZE=1G

bench_need_fio_bench fio nbdkit jq ss

bench_workdir duet-mbench
NV=""
if grep -qw on-tmpfs <<<"$SERVERS"; then
	NV=$(mktemp -d "$TMPFS/duet-mbench.XXXXXX")
	BENCH_RM+=("$NV")
fi
cd "$W"

# node NAME NBD_PORT MODE NVRAM_DIR [ic lines...]: start a duetd; its log and
# image files in NVRAM_DIR ("" for the default places, next to the shelf).
node() {
	local name=$1 port=$2 mode=$3 nvdir=$4
	shift 4
	mkdir -p "$W/$name-shelf"
	local nv=() pi=()
	[ -z "$nvdir" ] || nv=("log = $nvdir/$name.nvram")
	[ -z "$nvdir" ] || [ "$mode" != on ] || pi=("partner_image = $nvdir/$name.partner")
	write_node_config "$W/$name.conf" "$name" "$W" "log_level = warn" \
		${BENCH_REALTIME:+"realtime = $BENCH_REALTIME"} \
		"[nbd]" "listen = 127.0.0.1:$port" "[mirror]" "mirror = $mode" ${nv[@]+"${nv[@]}"} \
		${BENCH_GROUP_WINDOW:+"group_window = $BENCH_GROUP_WINDOW"} \
		${pi[@]+"${pi[@]}"} "$@"
	"$DUETD" --config "$W/$name.conf" 2>"$W/$name.log" &
	PIDS+=($!)
	BENCH_PID_NAME[$!]=$name
	bench_wait 30 "$DUETCTL" --socket "$W/$name.sock" status || {
		echo "mirror.sh: duetd $name did not start; its log:" >&2
		cat "$W/$name.log" >&2
		exit 1
	}
}
ic_lines() { # ME PEER LOCAL_PORT PEER_PORT
	printf '%s\n' "[ic]" "partner = $2" "cluster_id = mbench" "secret_file = $W/cluster.key" \
		"link = ic0 127.0.0.1:$3 127.0.0.1:$4" ${BENCH_SPIN_US:+"spin_us = $BENCH_SPIN_US"}
}
mstate() { "$DUETCTL" --socket "$W/$1.sock" status --json | jq -r .mirror.state; }
in_sync() { [ "$(mstate "$1")" = in_sync ]; }

has() { grep -qw -- "$1" <<<"$SERVERS"; }
declare -A URI=()
# pair SERVER A B PORT NVRAM_DIR: a pair on loopback, A serving "bench".
pair() {
	local srv=$1 x=$2 y=$3 port=$4 nvdir=$5 lx ly
	mapfile -t lx < <(ic_lines "$x" "$y" $((port + 10)) $((port + 11)))
	mapfile -t ly < <(ic_lines "$y" "$x" $((port + 11)) $((port + 10)))
	node "$x" "$port" on "$nvdir" "${lx[@]}"
	node "$y" $((port + 1)) on "$nvdir" "${ly[@]}"
	bench_wait 30 in_sync "$x" || {
		echo "mirror.sh: $x's mirror is not in sync: $("$DUETCTL" --socket "$W/$x.sock" status --json | jq -c .mirror)" >&2
		exit 1
	}
	"$DUETCTL" --socket "$W/$x.sock" volume create bench $SIZE >/dev/null
	URI[$srv]=nbd://127.0.0.1:$port/bench
}
if has on || has on-tmpfs; then
	write_cluster_key "$W/cluster.key"
	chmod 600 "$W/cluster.key"
fi
has on && pair on a b $P ""
has on-tmpfs && pair on-tmpfs c d $((P + 5)) "$NV"
if has local; then
	node l $((P + 2)) local ""
	"$DUETCTL" --socket "$W/l.sock" volume create bench $SIZE >/dev/null
	URI[local]=nbd://127.0.0.1:$((P + 2))/bench
fi
if has off; then
	node o $((P + 3)) off ""
	"$DUETCTL" --socket "$W/o.sock" volume create bench $SIZE >/dev/null
	URI[off]=nbd://127.0.0.1:$((P + 3))/bench
fi
if has nbdkit; then
	bench_nbdkit $((P + 4)) $SIZE
	URI[nbdkit]=nbd://127.0.0.1:$((P + 4))/
fi
ORDER=()
for s in on on-tmpfs local off nbdkit; do has $s && ORDER+=("$s"); done

echo "pre-filling ${#ORDER[@]} volumes ($SIZE each)..." >&2
for s in "${ORDER[@]}"; do
	bench_prefill "$s" "${URI[$s]}" $SIZE
done

# Bursts shorter than the log: BURST_MIB 1 MiB writes (a quarter of the 64 MiB
# log), then BURST_GAP_US of nothing (past the next consistency point, so
# that every burst finds a free half).
BURST_MIB=16
BURST_GAP_US=1200000
JOBS=(
	"randwrite-4k-qd1|--rw=randwrite --bs=4k --iodepth=1"
	"randwrite-4k-qd32|--rw=randwrite --bs=4k --iodepth=32"
	"write-1m-qd8|--rw=write --bs=1m --iodepth=8"
	"burst-1m-qd8|--rw=write --bs=1m --iodepth=8 --thinktime=$BURST_GAP_US --thinktime_blocks=$BURST_MIB"
)

run_job() { # NAME ARGS SERVER OUT
	bench_fio "$1" "$2" "${URI[$3]}" "$4" "$3" --lat_percentiles=1
}

declare -A R=() # "job server" -> "iops mibs p50 p99"
declare -A C=() # "job server" -> "busy% cpu_us_per_op NAME=us... rest=us" (bench_cpu)
for j in "${JOBS[@]}"; do
	IFS='|' read -r name args <<<"$j"
	bench_want_job "$name" || continue
	for r in $(seq "$REPEAT"); do
		# Rotate who goes first, so that none always runs on a warmer machine.
		n=${#ORDER[@]}
		for k in $(seq 0 $((n - 1))); do
			s=${ORDER[$(((k + r - 1) % n))]}
			echo "$name on $s (${SECS}s, run $r of $REPEAT)..." >&2
			run_job "$name" "$args" "$s" "$W/$name@$s@$r.json"
		done
	done
	for s in "${ORDER[@]}"; do
		f=$(bench_median_run write "$W/$name@$s@"*.json)
		R["$name $s"]=$(bench_metric "$f" write)
		C["$name $s"]=$(bench_cpu "$f" write)
	done
done

# A burst's bandwidth: the queue is full for most of a burst, so by Little's
# law it moves iodepth x 1 MiB per mean write latency (fio's IOPS would
# count the gaps).
declare -A BURST=()
if bench_want_job burst-1m-qd8; then
	for s in "${ORDER[@]}"; do
		BURST[$s]=$(jq -r '.jobs[0].write.lat_ns.mean as $l |
			if $l > 0 then 8 * 1e9 / $l | round else "-" end' \
			"$(bench_median_run write "$W/burst-1m-qd8@$s@"*.json)")
	done
fi

# The disk itself: O_DIRECT 1 MiB writes to a file on the shelves' filesystem.
disk_mibs=""
if [ "${BENCH_DISK:-1}" = 1 ]; then
	echo "disk: O_DIRECT 1 MiB writes (${SECS}s)..." >&2
	fio --name=disk --ioengine=libaio --direct=1 --filename="$W/disk.img" --rw=write --bs=1m \
		--iodepth=8 --size=$SIZE --time_based --runtime="$SECS" --ramp_time=1 \
		--output-format=json --output="$W/disk.json" >/dev/null 2>"$W/disk.err" &&
		disk_mibs=$(jq -r '.jobs[0].write.bw_bytes / 1048576 | floor' "$W/disk.json") ||
		echo "mirror.sh: the O_DIRECT disk job failed: $(head -n 3 "$W/disk.err")" >&2
	rm -f "$W/disk.img"
fi

bench_servers_alive "a server"
mirror_json=""
for x in a c; do
	[ -S "$W/$x.sock" ] || continue
	j=$("$DUETCTL" --socket "$W/$x.sock" status --json | jq -c '.mirror |
		{state, records, xfers, xfer_bytes, checkpoints, half_switches, space_waits}')
	mirror_json+="${mirror_json:+; }$([ $x = a ] && echo on || echo on-tmpfs): \`$j\`"
	[ "$(jq -r .state <<<"$j")" = in_sync ] || echo "mirror.sh: warning: $x's mirror is not in sync at the end: $j" >&2
done

realtime_end=$(bench_realtime a="$W/a.sock" b="$W/b.sock" c="$W/c.sock" d="$W/d.sock" \
	local="$W/l.sock" off="$W/o.sock")

# The link's raw round trip, same machine, right after.
raw_fi="" raw_link=""
if [ -x "$FI_RAW" ]; then
	raw_fi=$("$FI_RAW" --mode fi_lat_wait --port $((P + 30)) --iters 20000 2>/dev/null | grep '^metric=' || true)
	raw_link=$("$FI_RAW" --mode link_lat --port $((P + 32)) --iters 20000 2>/dev/null | grep '^metric=' || true)
fi
kv() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

fs=$(df -T "$W" | awk 'NR==2 {print $2}')
tmpfs_fs=""
[ -z "$NV" ] || tmpfs_fs=$(df -T "$NV" | awk 'NR==2 {print $2}')
field() { # JOB SERVER N: the Nth metric (1 iops, 2 MiB/s, 3 p50, 4 p99)
	local v
	v=${R["$1 $2"]:-}
	[ -n "$v" ] || { echo "-"; return; }
	awk -v n="$3" '{ print $n }' <<<"$v"
}
RATIOS=()
for on in on on-tmpfs; do
	has $on || continue
	for o in off local nbdkit; do has $o && RATIOS+=("$on/$o"); done
done
jobs_run() {
	local j
	for j in "${JOBS[@]}"; do
		[ -z "${R["${j%%|*} ${ORDER[0]}"]:-}" ] || echo "${j%%|*}"
	done
}
table() {
	local hdr="| job |" sep="|---|" s name r
	for s in "${ORDER[@]}"; do hdr+=" $s IOPS |"; sep+="---:|"; done
	for r in "${RATIOS[@]}"; do hdr+=" $r |"; sep+="---:|"; done
	echo "$hdr"
	echo "$sep"
	for name in $(jobs_run); do
		[[ $name != burst-* ]] || continue # IOPS over the gaps: burst_line
		local row="| $name |"
		for s in "${ORDER[@]}"; do row+=" $(field "$name" "$s" 1) |"; done
		for r in "${RATIOS[@]}"; do
			row+=" **$(bench_ratio "$(field "$name" "${r%/*}" 1)" "$(field "$name" "${r#*/}" 1)")** |"
		done
		echo "$row"
	done
}
# CPU per write of the median runs, and what it bounds: where the machine is
# near 100% busy, on/off can be no better than off's CPU per write over on's.
cpu_table() {
	[ "${BENCH_CPU:-1}" = 1 ] || return 0
	local hdr="| job |" sep="|---|" s name r v
	for s in "${ORDER[@]}"; do hdr+=" $s busy % / CPU µs |"; sep+="---:|"; done
	for r in "${RATIOS[@]}"; do hdr+=" $r CPU bound |"; sep+="---:|"; done
	echo "$hdr split µs (each server; rest: fio, softirqs, kernel threads; cs: context switches) |"
	echo "$sep---|"
	for name in $(jobs_run); do
		local row="| $name |" split=""
		for s in "${ORDER[@]}"; do
			v=${C["$name $s"]:-- -}
			row+=" $(awk '{ print $1 " / " $2 }' <<<"$v") |"
			split+="$s: $(cut -d' ' -f3- <<<"$v"); "
		done
		for r in "${RATIOS[@]}"; do
			row+=" $(bench_ratio "$(cut -d' ' -f2 <<<"${C["$name ${r#*/}"]:-- -}")" "$(cut -d' ' -f2 <<<"${C["$name ${r%/*}"]:-- -}")") |"
		done
		echo "$row ${split%; } |"
	done
}
lat_table() {
	local hdr="| job |" sep="|---|" s name
	for s in "${ORDER[@]}"; do hdr+=" $s p50 / p99 µs |"; sep+="---:|"; done
	echo "$hdr"
	echo "$sep"
	for name in $(jobs_run); do
		local row="| $name |"
		for s in "${ORDER[@]}"; do row+=" $(field "$name" "$s" 3) / $(field "$name" "$s" 4) |"; done
		echo "$row"
	done
}
targets() {
	local on out=()
	for on in on on-tmpfs; do
		has $on || continue
		if has off; then
			out+=("$on/off at iodepth 32: $(bench_ratio "$(field randwrite-4k-qd32 $on 1)" "$(field randwrite-4k-qd32 off 1)") (target >= 0.8)")
			out+=("$on/off at iodepth 1: $(bench_ratio "$(field randwrite-4k-qd1 $on 1)" "$(field randwrite-4k-qd1 off 1)") (target >= 0.7)")
		fi
		has nbdkit && out+=("$on/nbdkit at iodepth 32: $(bench_ratio "$(field randwrite-4k-qd32 $on 1)" "$(field randwrite-4k-qd32 nbdkit 1)") (target >= 1.0)")
	done
	[ ${#out[@]} -eq 0 ] || printf -- '- %s\n' "${out[@]}"
	echo "- [node] realtime at the end: $realtime_end"
}
disk_line() {
	[ -n "$disk_mibs" ] || return 0
	local on
	echo "- the disk, O_DIRECT 1 MiB sequential writes at iodepth 8 to a file on the same filesystem (fio libaio): $disk_mibs MiB/s"
	for on in on on-tmpfs; do
		has $on || continue
		echo "- mirror $on, 1 MiB writes at iodepth 8: $(field write-1m-qd8 $on 2) MiB/s, $(bench_ratio "$(field write-1m-qd8 $on 2)" "$disk_mibs") of the disk's O_DIRECT bandwidth (target >= 0.9)"
	done
}
burst_line() {
	[ ${#BURST[@]} -gt 0 ] || return 0
	local s on line="- bursts of $BURST_MIB MiB (1 MiB writes at iodepth 8, $((BURST_GAP_US / 1000)) ms apart), MiB/s within a burst (8 MiB in flight / mean latency):"
	for s in "${ORDER[@]}"; do line+=" $s ${BURST[$s]},"; done
	echo "${line%,}"
	for on in on on-tmpfs; do
		has $on && has off || continue
		echo "- mirror $on bursts against off: $(bench_ratio "${BURST[$on]}" "${BURST[off]}") (target >= 0.8)"
	done
}
syscalls_table() {
	[ "${BENCH_SYSCALLS:-1}" = 1 ] && command -v strace >/dev/null || return 0
	echo "System calls per write (load-independent; strace -f -c over a fixed number of"
	echo "writes, bench/syscalls.sh):"
	echo
	SYS_CASES="mirror-on mirror-off" SYS_PORT_BASE=$((P + 40)) "$ROOT/bench/syscalls.sh" "$build" |
		grep '^|' || echo "(bench/syscalls.sh failed)"
}
latency() {
	[ -n "$raw_fi" ] || return 0
	local on
	echo "- raw link, 4 KiB delivery-complete fi_write, both sides sleeping on the CQ (fi_raw fi_lat_wait): p50 $(kv p50_us "$raw_fi") µs, p99 $(kv p99_us "$raw_fi") µs"
	[ -z "$raw_link" ] || echo "- the same through src/fabric in a duet loop (fi_raw link_lat): p50 $(kv p50_us "$raw_link") µs, p99 $(kv p99_us "$raw_link") µs"
	for on in on on-tmpfs; do
		has $on || continue
		echo "- mirror $on, 4 KiB random write at iodepth 1 (a whole NBD round trip): p50 $(field randwrite-4k-qd1 $on 3) µs, p99 $(field randwrite-4k-qd1 $on 4) µs"
	done
	if has off; then
		echo "- mirror off, same job: p50 $(field randwrite-4k-qd1 off 3) µs, p99 $(field randwrite-4k-qd1 off 4) µs"
		has on && echo "- the mirror adds $(awk -v a="$(field randwrite-4k-qd1 on 3)" -v b="$(field randwrite-4k-qd1 off 3)" 'BEGIN { print a - b }') µs to the p50; the raw link's round trip alone is $(kv p50_us "$raw_fi") µs"
	fi
}
section() {
	echo "## Mirror"
	echo
	echo "What the NVRAM log and its mirror in the partner (issue 4, [MIRROR.md](MIRROR.md)) cost a"
	echo "writer. fio $(fio --version | sed 's/^fio-//') with the nbd engine, one connection per job, in the same run against:"
	echo "**on**, duetd a of a pair on loopback (a and b, one interconnect link, tcp;ofi_rxm),"
	echo "\`[mirror] mirror = on\`, in sync: every write is appended to a's log and RDMA-written"
	echo "(delivery complete) into b's image before the reply; the log and b's image are files at"
	echo "their default places, next to the shelves ($fs); **on-tmpfs**, the same with both files on"
	echo "${tmpfs_fs:-tmpfs} ($TMPFS), as MIRROR.md recommends for \`durability = memory\` (the kernel never"
	echo "writes the log back); **local**, a single duetd with \`mirror = local\` (the log, no"
	echo "partner); **off**, a single duetd with \`mirror = off\` (no log: writes go straight to the"
	echo "volume file); **nbdkit** $(nbdkit --version | awk '{print $2}') with its file plugin. Durability is the"
	echo "default \`memory\`, consistency points every 1000 ms, 64 MiB logs. Each serves its own 1 GiB"
	echo "volume on the same $fs filesystem, written fully once with 1 MiB writes first. Each job"
	echo "runs ${SECS} s after 1 s of ramp, time-based; $REPEAT run(s) per server, rotating which server"
	echo "goes first; the median run by IOPS is shown. Latency is fio's total latency"
	echo "(\`--lat_percentiles=1\`). fio, every node and nbdkit share the machine's CPUs, and the"
	echo "interconnect is TCP loopback: the mirror's bytes are copied by the kernel on both sides,"
	echo "which an RDMA NIC would do without the CPUs."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(bench_machine)"
	echo "- duet: $(bench_commit "$ROOT" "$build")"
	echo "- load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-minute load average when the run ended)"
	echo "- command: \`BENCH_SECONDS=$SECS BENCH_REPEAT=$REPEAT bench/mirror.sh --write-doc\`"
	[ -z "$mirror_json" ] || echo "- the mirrors at the end: $mirror_json"
	echo
	echo "IOPS, and ratios of IOPS:"
	echo
	table
	echo
	echo "CPU per write (per MiB for the 1 MiB jobs) of the whole machine over each median run's"
	echo "measured window (/proc/stat), split by server (/proc/PID/stat, all threads):"
	echo
	cpu_table
	echo
	echo "Latency, p50 / p99 in µs:"
	echo
	lat_table
	echo
	echo "Targets (issue 4), this run:"
	echo
	targets
	echo
	echo "Latency beside the link:"
	echo
	latency
	echo
	echo "The disk beside the mirror:"
	echo
	disk_line
	burst_line
	echo
	echo "$SYSCALLS_OUT"
	echo
	echo "What limits the mirror here (profiled by hand, strace and perf, on this machine):"
	echo
	echo "- 1 MiB writes: a half of the log (32 MiB) is reused only after a consistency point has"
	echo "  made its writes durable (fdatasync of the volume files), so a sustained stream with the"
	echo "  log runs at the speed the disk absorbs fdatasyncs (\`space_waits\` above counts writes"
	echo "  that waited for a half), while \`off\` and nbdkit never sync and run at page-cache speed."
	echo "  On top of that, with the mirror on, a's reactor copies each MiB into the log, CRCs it and"
	echo "  hands it to the TCP loopback (a kernel copy on each side): perf showed a's reactor near"
	echo "  one full CPU."
	echo "- 4 KiB at iodepth 1: the system calls per write are in the table above (before issue 11"
	echo "  about 26 on a net of background, 16 of them \`epoll_wait(..., 0)\` inside libfabric's"
	echo "  progress; after it about 18, 6 of them: no loop turn and no CQ read after a post the"
	echo "  provider took, no second CQ read after a short batch). What remains on a per write:"
	echo "  the NBD readv and reply, the RDMA write's sendmsg, io_uring_enter, the completion's"
	echo "  recvfrom, libfabric's own wait-fd signalling (a write and a read on each of two"
	echo "  descriptors per completion) and four epoll_wait(0) of its progress, and 4-5 loop turns."
	echo "  The copy and CRC of a 4 KiB record cost under 1 µs."
	echo
}

SYSCALLS_OUT=$(syscalls_table)
echo
table
echo
cpu_table
echo
lat_table
echo
targets
latency
disk_line
burst_line
echo
echo "$SYSCALLS_OUT"
if [ $write_doc = 1 ]; then
	doc=$ROOT/docs/BENCHMARKS.md
	section >"$W/section.md"
	bench_write_section "$doc" Mirror "$W/section.md"
	echo "wrote the Mirror section of $doc" >&2
fi
