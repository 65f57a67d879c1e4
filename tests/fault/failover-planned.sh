#!/usr/bin/env bash
# Issue 6: planned takeover for maintenance. `duetctl takeover` on b while
# both live and a client writes to vol-a through b's proxy port and another
# on a's own port (it reconnects to b's proxy port): a finds the mark and
# stops serving, b replays and serves, no client error on the proxy port,
# nothing acknowledged lost; then giveback under load.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

W=(--export vol-a --blocks 512 --qd 16)
N=300

step "start a pair, vol-a on a, mirror in sync, takeover possible on b"
pair_with_vol_a

step "load through b's proxy port (p) and on a's own port (d)"
writer p --port $B_PROXY "${W[@]}" --first-block 0
writer d --port $A_NBD --failover-port $B_PROXY "${W[@]}" --first-block 512
wait_acks p $N
wait_acks d $N

step "duetctl takeover on b: a stops serving, b serves vol-a"
ctl b takeover >/dev/null || fail "takeover refused on a live pair in sync"
wait_takeover b
wait_ha a waiting_for_giveback
refuses $A_NBD || fail "a accepts connections on its NBD port after the planned takeover"
[ "$(served_by b vol-a)" = b ] || fail "b in takeover but vol-a served by $(served_by b vol-a)"
wait_acks p $N
wait_acks d $N
writer_stop p
writer_stop d
grep -q " errors=0 " "$T/p.out" || fail "writer on b's proxy port saw errors: $(tail -n 1 "$T/p.out")"

step "every acknowledged write reads back through b"
check_acks "$T/p.acks,$T/d.acks" --port $B_PROXY --export vol-a

step "giveback under load through b's proxy port"
writer g --port $B_PROXY "${W[@]}" --first-block 0
wait_acks g $N
giveback_to a
wait_acks g $N
writer_stop g
grep -q " errors=0 " "$T/g.out" || fail "writer g saw errors: $(tail -n 1 "$T/g.out")"
one_server

step "every acknowledged write reads back on a's own port"
check_acks "$T/p.acks,$T/d.acks,$T/g.acks" --port $A_NBD --export vol-a
