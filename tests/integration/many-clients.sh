#!/usr/bin/env bash
# 64 concurrent clients: 64 qemu-io processes connect, and only once duetd
# holds all 64 connections does each write its own region with its own
# pattern and read it back; then every region is checked once more from a
# single client. All must succeed.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need qemu-io

P=$PORT_BASE
N=${MANY_CLIENTS:-64}
CHUNK=2 # MiB per client
URI=$(nbd_uri "$P" shared)

step "start"
start_node a "$P"
ctl a volume create shared $((N * CHUNK))M >/dev/null

step "connect $N clients"
declare -a FD=() QPID=()
for i in $(seq 0 $((N - 1))); do
	mkfifo "$T/cmd$i"
	qemu-io -f raw "$URI" <"$T/cmd$i" >"$T/out$i" 2>&1 &
	QPID[$i]=$!
	track_pid $!
	exec {fd}>"$T/cmd$i"
	FD[$i]=$fd
done
# The barrier: all N connections are up (counted without connecting).
wait_for -t 60 bash -c "[ \$(ss -Htn state established 'sport = :$P' | wc -l) -ge $N ]" ||
	fail "only $(port_connections "$P") of $N clients connected"
conns=$(ctl a status --json | jq '.nbd.connections')
[ "$conns" -ge "$N" ] || fail "duetctl status counts $conns connections, want $N"

step "$N clients write and read back at once"
pat() { printf '0x%02x' $(((($1 * 37) + 11) % 256)); }
for i in $(seq 0 $((N - 1))); do
	off=$((i * CHUNK))M
	{
		echo "write -P $(pat "$i") $off ${CHUNK}M"
		echo "aio_write -P $(pat "$i") $off 512k"
		echo "aio_flush"
		echo "read -P $(pat "$i") $off ${CHUNK}M"
		echo "quit"
	} >&"${FD[$i]}"
done
for i in $(seq 0 $((N - 1))); do
	eval "exec ${FD[$i]}>&-"
done
bad=0
for i in $(seq 0 $((N - 1))); do
	if ! wait "${QPID[$i]}"; then
		echo "client $i failed:" >&2
		cat "$T/out$i" >&2
		bad=$((bad + 1))
	elif grep -qiE 'fail|error' "$T/out$i"; then
		echo "client $i reported:" >&2
		cat "$T/out$i" >&2
		bad=$((bad + 1))
	fi
done
untrack_pids
[ $bad -eq 0 ] || fail "$bad of $N clients failed"

step "every region holds its client's pattern"
cmds=()
for i in $(seq 0 $((N - 1))); do cmds+=(-c "read -P $(pat "$i") $((i * CHUNK))M ${CHUNK}M"); done
qemu-io -f raw "${cmds[@]}" "$URI" >"$T/check" 2>&1 || { cat "$T/check" >&2; fail "a region holds the wrong data"; }
grep -qi 'fail' "$T/check" && { cat "$T/check" >&2; fail "pattern check failed"; }

step "all connections closed"
wait_for bash -c "[ \"\$($DUETCTL --socket $T/a.sock status --json | jq .nbd.connections)\" = 0 ]" ||
	fail "connections left: $(ctl a status --json | jq -c .nbd)"
stop_node a
