#!/usr/bin/env bash
# Issue 12: a hostile partner. tests/ccm/duet-hostile plays node b with the
# cluster secret: it forms a valid session with node a, then for a few
# seconds writes garbage into every region a exposes to it (heartbeat
# slots, a's image of b's log, forged image headers included, proxy
# memory), sends random and half-valid messages of every size on every
# port, write-notifies with random ranges, and from a second,
# unauthenticated link sends messages past the largest, garbage into the
# slot with doorbells, and reads of guessed keys.
# Node a (run this on the ASan build: DUET_BUILD=build-asan) must stay up,
# log what it refuses with its lines rate-limited, keep serving its client
# (nbdinfo, nbdcopy read-back during and after), have no sanitizer report,
# and stop cleanly.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"
HOSTILE=$BUILD/tests/ccm/duet-hostile
[ -x "$HOSTILE" ] || skip "no $HOSTILE (built with tests on)"
need nbdcopy nbdinfo
SECS=${DUET_HOSTILE_SECONDS:-8}
RAW=(--raw-local "127.0.0.1:$((PORT_BASE + 8))")
[ "${DUET_HOSTILE_RAW:-1}" = 1 ] || RAW=()

step "node a with vol-a and data on it"
start_a
ctl a volume create vol-a 64M >/dev/null
head -c 4M /dev/urandom >"$T/data"
nbdcopy "$T/data" "$(nbd_uri $A_NBD vol-a)"
want=$(sha "$T/data")
readback() {
	rm -f "$T/back"
	nbdcopy "$(nbd_uri $A_NBD vol-a)" "$T/back.full" >/dev/null 2>&1 || return 1
	head -c 4M "$T/back.full" >"$T/back"
	[ "$(sha "$T/back")" = "$want" ]
}
readback || fail "read-back before the attack"

step "the hostile partner attacks for $SECS s; a serves meanwhile"
_fo_config b
log_mark a
"$HOSTILE" --config "$T/b.conf" --seconds "$SECS" ${RAW[@]+"${RAW[@]}"} --seed $$ >"$T/hostile.out" 2>"$T/hostile.log" &
hpid=$!
track_pid $hpid
ok=0
while kill -0 $hpid 2>/dev/null; do
	if readback && nbdinfo --list "nbd://127.0.0.1:$A_NBD" >/dev/null 2>&1; then
		ok=$((ok + 1))
	else
		fail "a did not serve vol-a during the attack"
	fi
	sleep 0.2
done
rc=0
wait $hpid || rc=$?
cat "$T/hostile.out" >&2
[ $rc -eq 0 ] || fail "duet-hostile exited $rc (no session formed?): $(tail -5 "$T/hostile.log")"
[ $ok -ge 2 ] || fail "only $ok read-backs during the attack"
grep -q "sessions=[1-9]" "$T/hostile.out" || fail "no session was formed"
echo "read-backs during the attack: $ok" >&2

step "a is up, answers, and still serves"
[ -n "${NODE_PID[a]:-}" ] && kill -0 "${NODE_PID[a]}" || fail "a died"
ctl a status >/dev/null || fail "a does not answer its control socket"
readback || fail "read-back after the attack"
head -c 1M /dev/urandom >"$T/data2"
nbdcopy "$T/data2" "$(nbd_uri $A_NBD vol-a)"
nbdcopy "$(nbd_uri $A_NBD vol-a)" "$T/back2.full"
[ "$(head -c 1M "$T/back2.full" | sha256sum | cut -d' ' -f1)" = "$(sha "$T/data2")" ] ||
	fail "a write after the attack does not read back"

step "what a logged: refusals, rate-limited"
lines=$(log_since a | wc -l)
warns=$(log_since a | grep -c -E " (WARN|ERROR) " || true)
echo "a logged $lines lines ($warns warnings or errors) during ${SECS} s of attack" >&2
log_since a | grep -E " (WARN|ERROR) " | sed -E 's/^[0-9:.]+ //' | cut -c1-150 | sort | uniq -c |
	sort -rn | head -15 >&2
[ "$lines" -le $((SECS * 60 + 200)) ] || fail "a logged $lines lines in $SECS s: not rate-limited"

step "a stops cleanly"
stop_node a
