#!/usr/bin/env bash
# Memory (issue 12, finding 4; docs/SECURITY.md "Resource limits"): clients
# that issue large READs and never read the replies hold at most [nbd]
# buffer_limit of payload across all their connections (not conn_buffer +
# max_payload each): the node's RSS stays under a bound derived from the
# limit. A well-behaved client is served once they are gone (while they
# hold the whole budget, other connections wait: see SECURITY.md).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need python3 qemu-io jq

P=$PORT_BASE
LIMIT_MB=64
CONNS=8 # unbounded, each would hold conn_buffer (64M) + max_payload (32M)

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

step "start a with buffer_limit = ${LIMIT_MB}M"
start_node a "$P" "buffer_limit = ${LIMIT_MB}M"
ctl a volume create v 256M >/dev/null
qemu-io -f raw -c 'write -P 0x11 0 1M' "$(nbd_uri "$P" v)" >/dev/null || fail "write failed"
pid=$(node_pid a)
base=$(rss_kb "$pid")

step "$CONNS connections with 32M READs whose replies nobody reads"
python3 - "$P" "$CONNS" >"$T/hostile.out" 2>&1 <<'EOS' &
import socket, sys, time
import duet_nbd as nbd
port, conns = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(conns):
    s, _ = nbd.connect(port, "v")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for k in range(4):
        s.sendall(nbd.pack_request(nbd.CMD_READ, i * 16 + k, (k * 32 << 20) % (256 << 20), 32 << 20))
    held.append(s)
print("sent", flush=True)
time.sleep(120)
EOS
hostile=$!
track_pid $hostile
wait_for -t 20 grep -q sent "$T/hostile.out"
# The first write, then at least two READs parsed.
wait_for -t 20 sh -c "'$DUETCTL' --socket '$T/a.sock' status --json | jq -e '.nbd.requests >= 3' >/dev/null"

step "RSS stays bounded by the limit"
# limit + one max_payload (the request that crosses it) + the reuse cache
# (limit / 4) + slack for the rest of the process.
bound_kb=$(((LIMIT_MB + 32 + LIMIT_MB / 4 + 48) * 1024))
max=0
for _ in $(seq 20); do # sample for about two seconds
	r=$(rss_kb "$pid")
	[ $((r - base)) -gt $max ] && max=$((r - base))
	sleep 0.1
done
echo "RSS grew by $((max / 1024)) MiB (bound $((bound_kb / 1024)) MiB)" >&2
[ $max -le $bound_kb ] || fail "RSS grew by $((max / 1024)) MiB, over $((bound_kb / 1024)) MiB"
s=$(ctl a status --json)
jq -e ".nbd.buffered <= $(((LIMIT_MB + 32) << 20))" <<<"$s" >/dev/null ||
	fail "buffered over the limit: $(jq -c .nbd <<<"$s")"

step "the hostile clients go: a well-behaved client is served"
kill "$hostile" 2>/dev/null || true
wait "$hostile" 2>/dev/null || true
untrack_pids
timeout 20 qemu-io -f raw -c 'read -P 0x11 0 1M' "$(nbd_uri "$P" v)" >/dev/null ||
	fail "a client is not served after the hostile ones left"
wait_for -t 10 sh -c "'$DUETCTL' --socket '$T/a.sock' status --json | jq -e '.nbd.buffered == 0' >/dev/null"
