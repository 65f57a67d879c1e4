#!/usr/bin/env bash
# Failover benchmark: SIGKILL node a of a local pair while a client writes to
# vol-a through node b's proxy port, TRIALS times, and measure
#   kill -> dead      b decides that a is dead and starts the takeover (the
#                     time stamp of b's log line "ha: takeover/marking")
#   kill -> serving   b serves vol-a itself ("ha: takeover/serving")
#   kill -> write     the client's first acknowledged write after its
#                     longest pause around the kill (the pause itself is
#                     "interruption")
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
#   bench/failover.sh [--write-doc] [--trials N] [BUILD_DIR]   (default build)
#
# Env: BENCH_TRIALS (20), BENCH_PORT_BASE (26700: uses P..P+3 and
# P+100..P+101), BENCH_DIR ($TMPDIR or /tmp), BENCH_QD (client writes in
# flight, 8), BENCH_RATE (client writes per second, 2000; 0 = no limit),
# BENCH_PRE_MS (500), BENCH_POST_MS (500), BENCH_MONITOR ("KEY=VALUE ..."
# for [monitor], default none: the defaults), BENCH_KEEP=1 keeps the
# directory. Exit status 1 when a trial does not complete (no takeover, a
# node hung or died, the client's connection broke) or when the client got
# an error reply or lost an acknowledged write; timings never fail it.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=failover.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

write_doc=0
build=build
TRIALS=${BENCH_TRIALS:-20}
while [ $# -gt 0 ]; do
	case $1 in
	--write-doc) write_doc=1 ;;
	--trials)
		TRIALS=${2:?--trials needs N}
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
read -r -a MON <<<"${BENCH_MONITOR:-}"

bench_need jq python3 awk
if ! [ -x "$build/src/node/duetd" ] || ! [ -x "$DUETCTL" ]; then
	echo "failover.sh: no duetd/duetctl in $build (build first)" >&2
	exit 2
fi
[ -n "${EPOCHREALTIME:-}" ] || {
	echo "failover.sh: needs bash 5 (EPOCHREALTIME)" >&2
	exit 2
}
bench_sanitizer_warn "$build"
export DUET_BUILD=$build

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/duet-fobench.XXXXXX")
D=$W/pair
KEEP=${BENCH_KEEP:-0}
CPID=""
cleanup() {
	[ -z "$CPID" ] || kill "$CPID" 2>/dev/null || true
	[ ! -d "$D" ] || "$PAIR" down "$D" >/dev/null 2>&1 || true
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

# fail MSG: a trial did not complete. Keep everything and show the logs.
fail() {
	KEEP=1
	echo "failover.sh: trial $trial: $*" >&2
	local n
	for n in a b; do
		echo "--- $n: $(ctl $n status --json 2>/dev/null | jq -c '{ha: (.ha | {state, phase, reason, partner}), mirror: .mirror.state}' 2>/dev/null || echo unreachable)" >&2
		tail -15 "$D/$n.log" >&2
	done
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

# client_start LOG: a write load on vol-a through b's proxy port; returns
# once the first write was acknowledged.
client_start() {
	rm -f "$W/stop"
	python3 "$CLIENT" write --port $((P + 3)) --export vol-a --log "$1" --qd "$QD" \
		--rate "$RATE" --stop-file "$W/stop" >"$1.out" 2>&1 &
	CPID=$!
	wait_or_fail 30 "the client got no acknowledgement through b's proxy port" \
		grep -q '^A ' "$1"
}
# client_stop LOG: stop the load, wait for it to drain; fails the trial on a
# broken connection or writes that never complete. Error replies are counted
# (the "errors=" of LOG.out), not fatal: the run goes on and reports them.
client_stop() {
	touch "$W/stop"
	local deadline=$((SECONDS + 30))
	while kill -0 "$CPID" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || {
			kill "$CPID"
			CPID=""
			fail "the client's writes did not complete within 30 s"
		}
		sleep 0.02
	done
	wait "$CPID" || true
	CPID=""
	grep -q '^acked=.* errors=[0-9]* sent=[0-9]*$' "$1.out" || fail "the client failed: $(tail -3 "$1.out")"
}
# errors LOG: error replies the client got, and their errno values.
errors() {
	local n
	n=$(kv errors "$(tail -1 "$1.out")")
	if [ "$n" != 0 ]; then
		echo "trial $trial: $n error replies to $(basename "$1"): errno $(awk '$1 == "E" { print $4 }' "$1" | sort | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')" >>"$W/errors.txt"
	fi
	echo "$n"
}
# The client's log is written in 64 KiB blocks: "first ack" above needs one.
# At BENCH_RATE the first block lands within a second; with a low rate it
# may take longer, which only delays the trial's start.

ms_sleep() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }

echo "failover.sh: pair in $D, ports $P..$((P + 3)), $TRIALS trials" >&2
UPTIME_BEFORE=$(uptime)
mon_args=()
for kvp in "${MON[@]}"; do mon_args+=(--monitor "$kvp"); done
"$PAIR" up "$D" --base-port "$P" --size 1G ${mon_args[@]+"${mon_args[@]}"} >/dev/null ||
	bench_die "the pair did not come up"
trial=0
wait_or_fail 60 "b cannot take over a" can_take_over

RES=$W/results.tsv
: >"$RES"
for ((trial = 1; trial <= TRIALS; trial++)); do
	# --- kill a under load, b takes over ---
	client_start "$W/w$trial-1.log"
	t_pre=$EPOCHREALTIME
	ms_sleep "$PRE_MS"
	off_b=$(fsize "$D/b.log")
	pid_a=$(cat "$D/a.pid")
	t_kill_sod=$(now_sod)
	t_kill=$EPOCHREALTIME
	kill -KILL "$pid_a"
	wait_ha b "$off_b" "takeover/serving" 30 "b did not serve vol-a after a's kill"
	bench_wait 5 bash -c "! kill -0 $pid_a" || fail "a ($pid_a) outlived SIGKILL"
	ms_sleep "$POST_MS"
	client_stop "$W/w$trial-1.log"
	ev=$(events "$D/b.log" "$off_b" "$t_kill_sod")
	g=$(python3 "$CLIENT" gap --log "$W/w$trial-1.log" --from "$t_kill") || fail "no acknowledgement after the kill"
	base=$(python3 "$CLIENT" gap --log "$W/w$trial-1.log" --from "$t_pre" --to "$t_kill" --inside)
	c1=$(python3 "$CLIENT" check --log "$W/w$trial-1.log" --port $((P + 3)) --export vol-a 2>"$W/c$trial-1.err") ||
		fail "acknowledged writes lost after the takeover: $c1 $(head -3 "$W/c$trial-1.err")"

	# --- restart a, it waits; give back ---
	off_a=$(fsize "$D/a.log")
	"$PAIR" start "$D" a >/dev/null || fail "a did not restart"
	wait_ha a "$off_a" "waiting_for_giveback/[a-z_]+" 60 "a does not wait for giveback"
	client_start "$W/w$trial-2.log"
	t_pre2=$EPOCHREALTIME
	ms_sleep "$PRE_MS"
	off_a=$(fsize "$D/a.log")
	off_b=$(fsize "$D/b.log")
	t_gb_sod=$(now_sod)
	t_gb=$EPOCHREALTIME
	ctl b giveback >"$W/gb$trial.out" 2>&1 || fail "giveback refused: $(cat "$W/gb$trial.out")"
	wait_ha a "$off_a" "up/[a-z_]+" 60 "a is not up after the giveback"
	wait_ha b "$off_b" "up/[a-z_]+" 60 "b is not up after the giveback"
	ms_sleep "$POST_MS"
	client_stop "$W/w$trial-2.log"
	ev_a=$(events "$D/a.log" "$off_a" "$t_gb_sod")
	g2=$(python3 "$CLIENT" gap --log "$W/w$trial-2.log" --from "$t_gb") || fail "no acknowledgement after the giveback"
	base2=$(python3 "$CLIENT" gap --log "$W/w$trial-2.log" --from "$t_pre2" --to "$t_gb" --inside)
	c2=$(python3 "$CLIENT" check --log "$W/w$trial-1.log,$W/w$trial-2.log" --port "$P" --export vol-a 2>"$W/c$trial-2.err") ||
		fail "acknowledged writes lost after the giveback: $c2 $(head -3 "$W/c$trial-2.err")"
	# The next kill needs b's copy of a's log in sync again.
	wait_or_fail 60 "b cannot take over a again" can_take_over

	row=("$trial" "$(first "$ev" takeover/marking)" "$(first "$ev" takeover/fence_wait)"
		"$(first "$ev" takeover/replaying)" "$(first "$ev" takeover/serving)"
		"$(kv resume_ms "$g")" "$(kv gap_ms "$g")" "$(kv gap_ms "$base")"
		"$(first "$ev_a" up/none)" "$(kv gap_ms "$g2")" "$(kv gap_ms "$base2")"
		"$(kv acked "$c1")" "$(kv lost "$c1")" "$(kv acked "$c2")" "$(kv lost "$c2")"
		"$(errors "$W/w$trial-1.log")" "$(errors "$W/w$trial-2.log")")
	(IFS=$'\t'; echo "${row[*]}") >>"$RES"
	echo "trial $trial: dead $(first "$ev" takeover/marking) ms, serving $(first "$ev" takeover/serving) ms, write again $(kv resume_ms "$g") ms (pause $(kv gap_ms "$g") ms), giveback $(first "$ev_a" up/none) ms (pause $(kv gap_ms "$g2") ms), lost $(kv lost "$c1")+$(kv lost "$c2")" >&2
done
UPTIME_AFTER=$(uptime)

# Columns of results.tsv.
C_DEAD=2 C_FENCE=3 C_REPLAY=4 C_SERVE=5 C_RESUME=6 C_GAP=7 C_BASE=8 C_GB=9 C_GBGAP=10 C_GBBASE=11
# pct COL: "p50 p90 max" (nearest rank) of a column, ignoring "-".
pct() {
	cut -f"$1" "$RES" | grep -v '^-$' | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "- - -"; exit }
			i50 = int(NR * 0.5); if (i50 < NR * 0.5) i50++
			i90 = int(NR * 0.9); if (i90 < NR * 0.9) i90++
			printf "%.0f %.0f %.0f\n", v[i50], v[i90], v[NR]
		}'
}
col() { awk -v n="$2" '{ print $n }' <<<"$(pct "$1")"; }
sum() { cut -f"$1" "$RES" | awk '{ s += $1 } END { print s + 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "-" }'; }
meets() { awk -v v="$1" -v t="$2" 'BEGIN { print (v != "-" && v <= t) ? "yes" : "no" }'; }

LOST=$(($(sum 13) + $(sum 15)))
ERR_KILL=$(sum 16)
ERR_GB=$(sum 17)
ACKED=$(($(sum 12) + $(sum 14)))
DEAD50=$(col $C_DEAD 1)

summary() {
	echo "| measure | p50 ms | p90 ms | max ms | target |"
	echo "|---|---:|---:|---:|---|"
	local r
	read -r -a r <<<"$(pct $C_DEAD)"
	echo "| kill -> b declares a dead (takeover/marking) | ${r[0]} | ${r[1]} | ${r[2]} | p50 <= 150: $(meets "${r[0]}" 150) |"
	read -r -a r <<<"$(pct $C_FENCE)"
	echo "| kill -> mark written, fence wait starts | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct $C_REPLAY)"
	echo "| kill -> replay of a's log starts | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct $C_SERVE)"
	echo "| kill -> b serves vol-a (takeover/serving) | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct $C_RESUME)"
	echo "| kill -> first write acknowledged again | ${r[0]} | ${r[1]} | ${r[2]} | p50 <= 500: $(meets "${r[0]}" 500), max <= 1000: $(meets "${r[2]}" 1000) |"
	read -r -a r <<<"$(pct $C_GAP)"
	echo "| client's longest pause around the kill | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct $C_BASE)"
	echo "| client's longest pause in the ${PRE_MS} ms before the kill (noise floor) | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct $C_GB)"
	echo "| \`duetctl giveback\` -> a up | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct $C_GBGAP)"
	echo "| client's longest pause around the giveback | ${r[0]} | ${r[1]} | ${r[2]} | |"
	read -r -a r <<<"$(pct $C_GBBASE)"
	echo "| client's longest pause in the ${PRE_MS} ms before the giveback | ${r[0]} | ${r[1]} | ${r[2]} | |"
	echo
	echo "Acknowledged writes checked on read-back: $ACKED; lost: **$LOST**. Writes that got an"
	echo "error reply instead of waiting: **$ERR_KILL** around the kills, **$ERR_GB** around the givebacks."
	if [ -s "$W/errors.txt" ]; then
		echo
		sed 's/^/- /' "$W/errors.txt"
	fi
}
peers() {
	echo "| system | published default | what it bounds | duet p50 here | default / duet |"
	echo "|---|---:|---|---:|---:|"
	echo "| Corosync (totem) | \`token\` 3000 ms | a silent member is declared lost | kill -> dead $DEAD50 ms | $(ratio 3000 "$DEAD50")x |"
	echo "| DRBD | \`ping-timeout\` 500 ms | a keep-alive ping unanswered: the peer is lost | kill -> dead $DEAD50 ms | $(ratio 500 "$DEAD50")x |"
	echo "| DRBD | \`timeout\` 6000 ms | a request unanswered: the peer is lost | kill -> dead $DEAD50 ms | $(ratio 6000 "$DEAD50")x |"
	echo "| NetApp ONTAP HA pair | \`-detection-time\` 15000 ms | an unresponsive partner is taken over | kill -> dead $DEAD50 ms | $(ratio 15000 "$DEAD50")x |"
}
trials_table() {
	echo "| trial | dead | fence wait | replay | serving | write again | pause | pause before | giveback | giveback pause | pause before | acked | lost | errors |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d |\n",
		$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 + $14, $13 + $15, $16 + $17 }' "$RES"
}
settings() {
	local s="defaults (heartbeat_ms 20, deadline_ms 150, mailbox_ms 50, mailbox_deadline_ms 150, lease_ms 100, fence_margin_ms 50)"
	[ ${#MON[@]} -eq 0 ] || s="defaults except ${MON[*]}"
	echo "$s"
}
section() {
	echo "## Failover"
	echo
	echo "What a client sees when a node dies. A local pair on loopback (\`tools/duet-pair\`, one"
	echo "interconnect link, tcp;ofi_rxm), [monitor] $(settings). A client"
	echo "(\`bench/ackclient.py\`) writes 4 KiB blocks to vol-a through **node b's proxy port**,"
	echo "$QD writes in flight, at most $RATE per second, and stamps every acknowledgement with"
	echo "the wall clock. Each of $TRIALS trials: ${PRE_MS} ms of load, then SIGKILL of node a (stamped"
	echo "right before kill(2)); b's HA log lines (microsecond stamps) give the takeover's steps;"
	echo "the client's longest pause between two acknowledgements around the kill is the"
	echo "interruption, and its end is \"first write again\". ${POST_MS} ms after b serves vol-a the"
	echo "client stops and every block it wrote is read back through b's proxy port. Then a restarts,"
	echo "waits for giveback (\`waiting_for_giveback\`), the client writes again, \`duetctl giveback\`"
	echo "runs on b, and once both are \`up\` the blocks of both runs are read back through a's own"
	echo "port. The next trial starts when b's copy of a's log is \`in_sync\` again."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(bench_machine)"
	echo "- duet: $(bench_commit "$ROOT" "$build")"
	echo "- load: \`uptime\` before: \`${UPTIME_BEFORE}\`; after: \`${UPTIME_AFTER}\`"
	echo "- command: \`$(cmdline)bench/failover.sh --write-doc --trials $TRIALS\`"
	echo
	summary
	echo
	echo "**Against the peers.** The peers were not run here: there is no Corosync, DRBD or"
	echo "ONTAP pair on this machine. The ratios below divide each peer's *published default*"
	echo "timeout (sources in [FAILOVER.md](FAILOVER.md), \"Against the defaults of peers\") by"
	echo "duet's *measured* median kill -> dead. A default is the time after which the peer"
	echo "starts to act, not a measurement; the peers' real failovers add fencing and resource"
	echo "starts on top (Pacemaker's \`stonith-timeout\` defaults to 60 s), and their defaults are"
	echo "chosen for shared, possibly congested networks, where duet's interconnect is dedicated and"
	echo "a takeover also needs the partner silent in its mailbox. Each peer can be tuned lower."
	echo
	peers
	echo
	echo "Per trial, ms after the kill (dead, fence wait, replay, serving, write again) or after"
	echo "\`duetctl giveback\` (giveback: a's \`up\` line); pauses are the client's longest gap"
	echo "between acknowledgements, \"before\" in the ${PRE_MS} ms before the event:"
	echo
	trials_table
	echo
}
cmdline() {
	local e=()
	[ "$QD" = 8 ] || e+=("BENCH_QD=$QD")
	[ "$RATE" = 2000 ] || e+=("BENCH_RATE=$RATE")
	[ ${#MON[@]} -eq 0 ] || e+=("BENCH_MONITOR=\"${MON[*]}\"")
	[ ${#e[@]} -eq 0 ] || echo "${e[*]} "
}

echo
summary
echo
peers
echo
trials_table
echo
echo "uptime before: $UPTIME_BEFORE"
echo "uptime after:  $UPTIME_AFTER"
if [ $write_doc = 1 ]; then
	section >"$W/section.md"
	bench_write_section "$ROOT/docs/BENCHMARKS.md" Failover "$W/section.md"
	echo "wrote the Failover section of docs/BENCHMARKS.md" >&2
fi
if [ "$LOST" != 0 ] || [ "$ERR_KILL" != 0 ] || [ "$ERR_GB" != 0 ]; then
	KEEP=1
	exit 1
fi
