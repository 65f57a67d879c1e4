#!/usr/bin/env bash
# Issue 6: no automatic takeover from a copy that lacks acknowledged writes.
# The interconnect is cut while a writes to vol-a: a publishes "degraded" in
# its mailbox before it acknowledges writes b lacks. Then a dies: b sees it
# dead, but does not take over; status says why. `duetctl takeover` is
# refused, `duetctl takeover --force` serves b's copy knowingly.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

N=300

step "start a pair, vol-a on a, mirror in sync"
pair_with_vol_a

step "cut the interconnect under a write load on a's own port: a degraded"
writer wa --port $A_NBD --export vol-a --blocks 512 --qd 8
wait_acks wa $N
nft_cut ic $IC0_A $IC0_B
wait_for partner_is b cut_off || fail "b: partner $(partner_state b), not cut_off"
wait_for m_is a degraded || fail "mirror of a: $(mstate a), not degraded"
wait_acks wa $N

step "SIGKILL a: b sees it dead and does not take over"
kill_node a
partner_dead() { partner_is b dead; }
wait_for partner_dead || fail "b: partner $(partner_state b), not dead"
hold $((4 * FO_DEADLINE_MS)) ha_is b up || fail "b left up: $(ha_state b)/$(ha_phase b)"
[ "$(ha b .takeover_possible)" = false ] || fail "b says takeover is possible"
ha b .reason | grep -q "degraded" || fail "b's reason does not name the degraded mirror: $(ha b .reason)"
no_mark_written b

step "takeover is refused; takeover --force serves b's copy"
if ctl b takeover >/dev/null 2>&1; then fail "b took over a degraded partner without --force"; fi
ctl b takeover --force >/dev/null || fail "takeover --force refused"
wait_takeover b
[ "$(served_by b vol-a)" = b ] || fail "b in takeover but vol-a served by $(served_by b vol-a)"
