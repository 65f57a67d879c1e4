#!/usr/bin/env bash
# Run duet's whole test suite against one or more build dirs.
#
#   tests/run.sh [--asan] [--quick] [--no-fuzz] [-j N] [BUILD_DIR...]
#
# For each BUILD_DIR (default: build): bring it up to date with ninja, run the
# unit tests (meson test, each test one pass or fail), then every
# tests/integration/*.sh and tests/fault/*.sh (each one test). On a build
# without sanitizers, every tests/fault/failover-*.sh runs a second time on
# the two-host stand-in (DUET_OWN_MOUNTS=1, tests/lib.sh), reported as e.g.
# "fault/failover-stop[own-mounts]" (skipped with the reason where /dev/fuse
# or fusermount3 is missing), as does every fault script with a header line
# "# also on own mounts"; a script that runs on own mounts anyway (it says
# "own mounts only" in its header) runs once, named the same way. One with a
# header line "# normal build only: WHY" is skipped on a sanitizer build
# (reported with WHY). Then, once, the bounded
# fuzz run (tests/fuzz/run.sh) if it exists.
#
#   --asan     also run against build-asan (ASan+UBSan), setting it up if missing
#   --quick    smaller data sizes in the scripts, no fuzz run
#   --no-fuzz  skip the fuzz run
#   -j N       run up to N scripts at a time (default 1; each gets its own ports)
#
# Env: DUET_PORT_BASE (default 23000; script i gets DUET_PORT_BASE + 20*i),
#      FUZZ_SECONDS (default 60), DUET_KEEP_TMP=1 keeps each test's temp dir,
#      DUET_SCRIPT_TIMEOUT (seconds per script, default 300, x3 under ASan).
# Logs: $TMPDIR/duet-run.XXXX/ (kept when something failed).
# Last line: "N passed, N failed[, N skipped]"; exit status 1 if any failed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
asan=0 quick=0 fuzz=1 jobs=${DUET_JOBS:-1}
dirs=()
while [ $# -gt 0 ]; do
	case $1 in
	--asan) asan=1 ;;
	--quick) quick=1 fuzz=0 ;;
	--no-fuzz) fuzz=0 ;;
	-j) jobs=$2; shift ;;
	-j*) jobs=${1#-j} ;;
	-h | --help)
		sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	-*)
		echo "run.sh: unknown option $1" >&2
		exit 2
		;;
	*) dirs+=("$1") ;;
	esac
	shift
done
[ ${#dirs[@]} -gt 0 ] || dirs=(build)

abs() {
	case $1 in
	/*) echo "$1" ;;
	*) echo "$PWD/$1" ;;
	esac
}
for i in "${!dirs[@]}"; do dirs[$i]=$(abs "${dirs[$i]}"); done
if [ $asan = 1 ]; then
	have=0
	for d in "${dirs[@]}"; do [ "$d" = "$ROOT/build-asan" ] && have=1; done
	[ $have = 1 ] || dirs+=("$ROOT/build-asan")
fi

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/duet-run.XXXXXX")
PASS=0 FAIL=0 SKIP=0
FAILED=()
port_next=${DUET_PORT_BASE:-23000}
RUN_START=$SECONDS

if [ -t 1 ]; then
	G=$'\e[32m' R=$'\e[31m' Y=$'\e[33m' N=$'\e[0m'
else
	G="" R="" Y="" N=""
fi

result() { # result pass|fail|skip NAME SECS [NOTE]
	case $1 in
	pass) PASS=$((PASS + 1)); printf '  %sPASS%s %-40s %4ss %s\n' "$G" "$N" "$2" "$3" "${4:-}" ;;
	skip) SKIP=$((SKIP + 1)); printf '  %sSKIP%s %-40s %4ss %s\n' "$Y" "$N" "$2" "$3" "${4:-}" ;;
	*) FAIL=$((FAIL + 1)); FAILED+=("$2"); printf '  %sFAIL%s %-40s %4ss %s\n' "$R" "$N" "$2" "$3" "${4:-}" ;;
	esac
}

is_sanitized() {
	local v
	v=$(meson introspect "$1" --buildoptions 2>/dev/null |
		jq -r '.[] | select(.name=="b_sanitize") | .value' 2>/dev/null)
	[ -n "$v" ] && [ "$v" != none ]
}

# prepare DIR: set up (build-asan only) and build; 0 when usable.
prepare() {
	local d=$1 log=$2
	if [ ! -e "$d/build.ninja" ]; then
		if [ "$d" = "$ROOT/build-asan" ]; then
			meson setup "$d" "$ROOT" --werror -Db_sanitize=address,undefined -Db_lundef=false >"$log" 2>&1 || return 1
		else
			meson setup "$d" "$ROOT" --werror >"$log" 2>&1 || return 1
		fi
	fi
	ninja -C "$d" >>"$log" 2>&1
}

# unit_tests DIR TAG: meson test; count each test.
unit_tests() {
	local d=$1 tag=$2
	local log=$LOGDIR/$tag-unit.log t0=$SECONDS rc=0
	meson test -C "$d" --print-errorlogs >"$log" 2>&1 || rc=$?
	local ok xfail fail xpass skip tout
	ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$log" | tail -1)
	xfail=$(sed -n 's/^Expected Fail: *\([0-9]*\).*/\1/p' "$log" | tail -1)
	fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$log" | tail -1)
	xpass=$(sed -n 's/^Unexpected Pass: *\([0-9]*\).*/\1/p' "$log" | tail -1)
	skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
	tout=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$log" | tail -1)
	if [ -z "$ok" ]; then
		result fail "$tag unit tests (meson test did not run)" $((SECONDS - t0))
		tail -n 40 "$log" | sed 's/^/    /'
		return
	fi
	local p=$((ok + ${xfail:-0})) f=$((${fail:-0} + ${xpass:-0} + ${tout:-0}))
	PASS=$((PASS + p))
	FAIL=$((FAIL + f))
	SKIP=$((SKIP + ${skip:-0}))
	printf '  %-45s %4ss  %d passed, %d failed, %d skipped\n' "$tag unit tests" $((SECONDS - t0)) "$p" "$f" "${skip:-0}"
	if [ "$f" -gt 0 ] || [ $rc -ne 0 ]; then
		[ "$f" -gt 0 ] || FAIL=$((FAIL + 1))
		FAILED+=("$tag unit tests: $(grep -E '^ *[0-9]+/[0-9]+ .* (FAIL|TIMEOUT|UNEXPECTEDPASS|ERROR) ' "$log" | awk '{print $2}' | tr '\n' ' ')")
		tail -n 150 "$log" | sed 's/^/    | /'
	fi
}

# Scripts run in the background (up to $jobs at once); a finished one is
# reported by report_script.
declare -A RUNNING=() # pid -> "tag|name|log|start"
report_script() {
	local pid=$1 rc=$2 tag name log t0
	IFS='|' read -r tag name log t0 <<<"${RUNNING[$pid]}"
	unset "RUNNING[$pid]"
	local secs=$((SECONDS - t0))
	if [ "$rc" -eq 0 ]; then
		result pass "$tag $name" $secs
	elif [ "$rc" -eq 77 ]; then
		result skip "$tag $name" $secs "$(grep -m1 '^SKIP:' "$log" | cut -c7-)"
	else
		local why=""
		[ "$rc" -eq 124 ] && why="(timed out)"
		result fail "$tag $name" $secs "$why"
		sed 's/^/    | /' "$log" | tail -n 120
	fi
}

reap_one() {
	local pid rc=0
	wait -n -p pid "${!RUNNING[@]}" || rc=$?
	[ -n "${pid:-}" ] || return 0
	report_script "$pid" "$rc"
}

# run_scripts DIR TAG SCALE: every script (each entry "script|layout"; the
# own-mounts layout only without sanitizers, to keep the suite time down).
run_scripts() {
	local d=$1 tag=$2 scale=$3 s name ent layout
	local limit=$((${DUET_SCRIPT_TIMEOUT:-300} * scale))
	local -a list=()
	for s in "$ROOT"/tests/integration/*.sh "$ROOT"/tests/fault/*.sh; do
		[ -e "$s" ] && list+=("$s|plain")
	done
	if [ "$scale" = 1 ]; then
		for s in "$ROOT"/tests/fault/failover-*.sh $(grep -l '^# also on own mounts' "$ROOT"/tests/fault/*.sh); do
			[ -e "$s" ] || continue
			# "own mounts only" scripts run once anyway; "not on own mounts"
			# ones say why in that header line.
			grep -q '^# .*own mounts only\|^# not on own mounts' "$s" || list+=("$s|own-mounts")
		done
	fi
	for ent in "${list[@]}"; do
		s=${ent%|*} layout=${ent##*|}
		name=$(basename "$(dirname "$s")")/$(basename "$s" .sh)
		[ "$layout" = plain ] || name+="[$layout]"
		# A script that runs on own mounts anyway says so in its name too.
		[ "$layout" != plain ] || ! grep -q '^# .*own mounts only' "$s" || name+="[own-mounts]"
		# "# normal build only: WHY" in the header: timing and liveness
		# scenarios whose code the unit and other fault tests run under the
		# sanitizers; twice the minutes there would break the suite's budget.
		if [ "$scale" != 1 ] && grep -q '^# normal build only' "$s"; then
			result skip "$tag $name" 0 "$(grep -m1 '^# normal build only' "$s" | cut -c3-)"
			continue
		fi
		while [ ${#RUNNING[@]} -ge "$jobs" ]; do reap_one; done
		local log=$LOGDIR/$tag-${name//\//-}.log
		(
			export DUET_BUILD=$d DUET_PORT_BASE=$port_next DUET_TIMEOUT_SCALE=$scale DUET_QUICK=$quick
			[ "$layout" = plain ] || export DUET_OWN_MOUNTS=1
			exec timeout -k 10 "$limit" bash "$s"
		) >"$log" 2>&1 </dev/null &
		RUNNING[$!]="$tag|$name|$log|$SECONDS"
		port_next=$((port_next + 20))
	done
	while [ ${#RUNNING[@]} -gt 0 ]; do reap_one; done
}

for d in "${dirs[@]}"; do
	tag=$(basename "$d")
	echo "== $tag ($d)"
	t0=$SECONDS
	if ! prepare "$d" "$LOGDIR/$tag-build.log"; then
		result fail "$tag build" $((SECONDS - t0))
		tail -n 40 "$LOGDIR/$tag-build.log" | sed 's/^/    /'
		continue
	fi
	scale=1
	is_sanitized "$d" && scale=3
	unit_tests "$d" "$tag"
	run_scripts "$d" "$tag" "$scale"
	echo "   $tag: $((SECONDS - t0))s"
done

if [ $fuzz = 1 ] && [ -x "$ROOT/tests/fuzz/run.sh" ]; then
	echo "== fuzz"
	t0=$SECONDS
	secs=${FUZZ_SECONDS:-60}
	log=$LOGDIR/fuzz.log
	rc=0
	FUZZ_SECONDS=$secs timeout -k 10 $((secs * 3 + 300)) "$ROOT/tests/fuzz/run.sh" "$secs" >"$log" 2>&1 </dev/null || rc=$?
	if [ $rc -eq 0 ]; then
		result pass "fuzz ($secs s)" $((SECONDS - t0))
	elif [ $rc -eq 77 ]; then
		result skip "fuzz" $((SECONDS - t0)) "$(tail -n1 "$log")"
	else
		result fail "fuzz ($secs s)" $((SECONDS - t0))
		tail -n 60 "$log" | sed 's/^/    | /'
	fi
fi

if [ $FAIL -gt 0 ]; then
	echo "failed:"
	for f in "${FAILED[@]}"; do echo "  $f"; done
	echo "== total $((SECONDS - RUN_START))s, logs kept in $LOGDIR"
else
	echo "== total $((SECONDS - RUN_START))s"
	[ "${DUET_KEEP_LOGS:-0}" = 1 ] && echo "logs in $LOGDIR" || rm -rf "$LOGDIR"
fi
line="$PASS passed, $FAIL failed"
[ $SKIP -gt 0 ] && line+=", $SKIP skipped"
echo "$line"
[ $FAIL -eq 0 ]
