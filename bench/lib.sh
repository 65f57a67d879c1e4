# shellcheck shell=bash
# Helpers shared by the bench/*.sh scripts (sourced, not run).
# Each script sets BENCH_NAME (for messages) before sourcing this file.
#
# It also sources tests/node-config.sh (write_node_config: the one duetd INI
# writer), tests/netns.sh (netns_pair, veth_link, netns_cleanup) and
# tests/tls-pki.sh (tls_make_pki, tls_make_psk: certificates and keys), and
# puts tools/python (duet_nbd.py, the NBD client module) on PYTHONPATH.
#
# Functions:
#   bench_die MSG / bench_need TOOL... / bench_need_fio_nbd / bench_need_build BUILD
#   bench_wait SECONDS CMD...            poll CMD until it succeeds
#   bench_sanitizer_warn BUILD / bench_machine / bench_commit ROOT BUILD
#   bench_write_section DOC TITLE FILE   replace a "## TITLE" section of DOC
#   bench_args ARGS...                   [--write-doc] [BUILD_DIR]: write_doc,
#                                        build, DUETD, DUETCTL
#   bench_need_fio_bench TOOL...         the checks of a fio benchmark: TOOLs, fio's
#                                        nbd engine, duetd in $build, sanitizer warning
#   bench_workdir PREFIX                 W, PIDS, BENCH_RM and the exit trap
#                                        (bench_cleanup)
#   bench_listening PORT / bench_wait_port PORT PID NAME
#   bench_nbdkit PORT SIZE               nbdkit's file plugin, started, listening
#   bench_prefill NAME URI SIZE          write a volume fully once with fio
#   bench_fio NAME ARGS URI OUT LABEL [FIO_ARGS...]   one time-based fio job
#   bench_metric FILE SIDE               "iops mibs p50_us p99_us" of a result
#   bench_cpu FILE SIDE                  "busy% cpu_us_per_op NAME=us... rest=us cs=N"
#                                        of a result (BENCH_CPU=1, the default;
#                                        servers named in BENCH_PID_NAME)
#   bench_ratio A B                      A / B to two decimals ("-" unless B > 0)
#   bench_median_run SIDE FILES...       the result with the median IOPS
#   bench_want_job NAME                  NAME is in BENCH_JOBS (or it is unset)
#   bench_servers_alive WHAT             exit 1 when a server in PIDS died
#   bench_cg_pair_up REAL NODE PORT      a duet-pair pair with NODE under callgrind
#                                        (W, D, CG_FAKE, CG_PAIR and the exit trap)
#   bench_cg_wait_status SOCK FIELD VALUE   poll a node's status JSON (60 s)
#   bench_cg_measure PID FN N            callgrind counts of FN N (idle, load, ms)

_BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/node-config.sh
. "$_BENCH_ROOT/tests/node-config.sh"
# shellcheck source=tests/netns.sh
. "$_BENCH_ROOT/tests/netns.sh"
# shellcheck source=tests/tls-pki.sh
. "$_BENCH_ROOT/tests/tls-pki.sh"
export PYTHONPATH=$_BENCH_ROOT/tools/python${PYTHONPATH:+:$PYTHONPATH}

# bench_die MSG...: one line on stderr, exit 1.
bench_die() {
	echo "${BENCH_NAME:-bench}: $*" >&2
	exit 1
}

# bench_need TOOL...: exit 2 naming the first missing tool.
bench_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || {
			echo "${BENCH_NAME:-bench}: $t is missing (run scripts/deps.sh)" >&2
			exit 2
		}
	done
}

# bench_need_fio_nbd: exit 2 when fio has no nbd engine.
bench_need_fio_nbd() {
	fio --enghelp 2>/dev/null | grep -qw nbd || {
		echo "${BENCH_NAME:-bench}: this fio has no nbd engine" >&2
		exit 2
	}
}

# bench_need_build BUILD: exit 2 unless BUILD holds duetd and duetctl.
bench_need_build() {
	[ -x "$1/src/node/duetd" ] && [ -x "$1/tools/duetctl" ] || {
		echo "${BENCH_NAME:-bench}: no duetd/duetctl in $1 (run make first)" >&2
		exit 2
	}
}

# bench_wait SECONDS CMD...: poll CMD every 20 ms until it succeeds; 1 on
# timeout.
bench_wait() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.02
	done
}

# bench_sanitizer_warn BUILD: warn when BUILD is a sanitizer build.
bench_sanitizer_warn() {
	if meson introspect "$1" --buildoptions 2>/dev/null |
		jq -e '.[] | select(.name=="b_sanitize") | .value != "none"' >/dev/null 2>&1; then
		echo "${BENCH_NAME:-bench}: warning: $1 is a sanitizer build; numbers will be off" >&2
	fi
}

# bench_machine: one line naming the CPUs, kernel and memory.
bench_machine() {
	local cpu
	cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
	echo "$(nproc) CPUs ($cpu), Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
}

# bench_commit ROOT BUILD: "commit X, build dir Y (buildtype)".
bench_commit() {
	echo "commit $(git -C "$1" describe --always --dirty 2>/dev/null || echo unknown), build dir $(basename "$2") ($(meson introspect "$2" --buildoptions 2>/dev/null | jq -r '.[] | select(.name=="buildtype") | .value' 2>/dev/null || echo ?))"
}

# bench_write_section DOC TITLE FILE: replace the section "## TITLE" of DOC
# (up to the next "## " heading) with FILE, or append FILE when DOC has no
# such section.
bench_write_section() {
	local doc=$1 title=$2 sec=$3 tmp
	[ -e "$doc" ] || printf '# Benchmarks\n\n' >"$doc"
	tmp=$(mktemp "$doc.XXXXXX")
	awk -v sec="$sec" -v title="## $title" '
		function emit() { while ((getline l < sec) > 0) print l; done = 1 }
		/^## / { if (skip) skip = 0; if ($0 == title) { emit(); skip = 1; next } }
		!skip { print }
		{ last = $0 }
		END { if (!done) { if (last != "") print ""; emit() } }
	' "$doc" >"$tmp" && cat "$tmp" >"$doc"
	rm -f "$tmp"
}

# bench_args ARGS...: the command line of nbd.sh, proxy.sh and mirror.sh,
# "[--write-doc] [BUILD_DIR]" (-h prints the script's header comment). Sets
# write_doc (0/1), build (absolute; default ROOT/build), DUETD, DUETCTL.
bench_args() {
	local a
	write_doc=0
	build=build
	for a in "$@"; do
		case $a in
		--write-doc) write_doc=1 ;;
		-h | --help)
			sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
			exit 0
			;;
		-*)
			echo "${BENCH_NAME:-bench}: unknown option $a" >&2
			exit 2
			;;
		*) build=$a ;;
		esac
	done
	case $build in /*) ;; *) build=$_BENCH_ROOT/$build ;; esac
	DUETD=$build/src/node/duetd
	DUETCTL=$build/tools/duetctl
}

# bench_need_fio_bench TOOL...: bench_need TOOL..., bench_need_fio_nbd,
# bench_need_build $build, bench_sanitizer_warn $build.
bench_need_fio_bench() {
	bench_need "$@"
	bench_need_fio_nbd
	bench_need_build "$build"
	bench_sanitizer_warn "$build"
}

# bench_workdir PREFIX: W=a fresh directory under BENCH_DIR (or TMPDIR,
# /tmp); PIDS=() for the servers the script starts. On exit the servers in
# PIDS get TERM and are reaped, W and every path in BENCH_RM are removed.
bench_workdir() {
	W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/$1.XXXXXX")
	PIDS=()
	BENCH_RM=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}
bench_cleanup() {
	local p
	for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -s TERM "$p" 2>/dev/null || true; done
	for p in ${PIDS[@]+"${PIDS[@]}"}; do wait "$p" 2>/dev/null || true; done
	rm -rf "$W"
	for p in ${BENCH_RM[@]+"${BENCH_RM[@]}"}; do rm -rf "$p"; done
}

# bench_listening PORT: something listens on the TCP port (ss, no connect).
bench_listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }

# bench_wait_port PORT PID NAME: wait (30 s) until PORT listens; exit 1 with
# $W/NAME.log when PID ends first, or on the timeout.
bench_wait_port() {
	local deadline=$((SECONDS + 30))
	until bench_listening "$1"; do
		kill -0 "$2" 2>/dev/null || {
			echo "${BENCH_NAME:-bench}: $3 exited while starting; its log:" >&2
			cat "$W/$3.log" >&2
			exit 1
		}
		[ $SECONDS -lt $deadline ] || {
			echo "${BENCH_NAME:-bench}: $3 does not listen on $1" >&2
			exit 1
		}
		sleep 0.05
	done
}

# bench_nbdkit PORT SIZE: nbdkit's file plugin on a fresh SIZE file
# $W/nbdkit.img, on 127.0.0.1:PORT (log $W/nbdkit.log; its PID in PIDS);
# waits until it listens.
bench_nbdkit() {
	truncate -s "$2" "$W/nbdkit.img"
	nbdkit -f -p "$1" -i 127.0.0.1 file "$W/nbdkit.img" 2>"$W/nbdkit.log" &
	PIDS+=($!)
	BENCH_PID_NAME[$!]=nbdkit
	bench_wait_port "$1" "$!" nbdkit
}

# bench_prefill NAME URI SIZE: write SIZE bytes of URI once with fio (1 MiB
# sequential writes of random data), so that reads hit data; exit 1 on error.
bench_prefill() {
	fio --name=prefill --ioengine=nbd --uri="$2" --rw=write --bs=1m --iodepth=8 \
		--size="$3" --output-format=json --output="$W/prefill-$1.json" >/dev/null 2>"$W/prefill-$1.err" || {
		cat "$W/prefill-$1.err" >&2
		echo "${BENCH_NAME:-bench}: pre-fill of $1 failed" >&2
		exit 1
	}
}

# bench_fio NAME ARGS URI OUT LABEL [FIO_ARGS...]: one time-based fio job
# (ARGS split on spaces; SIZE and SECS from the script, 1 s ramp, random
# offsets without a map) against URI, JSON result in OUT; exit 1 naming
# LABEL when fio fails. BENCH_CLIENT_RT=PRIO runs fio at SCHED_RR PRIO (the
# nodes' is 10): a client on its own host never waits for the nodes'
# real-time threads, one sharing their two CPUs at normal priority loses
# every contest to them; at theirs it takes turns.
bench_fio() {
	local name=$1 args=$2 uri=$3 out=$4 label=$5 fpid rc=0
	shift 5
	# shellcheck disable=SC2086
	${BENCH_CLIENT_RT:+chrt -r "$BENCH_CLIENT_RT"} \
		fio --name="$name" --ioengine=nbd --uri="$uri" $args --size="$SIZE" \
		--time_based --runtime="$SECS" --ramp_time=1 --norandommap --randrepeat=0 "$@" \
		--output-format=json --output="$out" >/dev/null 2>"$out.err" &
	fpid=$!
	if [ "${BENCH_CPU:-1}" = 1 ]; then
		# Inside fio's measured window (after its 1 s ramp, before its end).
		sleep 1.2
		bench_cpu_snap >"$out.cpu"
		sleep "$(awk -v s="$SECS" 'BEGIN { print (s > 1 ? s - 0.4 : s / 2) }')"
		bench_cpu_snap >>"$out.cpu"
	fi
	wait "$fpid" || rc=$?
	[ $rc = 0 ] || {
		cat "$out.err" >&2
		echo "${BENCH_NAME:-bench}: fio $name against $label failed" >&2
		exit 1
	}
}

# ---- CPU per operation (BENCH_CPU=1, the default) ----
#
# Where a job is bound by the CPUs (the machine near 100% busy), its rate is
# the CPUs over the CPU time each operation costs, whoever spends it: the
# client, the servers, the kernel's TCP and softirqs. bench_fio samples the
# machine's busy and idle ticks (/proc/stat) and each server's (the PIDs in
# PIDS, /proc/PID/stat, all threads) twice inside fio's measured window;
# bench_cpu turns them into CPU microseconds per operation.

# Names of the servers in PIDS, for bench_cpu's split: BENCH_PID_NAME[PID].
declare -gA BENCH_PID_NAME=()

# bench_cpu_snap: one line, "WALL_US BUSY IDLE CTXT NAME=TICKS...".
bench_cpu_snap() {
	local p t u n s i w q sq st line
	read -r _ u n s i w q sq st _ </proc/stat
	line="${EPOCHREALTIME/./} $((u + n + s + q + sq + st)) $((i + w)) $(awk '$1 == "ctxt" { print $2 }' /proc/stat)"
	for p in ${PIDS[@]+"${PIDS[@]}"}; do
		t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || t=0
		line+=" ${BENCH_PID_NAME[$p]:-$p}=${t:-0}"
	done
	echo "$line"
}

# bench_cpu FILE SIDE: "BUSY_PCT US_PER_OP NAME=US... rest=US cs=N" for
# fio's result FILE (operations: SIDE's IOPS; for 1 MiB jobs, per MiB): the
# machine's busy share, its CPU time per operation, and that of each server
# that used 3 ticks or more; "rest" is fio, softirqs and kernel threads;
# "cs" the machine's context switches per operation (each a sleep and a
# wake-up: on a VM, an inter-processor interrupt and exits). "- -" when the
# job was not sampled.
bench_cpu() {
	[ -s "$1.cpu" ] || {
		echo "- -"
		return 0
	}
	awk -v iops="$(jq -r --arg d "$2" '.jobs[0][$d].iops' "$1")" -v hz="$(getconf CLK_TCK)" '
		NR == 1 {
			t0 = $1; b0 = $2; i0 = $3; c0 = $4
			for (k = 5; k <= NF; k++) { split($k, a, "="); p0[a[1]] = a[2] }
		}
		NR == 2 {
			ops = iops * ($1 - t0) / 1e6; db = $2 - b0; di = $3 - i0
			if (ops <= 0 || db + di <= 0) { print "- -"; exit }
			us = db / hz * 1e6 / ops; rest = us
			line = sprintf("%.0f %.1f", 100 * db / (db + di), us)
			for (k = 5; k <= NF; k++) {
				split($k, a, "="); d = a[2] - p0[a[1]]
				if (d < 3) continue
				v = d / hz * 1e6 / ops; rest -= v
				line = line sprintf(" %s=%.1f", a[1], v)
			}
			print line sprintf(" rest=%.1f cs=%.1f", rest < 0 ? 0 : rest, ($4 - c0) / ops)
		}' "$1.cpu"
}

# bench_metric FILE SIDE: "iops mibs p50_us p99_us" of fio's JSON result
# (SIDE read or write; total latency when fio measured it, else clat).
bench_metric() {
	jq -r --arg d "$2" '.jobs[0][$d] as $r |
		[($r.iops | floor), ($r.bw_bytes / 1048576 * 10 | round / 10),
		 ((($r.lat_ns.percentile // $r.clat_ns.percentile)["50.000000"] // 0) / 1000 | round),
		 ((($r.lat_ns.percentile // $r.clat_ns.percentile)["99.000000"] // 0) / 1000 | round)] | @tsv' "$1"
}

# bench_ratio A B: A / B to two decimals, "-" when B is not above 0.
bench_ratio() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# bench_median_run SIDE FILES...: the fio result whose IOPS is the median.
bench_median_run() {
	local side=$1 f
	shift
	for f in "$@"; do
		echo "$(jq --arg d "$side" '.jobs[0][$d].iops' "$f") $f"
	done | sort -n | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }'
}

# bench_realtime NAME=SOCKET...: each node's [node] realtime at the end, e.g.
# "a auto (normal priority), b auto (SCHED_RR since a 23 ms late turn)": a
# node that switched during the run (realtime = auto) ran part of it at
# SCHED_RR, which changes what its ratios mean (docs/CCM.md).
bench_realtime() {
	local a out="" j
	for a in "$@"; do
		[ -S "${a#*=}" ] || continue
		j=$("$DUETCTL" --socket "${a#*=}" status --json 2>/dev/null | jq -r '.realtime |
			.mode + (if .active then " (SCHED_RR" + (if .late_ms then " since a turn \(.late_ms) ms late" else "" end) + ")"
			else " (normal priority)" end)') || j="?"
		out+="${out:+, }${a%%=*} $j"
	done
	echo "$out"
}

# bench_want_job NAME: NAME is among BENCH_JOBS (or BENCH_JOBS is unset).
bench_want_job() { [ -z "${BENCH_JOBS:-}" ] || grep -qw -- "$1" <<<"$BENCH_JOBS"; }

# bench_servers_alive WHAT: exit 1 ("WHAT died during the run") unless
# every PID in PIDS still runs.
bench_servers_alive() {
	local p
	for p in ${PIDS[@]+"${PIDS[@]}"}; do
		kill -0 "$p" 2>/dev/null || {
			echo "${BENCH_NAME:-bench}: $1 died during the run" >&2
			exit 1
		}
	done
}

# ---- callgrind-write.sh and callgrind-proxy.sh ----

# bench_cg_pair_up REAL NODE PORT: a tools/duet-pair pair (one link, mirror
# on, 256 MiB) from the build REAL on ports PORT.., whose node NODE (a or b)
# runs under valgrind --tool=callgrind (its dumps: $W/cg.out.PID.N), both
# with long CCM and monitor deadlines (a node under valgrind is ~50x
# slower). Sets W, D (the pair's directory), CG_FAKE (the build directory
# whose duetd does that) and CG_PAIR; the pair is taken down and W removed
# on exit.
bench_cg_pair_up() {
	local real=$1 node=$2 port=$3
	bench_need valgrind callgrind_control fio jq
	W=$(mktemp -d "${TMPDIR:-/tmp}/duet-cg.XXXXXX")
	CG_FAKE=$W/build D=$W/pair
	CG_PAIR=$_BENCH_ROOT/tools/duet-pair
	trap 'DUET_BUILD=$CG_FAKE "$CG_PAIR" down "$D" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
	# A build directory whose duetd runs node NODE under callgrind (both
	# with long deadlines appended to their configs).
	mkdir -p "$CG_FAKE/src/node" "$CG_FAKE/tools"
	ln -s "$real/tools/duetctl" "$CG_FAKE/tools/duetctl"
	cat >"$CG_FAKE/src/node/duetd" <<EOW
#!/usr/bin/env bash
printf '[ic]\nlink_deadline_ms = 2000\nsession_deadline_ms = 20000\n' >>"\$2"
if grep -q '^id = $node\$' "\$2"; then
	exec valgrind --tool=callgrind --callgrind-out-file=$W/cg.out.%p "$real/src/node/duetd" "\$@"
fi
exec "$real/src/node/duetd" "\$@"
EOW
	chmod +x "$CG_FAKE/src/node/duetd"
	export DUET_BUILD=$CG_FAKE
	# realtime off: a node under valgrind is CPU-bound, at SCHED_RR it
	# would starve the host.
	"$CG_PAIR" up "$D" --base-port "$port" --links 1 --size 256M --log-level warn --realtime off \
		--monitor deadline_ms=10000 --monitor mailbox_deadline_ms=5000 --monitor lease_ms=5000 \
		--monitor watchdog_ms=60000 >/dev/null
	bench_cg_wait_status "$D/a.sock" .mirror.state in_sync
}

# bench_cg_wait_status SOCK FIELD VALUE: poll (every 0.1 s, 60 s at most;
# going on regardless, as the measurement then says) until the jq FIELD of
# the status of the node at SOCK is VALUE.
bench_cg_wait_status() {
	local _
	for _ in $(seq 600); do
		[ "$("$CG_FAKE/tools/duetctl" --socket "$1" status --json | jq -r "$2")" = "$3" ] && break
		sleep 0.1
	done
}

# bench_cg_measure PID FN N: the callgrind counters of the node PID while
# idle for 3 s (idle: instructions, dump 1), then, after a warm-up (FN 50),
# while FN N runs (load: instructions, dump 2; ms: its wall time).
bench_cg_measure() {
	local pid=$1 fn=$2 n=$3 t0 t1
	callgrind_control -z "$pid" >/dev/null 2>&1
	sleep 3
	callgrind_control -d idle "$pid" >/dev/null 2>&1
	"$fn" 50 # warm
	callgrind_control -z "$pid" >/dev/null 2>&1
	t0=$(date +%s%N)
	"$fn" "$n"
	t1=$(date +%s%N)
	callgrind_control -d load "$pid" >/dev/null 2>&1
	sleep 1
	ms=$(((t1 - t0) / 1000000))
	idle=$(grep -h '^summary:' "$W"/cg.out.*.1 | awk '{print $2}')
	load=$(grep -h '^summary:' "$W"/cg.out.*.2 | awk '{print $2}')
}
