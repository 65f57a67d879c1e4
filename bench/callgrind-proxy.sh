#!/usr/bin/env bash
# User-space instructions per proxied 4 KiB request (issue 11), on the
# forwarding node b or the owner a (CG_NODE), load-independent: a
# tools/duet-pair pair (one link, mirror on) whose node CG_NODE runs under
# valgrind --tool=callgrind; callgrind's counters are zeroed, SYS_N
# (default 1000) 4 KiB random requests (CG_RW: randread or randwrite) at
# queue depth CG_QD (default 1) go to vol-a through b's proxy port (fio, nbd engine), and
# the counters are dumped. The nodes' background (probes, heartbeats) is
# measured idle for 3 s first and subtracted. Counts every thread of the
# node (duet, libfabric, libc, OpenSSL), not the kernel. The pair runs with
# long CCM and monitor deadlines: a node under valgrind is ~50x slower.
# The heaviest functions of the run: callgrind_annotate on the kept file
# (CG_KEEP=DIR copies it there).
#
#   bench/callgrind-proxy.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SYS_N (1000), SYS_PORT_BASE (44880; uses base .. base+3, +100, +101),
#      CG_NODE (b), CG_RW (randread), CG_QD (1), CG_KEEP.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
real=${1:-build}
case $real in /*) ;; *) real=$ROOT/$real ;; esac
N=${SYS_N:-1000}
P=${SYS_PORT_BASE:-44880}
NODE=${CG_NODE:-b}
RW=${CG_RW:-randread}
QD=${CG_QD:-1}
case $NODE in a | b) ;; *) echo "callgrind-proxy.sh: CG_NODE is a or b" >&2; exit 2 ;; esac
for t in valgrind callgrind_control fio jq; do
	command -v "$t" >/dev/null || { echo "callgrind-proxy.sh: needs $t" >&2; exit 2; }
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
if grep -q '^id = $NODE\$' "\$2"; then
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
for i in $(seq 600); do
	[ "$("$real/tools/duetctl" --socket "$D/b.sock" status --json | jq -r .proxy.state)" = up ] && break
	sleep 0.1
done
fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=write --bs=1m --size=64m \
	--iodepth=4 >/dev/null 2>&1
pa=$(cat "$D/$NODE.pid")
fiow() {
	fio --name=w --ioengine=nbd --uri="nbd://127.0.0.1:$((P + 3))/vol-a" --rw="$RW" --bs=4k --size=64m \
		--number_ios="$1" --iodepth="$QD" --norandommap >/dev/null 2>&1
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
awk -v rw="$RW" -v qd="$QD" -v node="$NODE" -v i="$idle" -v l="$load" -v ms=$(((t1 - t0) / 1000000)) -v n="$N" 'BEGIN {
	net = (l - i / 3 * ms / 1000) / n
	printf "instructions per proxied 4 KiB %s at qd%d on %s (callgrind, %d requests, %d ms): %.0f net of background (%.0f gross)\n", rw, qd, node, n, ms, net, l / n }'
if [ -n "${CG_KEEP:-}" ]; then cp "$W"/cg.out.*.2 "$CG_KEEP/"; fi
