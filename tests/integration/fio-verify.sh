#!/usr/bin/env bash
# fio with the nbd engine and crc32c verification against duetd, on both I/O
# engines (io_uring and the worker pool): random writes at iodepth 32, many
# jobs on their own regions, mixed block sizes up to 32 MiB.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need fio
need_fio_nbd

P=$PORT_BASE
MB=64
[ "$QUICK" = 1 ] && MB=32

step "start (io_uring and worker pool)"
start_node a "$P" "[store]" "io_engine = uring"
start_node b $((P + 1)) "[store]" "io_engine = threads"
ctl a volume create vol 256M >/dev/null
ctl b volume create vol 256M >/dev/null

run_fio() { # run_fio NODE NAME FIO-ARGS...
	local node=$1 name=$2 port=${NODE_PORT[$1]}
	shift 2
	local out=$T/fio-$node-$name.json
	if ! (cd "$T" && fio --output-format=json --output="$out" --name="$name" --ioengine=nbd --verify_state_save=0 \
		--uri="$(nbd_uri "$port" vol)" --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--exitall_on_error=1 "$@") >"$T/fio-$node-$name.log" 2>&1; then
		cat "$T/fio-$node-$name.log" >&2
		fail "fio $name on node $node failed"
	fi
	local errs
	errs=$(jq '[.jobs[].error] | add' "$out")
	[ "$errs" = 0 ] || fail "fio $name on node $node: error $errs"
	jq -e '[.jobs[].write.io_bytes] | add > 0' "$out" >/dev/null || fail "fio $name wrote nothing"
	jq -e '[.jobs[].read.io_bytes] | add > 0' "$out" >/dev/null || fail "fio $name verified nothing"
}

for n in a b; do
	step "node $n: 4 KiB random writes, iodepth 32, verify"
	run_fio $n randwrite --rw=randwrite --bs=4k --iodepth=32 --size=${MB}M

	step "node $n: 4 jobs on their own regions, mixed sizes, iodepth 16"
	run_fio $n jobs --rw=randwrite --bsrange=4k-256k --bs_unaligned=0 --iodepth=16 \
		--numjobs=4 --size=$((MB / 4))M --offset_increment=$((MB / 4))M --group_reporting=0

	step "node $n: large blocks (1 MiB - 32 MiB), iodepth 4"
	run_fio $n large --rw=write --bssplit=1m/50:8m/30:32m/20 --iodepth=4 --size=${MB}M --offset=128M

	step "node $n: random read/write mix with backlogged verify"
	run_fio $n mix --rw=randrw --bs=16k --iodepth=32 --size=$((MB / 2))M --offset=64M \
		--verify_backlog=256
done

stop_node a
stop_node b
