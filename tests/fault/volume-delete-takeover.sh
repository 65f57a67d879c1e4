#!/usr/bin/env bash
# Issue 15: a volume deleted while its writes are still in the NVRAM log
# and in the partner's image of it. a writes to vol-x and vol-a, vol-x is
# deleted (--force, a client connected), then a is SIGKILLed: b replays
# a's log from its image, skipping vol-x's records (no crash, no file made
# for it), serves vol-a with every acknowledged write, and lists no vol-x
# on its proxy port; after the giveback a does not have vol-x back either.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
# No consistency point on a timer, nor a half switch (slow writers, a large
# log): vol-x's records stay in the log (and in b's image of it) until the
# takeover.
FO_MIRROR=("cp_interval_ms = 600000" "log_size = 128M")
. "$TEST_DIR/failover.inc"
need nbdinfo

listed() { nbdinfo --list "nbd://127.0.0.1:$1" >"$T/list.out" && grep -q "export=\"$2\"" "$T/list.out"; }

step "a pair, vol-a and vol-x on a, writes to both"
pair_with_vol_a --no-watch
ctl a volume create vol-x 64M >/dev/null
wait_for listed $B_PROXY vol-x
writer wa --port $A_NBD --export vol-a --blocks 1024 --qd 16 --rate 500
writer wx --port $A_NBD --export vol-x --blocks 1024 --qd 16 --rate 500 --until-dead --allow-errors
wait_acks wa 200
wait_acks wx 200

step "delete vol-x with its writer connected (--force)"
ctl a volume delete vol-x >/dev/null 2>&1 && fail "delete with a client connected accepted"
ctl a volume delete vol-x --force >/dev/null
writer_wait wx
wait_for not listed $B_PROXY vol-x
wait_acks wa 100
writer_stop wa

step "SIGKILL a: b replays a's log, skipping vol-x's records"
kill_node a
wait_takeover b
grep -q "replay: skipping records of volume" "$T/b.log" ||
	fail "b's replay did not skip vol-x's records: $(grep 'replay' "$T/b.log" | tail -3)"
[ ! -e "$(shelf_of a b)/volumes/vol-x.img" ] || fail "vol-x's data file is back after the replay"
listed $B_PROXY vol-x && fail "b lists vol-x after the takeover"
check_acks "$T/wa.acks" --port $B_PROXY --export vol-a

step "a restarts, the giveback: vol-x stays deleted"
start_taken_over a
giveback_to a
ctl a volume list --json | jq -e 'all(.volumes[]; .name != "vol-x")' >/dev/null ||
	fail "vol-x is back on a"
check_acks "$T/wa.acks" --port $A_NBD --export vol-a

step "clean stop"
stop_node a
stop_node b
