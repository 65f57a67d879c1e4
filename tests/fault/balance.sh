#!/usr/bin/env bash
# normal build only: policy timing; balance is unit-tested and fuzzed under the sanitizers (test_balance, fuzz_balance)
# Issue 14 part 4: automatic balance on load ([balance] auto = on).
#   1. a pair with [balance] auto = on, imbalance 2.0, window_s 3,
#      min_interval_s 2; vol-a1 and vol-a2 on a, vol-b on b (no load);
#   2. rate-limited writers (ackwriter.py, the same rate) on vol-a1 and
#      vol-a2 through a's NBD port: within window_s plus a margin, one of
#      them is relocated to b (owner b in both nodes' status), a logged the
#      figures, status shows both loads;
#   3. the writers go on for a few windows more: nothing moves (one volume
#      loaded on each node; moving either would only flip the load), and
#      b never decides anything; each node sees the other's load (a sees
#      the moved volume's in b's report), metrics count the move;
#   4. no client error, every acknowledged write reads back through both
#      nodes' ports.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

WINDOW=3
# shellcheck disable=SC2034 # read by failover.inc
FO_EXTRA=("[balance]" "auto = on" "imbalance = 2.0" "window_s = $WINDOW" "min_interval_s = 2")
RATE=200
owner_of() { # NODE VOL
	status "$1" | jq -r --arg v "$2" '[.volumes[] | select(.name == $v)][0].owner'
}
owned_by() { # VOL OWNER: both nodes agree
	[ "$(owner_of a "$1")" = "$2" ] && [ "$(owner_of b "$1")" = "$2" ]
}
bal() { status "$1" | jq -c ".balance$2"; }
moved_one() { owned_by vol-a1 b || owned_by vol-a2 b; }
partner_load_known() { [ "$(bal "$1" .partner_load)" != null ]; }

step "start a pair with [balance] auto = on; vol-a1, vol-a2 on a, vol-b on b"
start_a
start_b
ctl a volume create vol-a1 32M >/dev/null
ctl a volume create vol-a2 32M >/dev/null
ctl b volume create vol-b 32M >/dev/null
wait_for served_is b vol-a2 a || fail "b does not forward vol-a2 to a"
wait_for served_is a vol-b b || fail "a does not forward vol-b to b"
wait_for partner_load_known a || fail "a does not know b's load: $(bal a)"
wait_for partner_load_known b || fail "b does not know a's load: $(bal b)"
[ "$(bal a .auto)" = true ] || fail "balance not on: $(bal a)"

step "the same write load on vol-a1 and vol-a2 through a's port: one moves to b"
W=(--port "$A_NBD" --blocks 1024 --qd 8 --rate "$RATE")
writer w1 "${W[@]}" --export vol-a1
writer w2 "${W[@]}" --export vol-a2
wait_acks w1 100
wait_acks w2 100
t0=$(now_ms)
# The EWMA (about 2 s to settle), window_s, the relocation and the partner's
# adoption, with a margin for a loaded machine.
wait_for -t $((WINDOW + 10)) moved_one ||
	fail "nothing moved to b: a $(bal a) b $(bal b)"
echo "   moved after $(($(now_ms) - t0)) ms of load (window_s $WINDOW)" >&2
if owned_by vol-a1 b; then MOVED=vol-a1 STAYED=vol-a2; else MOVED=vol-a2 STAYED=vol-a1; fi
owned_by $STAYED a || fail "$STAYED left a too"
owned_by vol-b b || fail "vol-b left b"
grep -h "automatic balance: relocating $MOVED to b: own load" "$T/a.log" | sed 's/^/   /' >&2 ||
	fail "a did not log the move with its figures"
[ "$(bal a .moves)" = 1 ] || fail "a: moves $(bal a .moves)"
bal a .last | grep -q "$MOVED to b" || fail "a's status does not show the move: $(bal a)"

step "a few windows more under the same load: nothing moves back (or further)"
stays() { owned_by $MOVED b && owned_by $STAYED a && writer_alive w1 && writer_alive w2; }
hold $((WINDOW * 3 * 1000)) stays || fail "a volume moved again: a $(bal a) b $(bal b)"
wait_acks w1 100
wait_acks w2 100
[ "$(bal a .moves)" = 1 ] && [ "$(bal b .moves)" = 0 ] ||
	fail "more moves: a $(bal a) b $(bal b)"
status b | jq -e '.relocation.relocated == 0' >/dev/null || fail "b relocated something"
# Both nodes carry load now, each sees the other's.
status b | jq -e '.balance.own_load.units > 50 and .balance.partner_load.units > 50' \
	>/dev/null || fail "b's view of the loads: $(bal b)"
echo "   a: $(bal a '| {state, own_load: .own_load.units, partner_load: .partner_load.units}')" >&2
status a | jq -e --arg v $MOVED '.balance.partner_load.auto and
	([.balance.partner_load.volumes[] | select(.name == $v and .units > 50)] | length == 1)' \
	>/dev/null || fail "a does not see $MOVED's load on b: $(bal a .partner_load)"
ctl a metrics | grep -q '^duet_balance_moves_total 1$' || fail "metrics: $(ctl a metrics | grep balance)"

step "no client error, every acknowledged write reads back through both ports"
writer_stop w1
writer_stop w2
for port in $A_NBD $B_NBD; do
	check_acks "$T/w1.acks" --port $port --export vol-a1
	check_acks "$T/w2.acks" --port $port --export vol-a2
done

step "clean stop"
stop_node a
stop_node b
