#!/usr/bin/env bash
# normal build only: address moves in namespaces; the netaddr code is unit-tested and fuzzed under the sanitizers
# Issue 13: a client of node a's own service address rides through a's
# death. `duet-pair up --netns`; a writer on nbd://SVC_A:P/vol-a that, on a
# lost connection, reconnects to the same address and port (ackwriter.py
# with --failover-port = its own port). Each round: SIGKILL of a; b takes
# over and holds SVC_A (and a's namespace does not); the writer goes on; a
# restarts (removing a leftover address first), giveback; SVC_A is a's
# again; the writer goes on. Round 1, 4, ... kill through `duet-pair kill`
# (the host removes the dead node's address: the clean case); rounds 2, 5,
# ... with a bare SIGKILL (the address lingers on a's interface until its
# lifetime runs out: the lingering case, b waits for it); rounds 3, 6, ...
# with a bare SIGKILL followed by `duetd --release-addresses` in a's
# namespace (the systemd unit's ExecStopPost). At the end every acknowledged write reads back: 0 lost.
# b knows a's address and ports only from a's record over the interconnect
# (its [monitor] partner_service_address lines are removed first).
# ROUNDS rounds (default 3 in `make test`; the issue's soak is ROUNDS=20).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/addr.inc"

ROUNDS=${ROUNDS:-3}
N=200

step "duet-pair up --netns: a holds $SVC_A, b $SVC_B"
addr_pair_up
[ "$(held_by b "$SVC_B")" = b ] || fail "b does not hold $SVC_B"
nbdinfo "nbd://$SVC_A:$A_NBD/vol-a" >/dev/null || fail "vol-a not reachable at $SVC_A:$A_NBD"
nbdinfo "nbd://$SVC_A:$A_PROXY/vol-b" >/dev/null || fail "vol-b not reachable at $SVC_A:$A_PROXY"

step "b forgets a's address from its config and learns it over the interconnect"
sed -i '/^partner_service_address\|^partner_nbd_port\|^partner_proxy_port/d' "$T/b.ini"
pair kill b >/dev/null
# a takes b over before b comes back (a restart within a's deadline would
# be no takeover at all).
wait_ha a takeover/serving
pair start b >/dev/null
wait_for grep -q "the partner's service address is $SVC_A/24 (NBD port $A_NBD, proxy port $A_PROXY)" "$T/b.log" ||
	fail "b did not learn a's service address over the interconnect"
# Give b's volumes (and SVC_B) back.
wait_for is_ha b waiting_for_giveback/none || fail "b does not wait for giveback: $(ha_state b)"
wait_for pair giveback a || fail "giveback to b refused"
wait_ha a up/none
wait_ha b up/none
wait_for on_iface b "$SVC_B" || fail "b does not hold $SVC_B after the giveback"
takeover_ready

step "a writer on nbd://$SVC_A:$A_NBD/vol-a"
writer w --blocks 1024 --qd 16 --timestamps
wait_acks w $N
for r in $(seq 1 "$ROUNDS"); do
	case $((r % 3)) in
	1) how=clean ;;
	2) how=lingering ;;
	0) how=release ;;
	esac
	step "round $r/$ROUNDS: SIGKILL of a ($how)"
	takeover_ready
	if [ $how = clean ]; then
		pair kill a
		on_iface a "$SVC_A" && fail "duet-pair kill left $SVC_A on a's interface"
	elif [ $how = release ]; then
		# What the systemd unit's ExecStopPost does after any exit.
		kill -s KILL "$(cat "$T/a.pid")"
		ip netns exec "$(ns_of a)" "$DUETD" --config "$T/a.ini" --release-addresses >>"$T/release.out" 2>&1 ||
			fail "duetd --release-addresses: $(tail -n 2 "$T/release.out")"
		on_iface a "$SVC_A" && fail "duetd --release-addresses left $SVC_A on a's interface"
	else
		# Nobody removes the address: a's kernel drops it when its
		# lifetime runs out; b claims it only after that.
		kill -s KILL "$(cat "$T/a.pid")"
	fi
	wait_ha b takeover/serving
	wait_for on_iface b "$SVC_A" || fail "b does not hold $SVC_A after the takeover"
	[ "$(held_by b "$SVC_A")" = b ] || fail "b's status: $SVC_A held by $(held_by b "$SVC_A")"
	step "round $r/$ROUNDS: the writer goes on through b at $SVC_A"
	wait_acks w $N
	nbdinfo "nbd://$SVC_A:$A_PROXY/vol-b" >/dev/null || fail "b does not serve vol-b on a's proxy port"

	step "round $r/$ROUNDS: a restarts, giveback, $SVC_A is a's again"
	pair start a >/dev/null
	on_iface a "$SVC_A" && fail "a restarted taken over, and holds $SVC_A"
	giveback_a
	wait_for on_iface a "$SVC_A" || fail "a does not hold $SVC_A after the giveback"
	on_iface b "$SVC_A" && fail "b still holds $SVC_A after the giveback"
	[ "$(held_by a "$SVC_A")" = a ] || fail "a's status: $SVC_A held by $(held_by a "$SVC_A")"
	wait_acks w $N
done

step "stop the writer; every acknowledged write reads back on $SVC_A"
writer_stop w
reconnects=$(sed -n 's/.*reconnects=\([0-9]*\).*/\1/p' "$T/w.out")
[ "${reconnects:-0}" -ge "$ROUNDS" ] || fail "writer reconnected ${reconnects:-0} times in $ROUNDS rounds"
check_acks "$T/w.acks"
echo "rounds=$ROUNDS $(tail -n 1 "$T/w.out")" >&2
grep -h "moved here\|removed here" "$T/b.log" | tail -n 2 >&2
