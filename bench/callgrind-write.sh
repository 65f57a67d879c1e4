#!/usr/bin/env bash
# User-space instructions per mirrored 4 KiB write on the owner (issue 11),
# load-independent: a tools/duet-pair pair (one link, mirror on) whose node a
# runs under valgrind --tool=callgrind; callgrind's counters are zeroed,
# SYS_N (default 1000) 4 KiB random writes at queue depth 1 go to a (fio,
# nbd engine), and the counters are dumped. The nodes' background (probes,
# heartbeats) is measured idle for 3 s first and subtracted. Counts every
# thread of a (duet, libfabric, libc), not the kernel. The pair runs with
# long CCM and monitor deadlines: a node under valgrind is ~50x slower.
#
#   bench/callgrind-write.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SYS_N (1000), SYS_PORT_BASE (44860; uses base .. base+3, +100, +101).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
real=${1:-build}
case $real in /*) ;; *) real=$ROOT/$real ;; esac
N=${SYS_N:-1000}
P=${SYS_PORT_BASE:-44860}
for t in valgrind callgrind_control fio jq; do
	command -v "$t" >/dev/null || { echo "callgrind-write.sh: needs $t" >&2; exit 2; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-cg.XXXXXX")
fake=$W/build D=$W/pair
PAIR=$ROOT/tools/duet-pair
cleanup() { DUET_BUILD=$fake "$PAIR" down "$D" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
# A build directory whose duetd runs node a under callgrind (both with long
# deadlines appended to their configs).
mkdir -p "$fake/src/node" "$fake/tools"
ln -s "$real/tools/duetctl" "$fake/tools/duetctl"
cat >"$fake/src/node/duetd" <<EOW
#!/usr/bin/env bash
printf '[ic]\nlink_deadline_ms = 2000\nsession_deadline_ms = 20000\n' >>"\$2"
if grep -q '^id = a\$' "\$2"; then
	exec valgrind --tool=callgrind --callgrind-out-file=$W/cg.out.%p "$real/src/node/duetd" "\$@"
fi
exec "$real/src/node/duetd" "\$@"
EOW
chmod +x "$fake/src/node/duetd"
export DUET_BUILD=$fake
# realtime off: a node under valgrind is CPU-bound, at SCHED_RR it would
# starve the host.
"$PAIR" up "$D" --base-port "$P" --links 1 --size 256M --log-level warn --realtime off \
	--monitor deadline_ms=10000 --monitor mailbox_deadline_ms=5000 --monitor lease_ms=5000 \
	--monitor watchdog_ms=60000 >/dev/null
for i in $(seq 600); do
	[ "$("$real/tools/duetctl" --socket "$D/a.sock" status --json | jq -r .mirror.state)" = in_sync ] && break
	sleep 0.1
done
pa=$(cat "$D/a.pid")
fiow() {
	fio --name=w --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=randwrite --bs=4k --size=256m \
		--number_ios="$1" --iodepth=1 --norandommap >/dev/null 2>&1
}
callgrind_control -z "$pa" >/dev/null 2>&1
sleep 3
callgrind_control -d idle "$pa" >/dev/null 2>&1
fiow 50 # warm
callgrind_control -z "$pa" >/dev/null 2>&1
t0=$(date +%s%N)
fiow "$N"
t1=$(date +%s%N)
callgrind_control -d load "$pa" >/dev/null 2>&1
sleep 1
idle=$(grep -h '^summary:' "$W"/cg.out.*.1 | awk '{print $2}')
load=$(grep -h '^summary:' "$W"/cg.out.*.2 | awk '{print $2}')
awk -v i="$idle" -v l="$load" -v ms=$(((t1 - t0) / 1000000)) -v n="$N" 'BEGIN {
	net = (l - i / 3 * ms / 1000) / n
	printf "instructions per mirrored 4 KiB write on a (callgrind, %d writes, %d ms): %.0f net of background (%.0f gross)\n", n, ms, net, l / n }'
