#!/usr/bin/env bash
# System calls per request (issue 11): a load-independent cost of the data
# path, valid on a busy machine too. For each case a fixed number of 4 KiB
# requests at queue depth 1 (fio, nbd engine) runs while `strace -f -c`
# counts every system call of the node(s) involved; the counts are divided
# by the number of requests.
#   mirror-on    4 KiB random writes to node a of a pair (tools/duet-pair,
#                one link, mirror on, in sync): a's and b's calls per write
#   mirror-off   the same to a single duetd with [mirror] mirror = off
#   proxy-read   4 KiB random reads of vol-a through b's proxy port (b
#                forwards to a): b's and a's calls per read
#   proxy-write  4 KiB random writes the same way (mirrored on a)
# The nodes' background (probes every 20 ms, heartbeats, timers) is
# measured idle for 3 s first and subtracted in the first column ("net"):
# under strace and on a loaded host requests are slow, and the background
# per request grows with the time they take. Columns then: all calls per
# request, of them epoll_wait (libfabric's progress
# inside fi_cq_read / fi_trywait, with a zero timeout), epoll_pwait2 (the
# duet reactor's own wait: one per loop turn), and the three most frequent
# others.
#
#   bench/syscalls.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# The pair's failover monitor runs with generous deadlines (3 s): a node
# stopped by strace at every call must not be taken over mid-count.
#
# Env: SYS_N requests per case (default 4000), SYS_PORT_BASE (44700; uses
#      base .. base+3, base+100, +101, base+10), SYS_CASES (a subset of
#      "mirror-on mirror-off proxy-read proxy-write"), SYS_QD (queue depth,
#      default 1: at higher depths requests share loop turns), KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
N=${SYS_N:-4000}
P=${SYS_PORT_BASE:-44700}
CASES=${SYS_CASES:-mirror-on mirror-off proxy-read proxy-write}
PAIR=$ROOT/tools/duet-pair
DUETD=$BUILD/src/node/duetd
DUETCTL=$BUILD/tools/duetctl
export DUET_BUILD=$BUILD

for t in fio jq strace; do
	command -v "$t" >/dev/null || { echo "syscalls.sh: needs $t" >&2; exit 2; }
done
[ -x "$DUETD" ] || { echo "syscalls.sh: no $DUETD" >&2; exit 2; }

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/duet-sys.XXXXXX")
OFF_PID=""
cleanup() {
	set +e
	[ -z "$OFF_PID" ] || { kill -s TERM "$OFF_PID"; wait "$OFF_PID"; } 2>/dev/null
	"$PAIR" down "$W/pair" >/dev/null 2>&1
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# count OUT_PREFIX FIO_ARGS... -- PID...: strace each PID (all its threads)
# while fio runs N requests; strace's summaries in OUT_PREFIX.PID.
count() {
	local out=$1 fargs=() pids=() sp=() p
	shift
	while [ "$1" != -- ]; do fargs+=("$1"); shift; done
	shift
	pids=("$@")
	# The nodes' background (probes, heartbeats, timers) over 3 s idle.
	for p in "${pids[@]}"; do
		strace -f -c -o "$out.idle.$p" -p "$p" 2>/dev/null &
		sp+=($!)
	done
	sleep 3
	for p in "${sp[@]}"; do kill -s INT "$p" 2>/dev/null || true; done
	for p in "${sp[@]}"; do wait "$p" 2>/dev/null || true; done
	sp=()
	for p in "${pids[@]}"; do
		strace -f -c -o "$out.$p" -p "$p" 2>/dev/null &
		sp+=($!)
	done
	sleep 1 # strace attached to every thread
	local t0 t1
	t0=$(date +%s%N)
	fio --name=sys --ioengine=nbd "${fargs[@]}" --bs=4k --iodepth="${SYS_QD:-1}" --number_ios="$N" \
		--size=256m --norandommap --randrepeat=0 --output-format=json \
		--output="$out.fio.json" >/dev/null 2>"$out.fio.err" ||
		{ cat "$out.fio.err" >&2; echo "syscalls.sh: fio failed" >&2; exit 1; }
	t1=$(date +%s%N)
	for p in "${sp[@]}"; do kill -s INT "$p" 2>/dev/null || true; done
	for p in "${sp[@]}"; do wait "$p" 2>/dev/null || true; done
	# strace ran 1 s before fio too: the background of that second and of
	# fio's run is what the idle rate predicts.
	echo $(((t1 - t0) / 1000000 + 1000)) >"$out.ms"
}
# per FILE: "net total | total | epoll_wait | epoll_pwait2 | top3" per request;
# net subtracts the background (FILE.idle rate over the traced time).
per() {
	local dir base idle ms bg
	dir=$(dirname "$1") base=$(basename "$1")
	idle=$dir/${base%%.*}.idle.${base##*.}
	ms=$(cat "$dir/${base%%.*}.ms")
	bg=$(awk '$NF == "total" { print $(NF-2) }' "$idle")
	printf '%s | ' "$(awk -v n="$N" -v bg="${bg:-0}" -v ms="$ms" '$NF == "total" {
		printf "%.1f", ($(NF-2) - bg / 3 * ms / 1000) / n }' "$1")"
	per_gross "$1"
}
per_gross() {
	awk -v n="$N" '
		$NF == "total" { tot = $(NF-2) }
		$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { c[$NF] = $4 }
		END {
			top = ""
			for (k = 0; k < 3; k++) {
				best = ""; bv = -1
				for (s in c) if (s != "epoll_wait" && s != "epoll_pwait2" && c[s] > bv && !(s in used)) { best = s; bv = c[s] }
				if (best != "") { used[best] = 1; top = top sprintf("%s %.1f, ", best, bv / n) }
			}
			sub(/, $/, "", top)
			printf "%.1f | %.1f | %.1f | %s", tot / n, c["epoll_wait"] / n, c["epoll_pwait2"] / n, top
		}' "$1"
}

echo "## system calls per request (4 KiB, queue depth ${SYS_QD:-1}, $N requests per case; strace -f -c)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), build $BUILD, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case | node | calls / request, net of background | calls / request | epoll_wait (libfabric) | epoll_pwait2 (loop turns) | most frequent others |"
echo "|---|---|---:|---:|---:|---:|---|"

want() { grep -qw -- "$1" <<<"$CASES"; }
if want mirror-on || want proxy-read || want proxy-write; then
	# Generous monitor deadlines: strace stops the nodes at every call, and
	# a node stalled past the defaults would be taken over mid-count.
	"$PAIR" up "$W/pair" --base-port "$P" --links 1 --size 256M --log-level warn \
		--monitor deadline_ms=3000 --monitor mailbox_deadline_ms=2000 \
		--monitor lease_ms=2000 --monitor watchdog_ms=10000 >/dev/null
	ctl() { "$DUETCTL" --socket "$W/pair/$1.sock" "${@:2}"; }
	for i in $(seq 1 300); do
		[ "$(ctl a status --json | jq -r .mirror.state)" = in_sync ] && break
		sleep 0.1
	done
	pa=$(cat "$W/pair/a.pid") pb=$(cat "$W/pair/b.pid")
	fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=write --bs=1m \
		--size=256m --iodepth=4 >/dev/null 2>&1
	if want mirror-on; then
		count "$W/on" --uri="nbd://127.0.0.1:$P/vol-a" --rw=randwrite -- "$pa" "$pb"
		echo "| mirror-on write | a (owner) | $(per "$W/on.$pa") |"
		echo "| mirror-on write | b (partner) | $(per "$W/on.$pb") |"
	fi
	if want proxy-read; then
		count "$W/pr" --uri="nbd://127.0.0.1:$((P + 3))/vol-a" --rw=randread -- "$pb" "$pa"
		echo "| proxy read | b (proxy) | $(per "$W/pr.$pb") |"
		echo "| proxy read | a (owner) | $(per "$W/pr.$pa") |"
	fi
	if want proxy-write; then
		count "$W/pw" --uri="nbd://127.0.0.1:$((P + 3))/vol-a" --rw=randwrite -- "$pb" "$pa"
		echo "| proxy write | b (proxy) | $(per "$W/pw.$pb") |"
		echo "| proxy write | a (owner, mirrored to b) | $(per "$W/pw.$pa") |"
	fi
	"$PAIR" down "$W/pair" >/dev/null
fi
if want mirror-off; then
	mkdir -p "$W/off-shelf"
	cat >"$W/off.conf" <<EOF
[node]
id = off
shelf = $W/off-shelf
control = $W/off.sock
log_level = warn
[nbd]
listen = 127.0.0.1:$((P + 10))
[mirror]
mirror = off
EOF
	"$DUETD" --config "$W/off.conf" 2>"$W/off.log" &
	OFF_PID=$!
	for i in $(seq 1 300); do
		"$DUETCTL" --socket "$W/off.sock" status >/dev/null 2>&1 && break
		sleep 0.1
	done
	"$DUETCTL" --socket "$W/off.sock" volume create vol 256M >/dev/null
	fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$((P + 10))/vol" --rw=write --bs=1m \
		--size=256m --iodepth=4 >/dev/null 2>&1
	count "$W/off" --uri="nbd://127.0.0.1:$((P + 10))/vol" --rw=randwrite -- "$OFF_PID"
	echo "| mirror-off write | single node | $(per "$W/off.$OFF_PID") |"
fi
