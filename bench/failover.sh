#!/usr/bin/env bash
# Failover benchmark: SIGKILL node a of a local pair while a client writes to
# vol-a through node b's proxy port, TRIALS times, and measure
#   kill -> dead      b decides that a is dead and starts the takeover (the
#                     time stamp of b's log line "ha: takeover/marking")
#   kill -> serving   b serves vol-a itself ("ha: takeover/serving")
#   kill -> write     the end of the client's longest pause between two
#                     acknowledgements that ends after the kill and starts
#                     before b serves (the pause itself: "interruption")
#   giveback          `duetctl giveback` on b -> a's "ha: up/..." line, and
#                     the client's longest pause around it
#   lost              acknowledged writes missing on read-back after the
#                     takeover (through b) and after the giveback (through a)
# Each trial: write for BENCH_PRE_MS, kill a, wait until b serves vol-a,
# write BENCH_POST_MS more, stop the client and check; restart a, wait until
# it waits for giveback, write again, give back, wait until both are up,
# write BENCH_POST_MS more, stop and check through a's own port; wait until
# b may take over again. Time stamps are the wall clock: the client stamps
# each acknowledgement, the kill is stamped by this shell ($EPOCHREALTIME)
# right before kill(2), duetd stamps its log lines in microseconds.
# The peers are not run: the doc compares with their published defaults.
#
#   bench/failover.sh [--write-doc] [--trials N] [--config "KEY=V ..."]...
#                     [BUILD_DIR]                       (BUILD_DIR: build)
#
# --addr: instead, the service-address series (issue 13; root: duet-pair up
# --netns): a client of a's own address (nbd://SVC_A:P/vol-a, reconnecting
# to the same address and port, TCP keep-alive 1 s) through TRIALS kills of
# a (duet-pair kill: the host removes the dead node's address), each
# followed by a's restart and the giveback; per trial: kill -> the first
# write acknowledged again after the reconnect, and the address move (b's
# "ha: takeover/marking" line -> its "moved here" line: the address added
# and announced); p50/p90/max; at the end every acknowledged write is read
# back (lost). Printed only, not written to the doc. Its timings need a
# quiet machine; with a small N (--trials 3) it is a functional check.
# BENCH_ADDR_MONITOR: its [monitor] settings (default, for a loaded box,
# "mailbox_deadline_ms=300 lease_ms=500 watchdog_ms=3000"; "" = duetd's
# defaults, for the quiet run). The client's reconnect tries a TCP connect
# for 0.2 s at a time (ackwriter.py --connect-timeout).
# --config: [monitor] settings of one series of trials, on a fresh pair
# (repeat it for several series; "" is the defaults; none: the defaults).
# Env: BENCH_TRIALS (20), BENCH_PORT_BASE (26700: uses P..P+3 and
# P+100..P+101), BENCH_DIR ($TMPDIR or /tmp), BENCH_QD (client writes in
# flight, 8), BENCH_RATE (client writes per second, 2000; 0 = no limit),
# BENCH_PRE_MS (500), BENCH_POST_MS (500), BENCH_KEEP=1 keeps the directory,
# BENCH_OWN_MOUNTS=1 runs the pair on the two-host stand-in (duet-pair
# --own-mounts: each node's shelves on a FUSE mount of its own).
# A trial that does not complete (no takeover, a node hung or died, the
# client's writes hung or its connection broke) ends its series; the figures
# of the trials before it are still shown. Exit status 1 then, or when the
# client got an error reply or lost an acknowledged write; timings never fail
# it.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=failover.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

write_doc=0
addr=0
build=build
TRIALS=${BENCH_TRIALS:-20}
CONFIGS=()
while [ $# -gt 0 ]; do
	case $1 in
	--write-doc) write_doc=1 ;;
	--addr) addr=1 ;;
	--trials)
		TRIALS=${2:?--trials needs N}
		shift
		;;
	--config)
		[ $# -ge 2 ] || {
			echo "failover.sh: --config needs \"KEY=VALUE ...\"" >&2
			exit 2
		}
		CONFIGS+=("$2")
		shift
		;;
	-h | --help)
		sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
		exit 0
		;;
	-*)
		echo "failover.sh: unknown option $1" >&2
		exit 2
		;;
	*) build=$1 ;;
	esac
	shift
done
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=("")
for c in "${CONFIGS[@]}"; do
	for kvp in $c; do
		[[ $kvp =~ ^[a-z_]+=[^[:space:]]+$ ]] || {
			echo "failover.sh: --config takes KEY=VALUE words, not '$kvp'" >&2
			exit 2
		}
	done
done
case $build in /*) ;; *) build=$ROOT/$build ;; esac
[[ $TRIALS =~ ^[1-9][0-9]*$ ]] || {
	echo "failover.sh: --trials takes a positive number" >&2
	exit 2
}
DUETCTL=$build/tools/duetctl
PAIR=$ROOT/tools/duet-pair
CLIENT=$ROOT/bench/ackclient.py
P=${BENCH_PORT_BASE:-26700}
QD=${BENCH_QD:-8}
RATE=${BENCH_RATE:-2000}
PRE_MS=${BENCH_PRE_MS:-500}
POST_MS=${BENCH_POST_MS:-500}

bench_need jq python3 awk timeout tail
bench_need_build "$build"
[ -n "${EPOCHREALTIME:-}" ] || {
	echo "failover.sh: needs bash 5 (EPOCHREALTIME)" >&2
	exit 2
}
bench_sanitizer_warn "$build"
export DUET_BUILD=$build

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/duet-fobench.XXXXXX")
D=""
KEEP=${BENCH_KEEP:-0}
CPID=""
cleanup() {
	[ -z "$CPID" ] || kill "$CPID" 2>/dev/null || true
	[ -z "$D" ] || [ ! -d "$D" ] || "$PAIR" down "$D" >/dev/null 2>&1 || true
	if [ "$KEEP" = 1 ]; then
		echo "failover.sh: kept $W" >&2
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctl() {
	local n=$1
	shift
	"$DUETCTL" --socket "$D/$n.sock" "$@"
}
ha() { ctl "$1" status --json | jq -r '.ha | "\(.state)/\(.phase)"'; }
can_take_over() { ctl b status --json | jq -e '.ha.takeover_possible == true and .mirror.state == "in_sync"'; }

# fail MSG: the trial did not complete. Runs inside the trial's subshell:
# stops the client, records why with the nodes' state and log tails, and
# ends the subshell.
fail() {
	[ -z "$CPID" ] || kill "$CPID" 2>/dev/null || true
	{
		echo "trial $trial: $*"
		local n
		for n in a b; do
			echo "--- $n: $(ctl $n status --json 2>/dev/null | jq -c '{ha: (.ha | {state, phase, reason, partner}), mirror: .mirror.state}' 2>/dev/null || echo unreachable)"
			tail -15 "$D/$n.log"
		done
	} >"$S.fail$trial"
	exit 1
}
# wait_or_fail SECONDS WHAT CMD...: poll CMD every 20 ms (only where nothing
# is being timed).
wait_or_fail() {
	local s=$1 what=$2
	shift 2
	bench_wait "$s" "$@" || fail "$what (after ${s} s)"
}

# now_sod: seconds of the UTC day, microseconds, as duetd's log stamps.
now_sod() {
	local t=$EPOCHREALTIME
	echo "$((${t%.*} % 86400)).${t#*.}"
}
# events LOG OFFSET T_SOD: "state/phase ms" for each HA line of LOG after
# byte OFFSET, ms since T_SOD (seconds of the day).
events() {
	tail -c +$(($2 + 1)) "$1" | awk -v t="$3" '
		match($0, / ha: [a-z_]+\/[a-z_]+:/) {
			split($1, h, ":")
			d = h[1] * 3600 + h[2] * 60 + h[3] - t
			if (d < -43200) d += 86400
			if (d > 43200) d -= 86400
			printf "%s %.1f\n", substr($0, RSTART + 5, RLENGTH - 6), d * 1000
		}'
}
# first EVENTS STATE/PHASE: ms of its first occurrence, "-" if none.
first() { awk -v e="$2" '$1 == e { print $2; f = 1; exit } END { if (!f) print "-" }' <<<"$1"; }
fsize() { stat -c %s "$1"; }
# wait_log LOG OFFSET REGEX SECONDS: block until a line of LOG after byte
# OFFSET matches REGEX (inotify, no polling: the nodes keep the CPUs).
wait_log() {
	local fd tp rc=0
	exec {fd}< <(exec timeout "$4" tail -c +$(($2 + 1)) -F "$1" 2>/dev/null)
	tp=$!
	grep -q -m1 -E -- "$3" <&"$fd" || rc=1
	exec {fd}<&-
	kill "$tp" 2>/dev/null || true
	return $rc
}
# wait_ha NODE OFFSET STATE/PHASE-REGEX SECONDS WHAT: wait for the node's HA
# log line, then check its status says so too.
wait_ha() {
	wait_log "$D/$1.log" "$2" " ha: $3:" "$4" || fail "$5 (no \"ha: $3\" line in $1's log within $4 s)"
	[[ $(ha "$1") =~ ^$3$ ]] || fail "$5 ($1 logged \"ha: $3\" but its status says $(ha "$1"))"
}
# kv KEY LINE: the value of KEY=... in LINE
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# ---- the service-address series (--addr) ----
addr_series() {
	local ackw=$ROOT/tests/fault/ackwriter.py py=python3 net x t0 tr mark moved g first
	[ -x /usr/bin/python3 ] && py=/usr/bin/python3
	[ "$(id -u)" = 0 ] || bench_die "--addr needs root (duet-pair up --netns)"
	net=${DUET_PAIR_NET:-}
	if [ -z "$net" ]; then
		for x in $(seq 20 219); do
			[ -n "$(ip -4 route show "10.214.$x.0/24")" ] || { net=10.214.$x; break; }
		done
	fi
	export DUET_PAIR_NET=$net PYTHONPATH=$ROOT/tools/python${PYTHONPATH:+:$PYTHONPATH}
	D=$W/addr
	local mon=() kv2
	for kv2 in ${BENCH_ADDR_MONITOR-mailbox_deadline_ms=300 lease_ms=500 watchdog_ms=3000}; do
		mon+=(--monitor "$kv2")
	done
	"$PAIR" up "$D" --netns --base-port "$P" --size 256M ${mon[@]+"${mon[@]}"} >"$W/addr-up.out" 2>&1 ||
		{ cat "$W/addr-up.out" >&2; bench_die "duet-pair up --netns failed"; }
	local svc=$net.10 res=$W/addr.tsv
	: >"$res"
	holds() { ctl "$1" status --json | jq -e ".addresses[] | select(.address | startswith(\"$svc/\")) | .held_by == \"$1\"" >/dev/null; }
	sod_ms() { awk '{ split($1, h, ":"); printf "%.1f\n", (h[1] * 3600 + h[2] * 60 + h[3]) * 1000 }'; }
	bench_wait 60 can_take_over || bench_die "b cannot take over a"
	$py "$ackw" write --host "$svc" --port "$P" --failover-port "$P" --export vol-a \
		--log "$W/addr.acks" --stop-file "$W/addr.stop" --blocks 4096 --qd "$QD" \
		--timestamps --keepalive 1 --connect-timeout 0.2 --reconnect-seconds 60 >"$W/addr.out" 2>&1 &
	CPID=$!
	bench_wait 30 grep -q '^A ' "$W/addr.acks" || bench_die "the client got no acknowledgement"
	for ((tr = 1; tr <= TRIALS; tr++)); do
		ms_sleep "$PRE_MS"
		local off
		off=$(fsize "$D/b.log")
		t0=$($py "$ackw" now)
		"$PAIR" kill "$D" a >/dev/null
		bench_wait 60 holds b || bench_die "trial $tr: b does not hold $svc"
		bench_wait 60 awk -v t="$t0" '$1 == "A" && $4 + 0 > t + 0 { f = 1; exit } END { exit !f }' "$W/addr.acks" ||
			bench_die "trial $tr: no write acknowledged after the kill"
		ms_sleep "$POST_MS"
		# The first write acknowledged after the first reconnect that
		# follows the kill (acks of writes already under way when the
		# kill landed do not count).
		first=$(awk -v t="$t0" '$1 == "D" && $2 + 0 > t + 0 && !d { d = $2 }
			d && $1 == "R" && $2 + 0 >= d + 0 && !r { r = $2 }
			r && $1 == "A" && $4 + 0 > r + 0 { printf "%.1f", ($4 - t) * 1000; exit }' "$W/addr.acks")
		[ -n "$first" ] || bench_die "trial $tr: no reconnect and write after the kill"
		local fence
		fence=$(tail -c +$((off + 1)) "$D/b.log" | sed -n 's/.*of the partner moved here.*serving in \([0-9]*\) ms after the fence.*/\1/p' | head -n 1)
		mark=$(tail -c +$((off + 1)) "$D/b.log" | grep -m1 ' ha: takeover/marking' | sod_ms)
		moved=$(tail -c +$((off + 1)) "$D/b.log" | grep -m1 'of the partner moved here' | sod_ms)
		printf '%s\t%s\t%s\n' "$first" "$(awk -v a="$mark" -v b="$moved" 'BEGIN { printf "%.1f", b - a }')" "${fence:--}" >>"$res"
		echo "trial $tr: kill -> first write again ${first} ms; mark -> address on b $(tail -n1 "$res" | cut -f2) ms (${fence:--} ms after the fence)" >&2
		"$PAIR" start "$D" a >/dev/null
		bench_wait 60 "$DUETCTL" --socket "$D/b.sock" giveback || bench_die "trial $tr: giveback refused"
		bench_wait 60 holds a || bench_die "trial $tr: a does not hold $svc after the giveback"
		bench_wait 60 can_take_over || bench_die "trial $tr: b cannot take over again"
		# The client writes through a again (it reconnected after the giveback).
		t0=$($py "$ackw" now)
		bench_wait 60 awk -v t="$t0" '$1 == "A" && $4 + 0 > t + 0 { f = 1; exit } END { exit !f }' "$W/addr.acks" ||
			bench_die "trial $tr: no write acknowledged after the giveback"
	done
	touch "$W/addr.stop"
	wait "$CPID" || true
	CPID=""
	local lost=0 errs
	$py "$ackw" check --log "$W/addr.acks" --host "$svc" --port "$P" --export vol-a >"$W/addr.check" 2>&1 ||
		lost=$(grep -c . "$W/addr.check")
	errs=$(kv errors "$(tail -n 1 "$W/addr.out")")
	pctl() { cut -f"$1" "$res" | sort -n | awk -v q="$2" '{ v[NR] = $1 } END { i = int(NR * q + 0.999); if (i < 1) i = 1; print v[i] }'; }
	echo
	echo "service-address series: $TRIALS trials, client on nbd://$svc:$P/vol-a (load $(cut -d' ' -f1-3 /proc/loadavg))"
	printf '%-40s %8s %8s %8s\n' "" p50 p90 max
	printf '%-40s %8s %8s %8s\n' "kill -> first write again (ms)" "$(pctl 1 0.5)" "$(pctl 1 0.9)" "$(pctl 1 1)"
	printf '%-40s %8s %8s %8s\n' "takeover mark -> address on b (ms)" "$(pctl 2 0.5)" "$(pctl 2 0.9)" "$(pctl 2 1)"
	printf '%-40s %8s %8s %8s\n' "  of which after the fence (ms)" "$(pctl 3 0.5)" "$(pctl 3 0.9)" "$(pctl 3 1)"
	echo "lost acknowledged writes: $lost; error replies: ${errs:-?}; $(tail -n 1 "$W/addr.out")"
	[ "$lost" = 0 ] && [ "${errs:-1}" = 0 ]
}

# client_start LOG: a write load on vol-a through b's proxy port; returns
# once the first write was acknowledged (the client flushes its log then).
client_start() {
	rm -f "$W/stop"
	python3 "$CLIENT" write --port $((P + 3)) --export vol-a --log "$1" --qd "$QD" \
		--rate "$RATE" --stop-file "$W/stop" >"$1.out" 2>&1 &
	CPID=$!
	wait_or_fail 30 "the client got no acknowledgement through b's proxy port" \
		grep -q '^A ' "$1"
}
# client_stop LOG: stop the load, wait for it to drain; fails the trial on a
# broken connection or writes unanswered for 60 s (twice the proxy's request
# timeout, so that a timed-out request shows as an error reply). Error
# replies are counted (the "errors=" of LOG.out), not fatal.
client_stop() {
	touch "$W/stop"
	local deadline=$((SECONDS + 60))
	while kill -0 "$CPID" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || fail "the client's writes did not complete within 60 s"
		sleep 0.02
	done
	wait "$CPID" || true
	CPID=""
	grep -q '^acked=.* errors=[0-9]* sent=[0-9]*$' "$1.out" || fail "the client failed: $(tail -3 "$1.out")"
}
# errors LOG: error replies the client got; their errno values go to
# $S.errors.
errors() {
	local n
	n=$(kv errors "$(tail -1 "$1.out")")
	if [ "$n" != 0 ]; then
		echo "trial $trial: $n error replies ($(basename "$1" .log | sed 's/.*-1$/around the kill/; s/.*-2$/around the giveback/')): errno $(awk '$1 == "E" { print $4 }' "$1" | sort | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')" >>"$S.errors"
	fi
	echo "$n"
}
# abs_to T MS: "--to T+MS/1000" (wall clock) for ackclient's gap, or nothing
# when MS is "-".
abs_to() {
	[ "$2" = - ] || awk -v t="$1" -v m="$2" 'BEGIN { printf "--to %.6f\n", t + m / 1000 }'
}
ms_sleep() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }

# phase_measure LOG T_PRE T_EVENT DONE_MS CHECK_LOGS PORT WHAT_GAP WHAT_LOST:
# after a kill or a giveback at T_EVENT (DONE_MS after it the event is over,
# or "-"): PH_GAP, the client's pause after T_EVENT (ackclient gap, up to
# DONE_MS); PH_BASE, its longest pause between T_PRE and T_EVENT; PH_CHECK,
# ackclient check of CHECK_LOGS through PORT. fail when there is no
# acknowledgement after WHAT_GAP or a write was lost after WHAT_LOST.
phase_measure() {
	local log=$1 t_pre=$2 t_ev=$3 done_ms=$4 logs=$5 port=$6
	local -a to
	read -r -a to <<<"$(abs_to "$t_ev" "$done_ms")"
	PH_GAP=$(python3 "$CLIENT" gap --log "$log" --from "$t_ev" ${to[@]+"${to[@]}"}) ||
		fail "no acknowledgement after $7"
	PH_BASE=$(python3 "$CLIENT" gap --log "$log" --from "$t_pre" --to "$t_ev" --inside) || true
	PH_CHECK=$(python3 "$CLIENT" check --log "$logs" --port "$port" --export vol-a 2>"$log.check") ||
		fail "acknowledged writes lost after $8: $PH_CHECK $(head -3 "$log.check")"
}

# run_trial: one kill, takeover, restart, giveback; appends a row to $S.tsv.
# Runs in a subshell: fail ends only the trial.
run_trial() {
	local w1=$W/s$si-t$trial-1.log w2=$W/s$si-t$trial-2.log
	local t_pre t_kill t_kill_sod off_b off_a pid_a ev ev_a g base c1 t_pre2 t_gb t_gb_sod g2 base2 c2 row
	# --- kill a under load, b takes over ---
	client_start "$w1"
	t_pre=$EPOCHREALTIME
	ms_sleep "$PRE_MS"
	off_b=$(fsize "$D/b.log")
	pid_a=$(cat "$D/a.pid")
	t_kill_sod=$(now_sod)
	t_kill=$EPOCHREALTIME
	kill -KILL "$pid_a"
	echo "$t_kill" >>"$S.kills"
	wait_ha b "$off_b" "takeover/serving" 30 "b did not serve vol-a after a's kill"
	bench_wait 5 bash -c "! kill -0 $pid_a" || fail "a ($pid_a) outlived SIGKILL"
	ms_sleep "$POST_MS"
	client_stop "$w1"
	ev=$(events "$D/b.log" "$off_b" "$t_kill_sod")
	# The interruption is the longest pause that starts before b serves vol-a
	# (later pauses are the machine's, not the failover's).
	phase_measure "$w1" "$t_pre" "$t_kill" "$(first "$ev" takeover/serving)" "$w1" $((P + 3)) \
		"the kill" "the takeover"
	g=$PH_GAP base=$PH_BASE c1=$PH_CHECK

	# --- restart a, it waits; give back ---
	off_a=$(fsize "$D/a.log")
	"$PAIR" start "$D" a >/dev/null || fail "a did not restart"
	wait_ha a "$off_a" "waiting_for_giveback/[a-z_]+" 60 "a does not wait for giveback"
	client_start "$w2"
	t_pre2=$EPOCHREALTIME
	ms_sleep "$PRE_MS"
	off_a=$(fsize "$D/a.log")
	off_b=$(fsize "$D/b.log")
	t_gb_sod=$(now_sod)
	t_gb=$EPOCHREALTIME
	ctl b giveback >"$w2.giveback" 2>&1 || fail "giveback refused: $(cat "$w2.giveback")"
	wait_ha a "$off_a" "up/[a-z_]+" 60 "a is not up after the giveback"
	wait_ha b "$off_b" "up/[a-z_]+" 60 "b is not up after the giveback"
	ms_sleep "$POST_MS"
	client_stop "$w2"
	ev_a=$(events "$D/a.log" "$off_a" "$t_gb_sod")
	phase_measure "$w2" "$t_pre2" "$t_gb" "$(first "$ev_a" up/none)" "$w1,$w2" "$P" \
		"the giveback" "the giveback"
	g2=$PH_GAP base2=$PH_BASE c2=$PH_CHECK
	# The next kill needs b's copy of a's log in sync again.
	wait_or_fail 60 "b cannot take over a again" can_take_over

	row=("$trial" "$(first "$ev" takeover/marking)" "$(first "$ev" takeover/fence_wait)"
		"$(first "$ev" takeover/replaying)" "$(first "$ev" takeover/serving)"
		"$(kv resume_ms "$g")" "$(kv gap_ms "$g")" "$(kv gap_ms "$base")"
		"$(first "$ev_a" up/none)" "$(kv gap_ms "$g2")" "$(kv gap_ms "$base2")"
		"$(kv acked "$c1")" "$(kv lost "$c1")" "$(kv acked "$c2")" "$(kv lost "$c2")"
		"$(errors "$w1")" "$(errors "$w2")")
	(IFS=$'\t'; echo "${row[*]}") >>"$S.tsv"
	echo "trial $trial: dead ${row[1]} ms, serving ${row[4]} ms, write again ${row[5]} ms (pause ${row[6]} ms), giveback ${row[8]} ms (pause ${row[9]} ms), lost ${row[12]}+${row[14]}, errors ${row[15]}+${row[16]}" >&2
}

# heal: after a failed trial, bring the pair back to the start state of a
# trial: both nodes run and are up, a serves vol-a, b may take over. Starts a
# node that is down; gives back from whichever node serves the other's
# volumes once the other waits for it. 1 after 120 s.
heal() {
	local end=$((SECONDS + 120)) n sa sb
	[ -z "$CPID" ] || kill "$CPID" 2>/dev/null || true
	CPID=""
	while [ $SECONDS -lt $end ]; do
		for n in a b; do
			if ! kill -0 "$(cat "$D/$n.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
				echo "failover.sh: heal: starting $n" >&2
				"$PAIR" start "$D" "$n" >/dev/null 2>&1 || true
			fi
		done
		sa=$(ha a 2>/dev/null || echo down)
		sb=$(ha b 2>/dev/null || echo down)
		if [[ $sa == up/* && $sb == up/* ]] && can_take_over >/dev/null 2>&1; then
			return 0
		fi
		if [[ $sa == takeover/serving && $sb == waiting_for_giveback/* ]]; then
			echo "failover.sh: heal: giveback from a to b" >&2
			ctl a giveback >/dev/null 2>&1 || true
		elif [[ $sb == takeover/serving && $sa == waiting_for_giveback/* ]]; then
			echo "failover.sh: heal: giveback from b to a" >&2
			ctl b giveback >/dev/null 2>&1 || true
		fi
		sleep 0.2
	done
	return 1
}
# takeovers SERIES: the takeovers the kills did not cause. b takes over once
# per kill; a never should (b is never killed): every takeover by a, and
# every takeover by b beyond the kills, goes to SERIES.false with its log
# line.
takeovers() {
	local kills=0 nb
	[ ! -e "$1.kills" ] || kills=$(wc -l <"$1.kills")
	grep -h ' ha: takeover/marking:' "$D/a.log" >"$1.false" || true
	nb=$(grep -c ' ha: takeover/marking:' "$D/b.log" || true)
	echo "$(wc -l <"$1.false") $((nb > kills ? nb - kills : 0)) $kills" >"$1.counts"
}

UPTIME_BEFORE=$(uptime)
if [ $addr = 1 ]; then
	addr_series
	exit $?
fi
for si in "${!CONFIGS[@]}"; do
	S=$W/series$si
	: >"$S.tsv"
	D=$W/pair$si
	read -r -a mon <<<"${CONFIGS[$si]}"
	mon_args=()
	for kvp in ${mon[@]+"${mon[@]}"}; do mon_args+=(--monitor "$kvp"); done
	[ "${BENCH_OWN_MOUNTS:-0}" = 1 ] && mon_args+=(--own-mounts)
	echo "failover.sh: series $((si + 1)) of ${#CONFIGS[@]} ([monitor] ${CONFIGS[$si]:-defaults}): pair in $D, ports $P..$((P + 3)), $TRIALS trials" >&2
	"$PAIR" up "$D" --base-port "$P" --size 1G ${mon_args[@]+"${mon_args[@]}"} >/dev/null ||
		bench_die "the pair did not come up"
	trial=0
	(wait_or_fail 60 "b cannot take over a" can_take_over) || true
	for ((trial = 1; trial <= TRIALS; trial++)); do
		[ ! -e "$S.failed" ] || break
		(run_trial) && continue
		[ -e "$S.fail$trial" ] ||
			echo "trial $trial: ended by an unexpected error (see the messages above)" >"$S.fail$trial"
		KEEP=1
		echo "failover.sh: series $((si + 1)): $(head -1 "$S.fail$trial")" >&2
		cat "$S.fail$trial" >&2
		head -1 "$S.fail$trial" >>"$S.failures"
		echo "failover.sh: bringing the pair back to a known state..." >&2
		heal || {
			echo "trial $trial: the pair could not be brought back (both up, a serving vol-a, b able to take over); the series ends" >"$S.failed"
			cat "$S.failed" >&2
		}
	done
	takeovers "$S"
	"$PAIR" down "$D" >/dev/null 2>&1 || true
done
UPTIME_AFTER=$(uptime)

# Columns of $S.tsv.
C_DEAD=2 C_FENCE=3 C_REPLAY=4 C_SERVE=5 C_RESUME=6 C_GAP=7 C_BASE=8 C_GB=9 C_GBGAP=10 C_GBBASE=11
# pct TSV COL: "p50 p90 max" (nearest rank) of a column, ignoring "-".
pct() {
	cut -f"$2" "$1" | grep -v '^-\?$' | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "- - -"; exit }
			i50 = int(NR * 0.5); if (i50 < NR * 0.5) i50++
			i90 = int(NR * 0.9); if (i90 < NR * 0.9) i90++
			printf "%.0f %.0f %.0f\n", v[i50], v[i90], v[NR]
		}'
}
sum() { cut -f"$2" "$1" | awk '{ s += $1 } END { print s + 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "-"; else if (a / b < 10) printf "%.1f", a / b; else printf "%.0f", a / b }'; }
meets() { awk -v v="$1" -v t="$2" 'BEGIN { print (v != "-" && v <= t) ? "yes" : "no" }'; }
name() {
	if [ -n "${CONFIGS[$1]}" ]; then echo "\`${CONFIGS[$1]}\`"; else echo "defaults"; fi
}

BAD=0
summary() { # SERIES_INDEX
	local t=$W/series$1.tsv r n lost acked ek eg
	n=$(wc -l <"$t")
	echo "| measure ($n trials) | p50 ms | p90 ms | max ms | target |"
	echo "|---|---:|---:|---:|---|"
	read -r -a r <<<"$(pct "$t" $C_DEAD)"
	echo "| kill -> b declares a dead (takeover/marking) | ${r[0]} | ${r[1]} | ${r[2]} | p50 <= 150: $(meets "${r[0]}" 150) |"
	read -r -a r <<<"$(pct "$t" $C_FENCE)"
	echo "| kill -> mark written, fence wait starts | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct "$t" $C_REPLAY)"
	echo "| kill -> replay of a's log starts | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct "$t" $C_SERVE)"
	echo "| kill -> b serves vol-a (takeover/serving) | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct "$t" $C_RESUME)"
	echo "| kill -> first write acknowledged again | ${r[0]} | ${r[1]} | ${r[2]} | p50 <= 500: $(meets "${r[0]}" 500), max <= 1000: $(meets "${r[2]}" 1000) |"
	read -r -a r <<<"$(pct "$t" $C_GAP)"
	echo "| client's longest pause around the kill | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct "$t" $C_BASE)"
	echo "| client's longest pause in the ${PRE_MS} ms before the kill (noise floor) | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct "$t" $C_GB)"
	echo "| \`duetctl giveback\` -> a up | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct "$t" $C_GBGAP)"
	echo "| client's longest pause around the giveback | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct "$t" $C_GBBASE)"
	echo "| client's longest pause in the ${PRE_MS} ms before the giveback | ${r[0]} | ${r[1]} | ${r[2]} | |"
	echo
	lost=$(($(sum "$t" 13) + $(sum "$t" 15)))
	acked=$(($(sum "$t" 12) + $(sum "$t" 14)))
	ek=$(sum "$t" 16)
	eg=$(sum "$t" 17)
	if [ "$lost" != 0 ] || [ "$ek" != 0 ] || [ "$eg" != 0 ]; then BAD=1; fi
	echo "Acknowledged writes checked on read-back: $acked; lost: **$lost**. Writes that got an"
	echo "error reply instead of waiting: **$ek** around the kills, **$eg** around the givebacks."
	if [ -s "$W/series$1.errors" ]; then
		echo
		sed 's/^/- /' "$W/series$1.errors"
	fi
	local fa fb kills
	read -r fa fb kills <"$W/series$1.counts"
	echo
	echo "Takeovers without a kill (a live node taken over): **$fa** of b by a, **$fb** of a by b"
	echo "beyond the $kills kills."
	if [ "$fa" != 0 ]; then
		BAD=1
		echo
		head -5 "$W/series$1.false" | sed "s/^/- a: \`/; s/\$/\`/"
	fi
	if [ -s "$W/series$1.failures" ]; then
		BAD=1
		echo
		echo "Trials that did not complete (left out of the figures above; the pair was brought back"
		echo "to its start state before the next trial):"
		echo
		sed 's/^/- /' "$W/series$1.failures"
	fi
	if [ -e "$W/series$1.failed" ]; then
		echo
		echo "**The series ended early:** $(sed 's/^trial [0-9]*: //' "$W/series$1.failed")."
	fi
}
peers() {
	local hdr="| system | published default | what it bounds |" sep="|---|---:|---|" i d
	local -a dead=()
	for i in "${!CONFIGS[@]}"; do
		d=$(pct "$W/series$i.tsv" $C_DEAD)
		dead+=("${d%% *}")
		hdr+=" duet p50, series $((i + 1)) | default / duet |"
		sep+="---:|---:|"
	done
	echo "$hdr"
	echo "$sep"
	row() { # SYSTEM DEFAULT_MS TEXT WHAT
		local l="| $1 | $3 | $4 |"
		for i in "${!CONFIGS[@]}"; do l+=" ${dead[$i]} ms | **$(ratio "$2" "${dead[$i]}")x** |"; done
		echo "$l"
	}
	row "Corosync (totem)" 3000 "\`token\` 3000 ms" "a silent member is declared lost"
	row "DRBD" 500 "\`ping-timeout\` 500 ms" "an unanswered keep-alive: the peer is lost"
	row "DRBD" 6000 "\`timeout\` 6000 ms" "an unanswered request: the peer is lost"
	row "NetApp ONTAP HA pair" 15000 "\`-detection-time\` 15000 ms" "an unresponsive partner is taken over"
}
trials_table() { # SERIES_INDEX
	echo "| trial | dead | fence wait | replay | serving | write again | pause | pause before | giveback | giveback pause | pause before | acked | lost | errors |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d |\n",
		$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 + $14, $13 + $15, $16 + $17 }' "$W/series$1.tsv"
}
cmdline() {
	local e=() c
	[ "$QD" = 8 ] || e+=("BENCH_QD=$QD")
	[ "$RATE" = 2000 ] || e+=("BENCH_RATE=$RATE")
	[ "$PRE_MS" = 500 ] || e+=("BENCH_PRE_MS=$PRE_MS")
	[ "$POST_MS" = 500 ] || e+=("BENCH_POST_MS=$POST_MS")
	e+=(bench/failover.sh --write-doc --trials "$TRIALS")
	if [ ${#CONFIGS[@]} -gt 1 ] || [ -n "${CONFIGS[0]}" ]; then
		for c in "${CONFIGS[@]}"; do e+=(--config "\"$c\""); done
	fi
	echo "${e[*]}"
}
section() {
	local i
	echo "## Failover"
	echo
	echo "What a client sees when a node dies. A local pair on loopback (\`tools/duet-pair\`, one"
	echo "interconnect link, tcp;ofi_rxm). A client (\`bench/ackclient.py\`) writes 4 KiB blocks to"
	echo "vol-a through **node b's proxy port**, $QD writes in flight, at most $RATE per second, and"
	echo "stamps every acknowledgement with the wall clock. Each trial: ${PRE_MS} ms of load, then"
	echo "SIGKILL of node a (stamped right before kill(2)); b's HA log lines (microsecond stamps) give"
	echo "the takeover's steps. The interruption is the client's longest pause between two"
	echo "acknowledgements that ends after the kill and starts before b's \`takeover/serving\` line"
	echo "(later pauses are the machine's, not the failover's); its end is \"first write again\"."
	echo "The giveback's pause is measured the same way up to a's \`up\` line. ${POST_MS} ms after b serves"
	echo "vol-a the client stops and every block it wrote is read back through b's proxy port. Then a"
	echo "restarts, waits for giveback (\`waiting_for_giveback\`), the client writes again, \`duetctl"
	echo "giveback\` runs on b, and once both are \`up\` the blocks of both runs are read back through"
	echo "a's own port. The next trial starts when b's copy of a's log is \`in_sync\` again. The"
	echo "\"noise floor\" rows show how long the client pauses anyway on this machine."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(bench_machine)"
	echo "- duet: $(bench_commit "$ROOT" "$build")"
	echo "- load: \`uptime\` before: \`${UPTIME_BEFORE# }\`; after: \`${UPTIME_AFTER# }\`"
	echo "- command: \`$(cmdline)\`"
	echo
	for i in "${!CONFIGS[@]}"; do
		echo "### Series $((i + 1)): [monitor] $(name "$i")"
		echo
		summary "$i"
		echo
	done
	echo "Reading the numbers: b declares a dead only when every link has been silent for"
	echo "\`deadline_ms\` *and* a's mailbox has shown no new record for \`mailbox_deadline_ms\`, read"
	echo "every \`mailbox_ms\`; with the defaults (150, 150, 50) that is 150 to 250 ms after the last"
	echo "heartbeat by construction ([FAILOVER.md](FAILOVER.md), \"Timeline of a SIGKILL\"), so the"
	echo "150 ms target for kill -> dead needs lower settings. The fence wait adds \`lease_ms +"
	echo "fence_margin_ms\` (150 ms by default); the replay of b's copy of a's log and the proxy's"
	echo "switch to local service take the rest. Settings below the defaults leave less room for the"
	echo "machine's own stalls: a node starved for longer than both deadlines at once is taken over"
	echo "(safely, but needlessly; FAILOVER.md, \"Settings\"), which the \"takeovers without a kill\""
	echo "line of each series counts."
	echo
	echo "### Against the peers"
	echo
	echo "The peers were not run: there is no Corosync, DRBD or ONTAP pair on this machine. The"
	echo "ratios divide each peer's *published default* (sources in [FAILOVER.md](FAILOVER.md),"
	echo "\"Against the defaults of peers\") by duet's *measured* median kill -> dead of each series of this run. A"
	echo "default is the time after which the peer starts to act, not a measurement; the peers' real"
	echo "failovers add fencing and resource starts on top (Pacemaker's \`stonith-timeout\` defaults"
	echo "to 60 s), and their defaults are chosen for shared, possibly congested networks, where"
	echo "duet's interconnect is dedicated and a takeover also needs the partner silent in its"
	echo "mailbox. Each peer can be tuned lower."
	echo
	peers
	echo
	for i in "${!CONFIGS[@]}"; do
		echo "### Per trial, series $((i + 1))"
		echo
		echo "ms after the kill (dead, fence wait, replay, serving, write again) or after \`duetctl"
		echo "giveback\` (giveback: a's \`up\` line); pauses are the client's longest gap between"
		echo "acknowledgements, \"before\" in the ${PRE_MS} ms before the event:"
		echo
		trials_table "$i"
		echo
	done
}

section >"$W/section.md"
echo
sed -n '/^### /,$p' "$W/section.md"
echo "uptime before: $UPTIME_BEFORE"
echo "uptime after:  $UPTIME_AFTER"
if [ $write_doc = 1 ]; then
	bench_write_section "$ROOT/docs/BENCHMARKS.md" Failover "$W/section.md"
	echo "wrote the Failover section of docs/BENCHMARKS.md" >&2
fi
for si in "${!CONFIGS[@]}"; do
	[ ! -s "$W/series$si.failures" ] || BAD=1
	[ ! -s "$W/series$si.false" ] || BAD=1
	[ -z "$(awk -F'\t' '$13 + $15 + $16 + $17 > 0' "$W/series$si.tsv")" ] || BAD=1
done
if [ $BAD = 1 ]; then
	KEEP=1
	exit 1
fi
