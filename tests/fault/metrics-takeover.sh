#!/usr/bin/env bash
# Metrics across a takeover and a giveback (duetctl metrics on the pair):
# after SIGKILL of a, b's duet_ha_takeovers_total is 1, its HA state gauge
# says takeover and partner_alive 0, and the I/O it serves for a's volume
# counts under owner="a"; after a's restart and the giveback, b's
# duet_ha_givebacks_total is 1 and a's counters start again from 0.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"
need promtool nbdcopy

m() { ctl "$1" metrics >"$T/m-$1.txt" && promtool check metrics <"$T/m-$1.txt" >/dev/null 2>&1; }
value() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { exit !f }' "$T/m-$1.txt"; }
expect() { # NODE SAMPLE VALUE
	local v
	v=$(value "$1" "$2") || fail "$1 has no sample $2"
	[ "$v" = "$3" ] || fail "$1: $2 is $v, want $3"
}

step "a pair, vol-a on a"
pair_with_vol_a --no-watch
m b || fail "b's metrics do not pass promtool"
expect b duet_ha_takeovers_total 0
expect b duet_ha_partner_alive 1

step "SIGKILL a: b takes over and counts it"
kill_node a
wait_takeover b
m b || fail "b's metrics do not pass promtool"
expect b duet_ha_takeovers_total 1
expect b 'duet_ha_state{state="takeover"}' 1
expect b 'duet_ha_state{state="up"}' 0
expect b duet_ha_partner_alive 0

step "I/O on a's volume through b counts under owner a"
head -c 4M /dev/urandom >"$T/data"
nbdcopy "$T/data" "$(nbd_uri $B_PROXY vol-a)"
m b
w=$(value b 'duet_volume_bytes_total{volume="vol-a",owner="a",op="write"}') || fail "no counter of vol-a on b"
[ "$w" -ge $((4 << 20)) ] || fail "b counted $w bytes written to vol-a, want >= 4 MiB"

step "a restarts, b gives back and counts it"
launch_node a
giveback_to a
m b
expect b duet_ha_givebacks_total 1
expect b duet_ha_takeovers_total 1
expect b 'duet_ha_state{state="up"}' 1
m a
expect a duet_ha_takeovers_total 0
step "clean stop"
