#!/usr/bin/env bash
# The proxy port while the partner goes away, with fio (crc32c verify)
# writing through node a's proxy port to node b's volume:
#  1. interconnect resets (duetctl ic reset) under I/O: requests in flight are
#     sent again and executed once; no client error;
#  2. b killed (SIGKILL) and restarted under I/O: requests wait and complete;
#  3. b down past a short deadline ([proxy] timeout_ms): requests fail with
#     EIO after it, one log line, a stays up;
# and no block is corrupted: everything verifies on both ports afterwards.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need fio jq qemu-io
need_fio_nbd

proxy_pair_setup
status() { ctl "$1" status --json; }
counter() { status a | jq "$1"; }
PROXY_URI=$(nbd_uri $A_PROXY vol-b)
DIRECT_URI=$(nbd_uri $B_NBD vol-b)

# fio_job NAME OFFSET_MB SIZE_MB [args]: random writes with crc32c verify
# through the proxy, in the background.
fio_job() {
	local name=$1 off=$2 size=$3
	shift 3
	fio --output-format=json --output="$T/fio-$name.json" --name=v --ioengine=nbd \
		--uri="$PROXY_URI" --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--rw=randwrite --bs=64k --iodepth=16 --size=${size}M --offset=${off}M \
		"$@" >"$T/fio-$name.log" 2>&1 &
	FIO=$!
	track_pid $FIO
}
fio_wait() { # fio_wait NAME: it ended well
	local rc=0
	wait "$FIO" || rc=$?
	if [ $rc -ne 0 ] || [ "$(jq '[.jobs[].error] | add' "$T/fio-$1.json" 2>/dev/null)" != 0 ]; then
		cat "$T/fio-$1.log" >&2
		fail "fio $1 failed (status $rc)"
	fi
}
verify_on() { # verify_on URI NAME OFFSET_MB SIZE_MB: the blocks fio NAME wrote are intact
	fio --output-format=json --output="$T/check-$2.json" --name=v --ioengine=nbd --uri="$1" \
		--verify=crc32c --verify_fatal=1 --verify_only --rw=randwrite --bs=64k \
		--iodepth=16 --size=${4}M --offset=${3}M >"$T/check-$2.log" 2>&1 ||
		{ cat "$T/check-$2.log" >&2; fail "blocks of $2 corrupted (on $1)"; }
}

step "start a pair"
mapfile -t la < <(proxy_pair_lines a b $A_PROXY $((P + 4)) $((P + 5)) 30000)
mapfile -t lb < <(proxy_pair_lines b a $B_PROXY $((P + 5)) $((P + 4)) 30000)
start_node a $A_NBD "${la[@]}"
start_node b $B_NBD "${lb[@]}"
ctl b volume create vol-b 512M >/dev/null
wait_for proxy_serves a vol-b

step "1. interconnect resets under I/O: requests sent again, executed once"
r0=$(counter .proxy.retries)
# As fast as it goes: requests are in flight at every reset.
fio_job reset 0 $((MB * 4))
resets=0
while kill -0 "$FIO" 2>/dev/null && [ $resets -lt 20 ]; do
	wait_for proxy_up a
	sleep 0.2
	kill -0 "$FIO" 2>/dev/null || break
	ctl a ic reset >/dev/null
	resets=$((resets + 1))
	[ "$(counter .proxy.retries)" -gt "$r0" ] && [ $resets -ge 3 ] && break
done
fio_wait reset
[ "$(counter .proxy.retries)" -gt "$r0" ] || echo "note: no request was in flight at a reset" >&2
echo "resets $resets, retries $(counter .proxy.retries), duplicates at b: $(status b | jq .proxy.served.duplicates)" >&2
verify_on "$DIRECT_URI" reset 0 $((MB * 4))

step "2. b killed and restarted under I/O: requests wait and complete"
# Paced, so that it goes on across the kill and the restart.
fio_job kill $((MB * 4)) $((MB / 2)) --rate=$((MB / 4))m
sleep 0.5
stop_node b KILL
start_node b $B_NBD
fio_wait kill
verify_on "$DIRECT_URI" kill $((MB * 4)) $((MB / 2))
verify_on "$PROXY_URI" kill $((MB * 4)) $((MB / 2))

step "3. b down past a short deadline: EIO after it, a stays up"
stop_node a TERM
mapfile -t la < <(proxy_pair_lines a b $A_PROXY $((P + 4)) $((P + 5)) 1000)
start_node a $A_NBD "${la[@]}"
wait_for proxy_serves a vol-b
log_mark a
stop_node b KILL
t0=$(date +%s%N)
qemu-io -f raw -c 'write -P 0x5a 400M 64k' "$PROXY_URI" >"$T/qio.log" 2>&1 &&
	fail "a write through the proxy succeeded with the partner down"
qemu-io -f raw -r -c 'read 0 64k' "$PROXY_URI" >>"$T/qio.log" 2>&1 &&
	fail "a read through the proxy succeeded with the partner down"
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -ge 1000 ] || fail "requests failed after $ms ms, before the 1000 ms deadline"
grep -q "Input/output error" "$T/qio.log" || { cat "$T/qio.log" >&2; fail "no EIO"; }
status a >/dev/null || fail "a does not answer"
[ "$(counter .proxy.timeouts)" -ge 2 ] || fail "timeouts not counted"
# One line for each expiry, at most one a second.
n=$(log_since a | grep -c "failed with EIO after 1000 ms" || true)
[ "$n" -ge 1 ] && [ "$n" -le $((ms / 1000 + 1)) ] || fail "$n log lines for the expiries in $ms ms"

step "b back: the proxy works again and nothing was corrupted"
start_node b $B_NBD
wait_for proxy_up a
qemu-io -f raw -c 'write -P 0x5b 400M 64k' "$PROXY_URI" >/dev/null || fail "write after the return"
qemu-io -f raw -r -c 'read -P 0x5b 400M 64k' "$DIRECT_URI" >/dev/null || fail "read back on b"
verify_on "$PROXY_URI" reset 0 $((MB * 4))
verify_on "$DIRECT_URI" kill $((MB * 4)) $((MB / 2))
status a | jq -e '.proxy.bad_replies == 0' >/dev/null || fail "a refused replies"
status b | jq -e '.proxy.served.bad_requests == 0' >/dev/null || fail "b refused requests"

stop_node a
stop_node b
