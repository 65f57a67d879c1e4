#!/usr/bin/env bash
# NBD benchmark: fio's nbd engine against duetd and against nbdkit's file
# plugin, in the same run, each on its own 1 GiB file-backed volume on the
# same filesystem. Both volumes are written fully once before the jobs, so
# reads hit data.
#
#   bench/nbd.sh [--write-doc] [BUILD_DIR]      (BUILD_DIR default: build)
#
# Env: BENCH_SECONDS  seconds per job and server (default 10)
#      BENCH_REPEAT   runs of each job per server, alternating who goes first;
#                     the median run by IOPS is reported (default 1)
#      BENCH_DIR      where the volumes live (default $TMPDIR or /tmp)
#      BENCH_PORT_BASE  first of the two ports used (default 23950)
#      BENCH_JOBS     a subset of the job names, space separated
#      BENCH_ENGINE   duetd's [store] io_engine (default uring)
# Prints a Markdown table; --write-doc also replaces the "NBD" section of
# docs/BENCHMARKS.md with it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
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
		echo "nbd.sh: unknown option $a" >&2
		exit 2
		;;
	*) build=$a ;;
	esac
done
case $build in /*) ;; *) build=$ROOT/$build ;; esac
DUETD=$build/src/node/duetd
DUETCTL=$build/tools/duetctl
SECS=${BENCH_SECONDS:-10}
PORT=${BENCH_PORT_BASE:-23950}
DUET_PORT=$PORT
KIT_PORT=$((PORT + 1))
SIZE=1G

BENCH_NAME=nbd.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need fio nbdkit jq nbdinfo ss
bench_need_fio_nbd
bench_need_build "$build"
bench_sanitizer_warn "$build"

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/duet-bench.XXXXXX")
cd "$W"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -s TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
wait_port() { # wait_port PORT PID NAME
	local deadline=$((SECONDS + 30))
	until listening "$1"; do
		kill -0 "$2" 2>/dev/null || {
			echo "nbd.sh: $3 exited while starting; its log:" >&2
			cat "$W/$3.log" >&2
			exit 1
		}
		[ $SECONDS -lt $deadline ] || {
			echo "nbd.sh: $3 does not listen on $1" >&2
			exit 1
		}
		sleep 0.05
	done
}

# duetd with one 1 GiB volume.
mkdir -p "$W/shelf"
cat >"$W/duet.conf" <<EOF
[node]
id = a
shelf = $W/shelf
control = $W/a.sock
log_level = warn
[nbd]
listen = 127.0.0.1:$DUET_PORT
[store]
io_engine = ${BENCH_ENGINE:-uring}
EOF
"$DUETD" --config "$W/duet.conf" 2>"$W/duetd.log" &
PIDS+=($!)
wait_port "$DUET_PORT" "$!" duetd
until "$DUETCTL" --socket "$W/a.sock" status >/dev/null 2>&1; do sleep 0.05; done
"$DUETCTL" --socket "$W/a.sock" volume create bench $SIZE >/dev/null

# nbdkit's file plugin on a 1 GiB file next to it.
truncate -s $SIZE "$W/nbdkit.img"
nbdkit -f -p "$KIT_PORT" -i 127.0.0.1 file "$W/nbdkit.img" 2>"$W/nbdkit.log" &
PIDS+=($!)
wait_port "$KIT_PORT" "$!" nbdkit

URI_duet=nbd://127.0.0.1:$DUET_PORT/bench
URI_nbdkit=nbd://127.0.0.1:$KIT_PORT/

# Write both volumes fully once (random data, 1 MiB writes), so reads hit data.
echo "pre-filling both volumes ($SIZE each)..." >&2
for s in duet nbdkit; do
	uri_var=URI_$s
	fio --name=prefill --ioengine=nbd --uri="${!uri_var}" --rw=write --bs=1m --iodepth=8 \
		--size=$SIZE --output-format=json --output="$W/prefill-$s.json" >/dev/null 2>"$W/prefill-$s.err" || {
		cat "$W/prefill-$s.err" >&2
		echo "nbd.sh: pre-fill of $s failed" >&2
		exit 1
	}
done

# name | fio arguments | which side of the result to read
JOBS=(
	"randread-4k-qd1|--rw=randread --bs=4k --iodepth=1|read"
	"randread-4k-qd32|--rw=randread --bs=4k --iodepth=32|read"
	"randwrite-4k-qd1|--rw=randwrite --bs=4k --iodepth=1|write"
	"randwrite-4k-qd32|--rw=randwrite --bs=4k --iodepth=32|write"
	"read-1m-qd8|--rw=read --bs=1m --iodepth=8|read"
	"write-1m-qd8|--rw=write --bs=1m --iodepth=8|write"
	"randwrite-4k-fsync|--rw=randwrite --bs=4k --iodepth=1 --fsync=1|write"
)

# metric FILE SIDE: "iops mibs p50_us p99_us"
metric() {
	jq -r --arg d "$2" '.jobs[0][$d] as $r |
		[($r.iops | floor), ($r.bw_bytes / 1048576 * 10 | round / 10),
		 ((($r.lat_ns.percentile // $r.clat_ns.percentile)["50.000000"] // 0) / 1000 | round),
		 ((($r.lat_ns.percentile // $r.clat_ns.percentile)["99.000000"] // 0) / 1000 | round)] | @tsv' "$1"
}

# run_job NAME ARGS SERVER OUT: one fio run.
run_job() {
	local uri_var=URI_$3
	# shellcheck disable=SC2086
	fio --name="$1" --ioengine=nbd --uri="${!uri_var}" $2 --size=$SIZE \
		--time_based --runtime="$SECS" --ramp_time=1 --norandommap --randrepeat=0 --lat_percentiles=1 \
		--output-format=json --output="$4" >/dev/null 2>"$4.err" || {
		cat "$4.err" >&2
		echo "nbd.sh: fio $1 against $3 failed" >&2
		exit 1
	}
}

# median_run SIDE FILES...: the file whose IOPS is the median.
median_run() {
	local side=$1
	shift
	local f
	for f in "$@"; do
		echo "$(jq --arg d "$side" '.jobs[0][$d].iops' "$f") $f"
	done | sort -n | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }'
}

REPEAT=${BENCH_REPEAT:-1}
rows=()
missed=() # jobs under the issue's targets
met=0
for j in "${JOBS[@]}"; do
	IFS='|' read -r name args side <<<"$j"
	if [ -n "${BENCH_JOBS:-}" ] && ! grep -qw -- "$name" <<<"$BENCH_JOBS"; then continue; fi
	for r in $(seq "$REPEAT"); do
		# Alternate who goes first, so that neither always runs on a warmer machine.
		order="duet nbdkit"
		[ $((r % 2)) = 0 ] && order="nbdkit duet"
		for s in $order; do
			echo "$name on $s (${SECS}s, run $r of $REPEAT)..." >&2
			run_job "$name" "$args" "$s" "$W/$name-$s-$r.json"
		done
	done
	read -r d_iops d_mibs d_p50 d_p99 <<<"$(metric "$(median_run "$side" "$W/$name"-duet-*.json)" "$side")"
	read -r k_iops k_mibs k_p50 k_p99 <<<"$(metric "$(median_run "$side" "$W/$name"-nbdkit-*.json)" "$side")"
	ratio=$(awk -v a="$d_iops" -v b="$k_iops" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
	rows+=("| $name | $d_iops | $k_iops | $d_mibs | $k_mibs | $d_p50 | $k_p50 | $d_p99 | $k_p99 | **$ratio** |")
	# Targets (issue 2): >= 1.0 on every job, >= 1.2 on 4 KiB random read at iodepth 32.
	target=1.0
	[ "$name" = randread-4k-qd32 ] && target=1.2
	if awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r + 0 >= t) }'; then
		met=$((met + 1))
	else
		missed+=("$name $ratio (target $target)")
	fi
done

_alive_pid() { kill -0 "$1" 2>/dev/null; }
for p in "${PIDS[@]}"; do
	_alive_pid "$p" || {
		echo "nbd.sh: a server died during the run" >&2
		exit 1
	}
done

cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
fs=$(df -T "$W" | awk 'NR==2 {print $2}')
table() {
	echo "| job | duet IOPS | nbdkit IOPS | duet MiB/s | nbdkit MiB/s | duet p50 µs | nbdkit p50 µs | duet p99 µs | nbdkit p99 µs | duet/nbdkit |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${rows[@]}"
}
section() {
	echo "## NBD"
	echo
	echo "fio $(fio --version | sed 's/^fio-//') with the nbd engine (libnbd), one connection per job, against"
	echo "duetd (io_engine=${BENCH_ENGINE:-uring}) and against nbdkit $(nbdkit --version | awk '{print $2}') with its file plugin"
	echo "(\`nbdkit -f -p PORT -i 127.0.0.1 file FILE\`, default threads), in the same run. Each serves its own"
	echo "1 GiB file-backed volume on the same $fs filesystem; both were written fully once (1 MiB sequential"
	echo "writes of random data) before the jobs, so reads hit data (from the page cache: nothing is"
	echo "dropped between jobs, for either server). Each job runs ${SECS} s after 1 s of ramp, time-based,"
	echo "random offsets over the whole volume; each job ran $REPEAT time(s) per server, alternating which"
	echo "server went first, and the table shows the median run by IOPS. Latency percentiles are fio's total latency"
	echo "(\`--lat_percentiles=1\`: from submission to completion). fio's clat alone would miss most"
	echo "of it with the nbd engine, which sends the request inside the submission."
	echo "The ratio is duet IOPS / nbdkit IOPS (higher is better for duet)."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc) CPUs ($cpu), Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
	echo "- duet: commit $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), build dir $(basename "$build") ($(meson introspect "$build" --buildoptions 2>/dev/null | jq -r '.[] | select(.name=="buildtype") | .value' 2>/dev/null || echo ?))"
	echo "- load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-minute load average when the run ended)"
	echo "- command: \`BENCH_SECONDS=$SECS BENCH_REPEAT=$REPEAT bench/nbd.sh --write-doc\`"
	echo
	table
	echo
	if [ ${#missed[@]} -eq 0 ]; then
		echo "Targets (duet/nbdkit >= 1.0 on every job, >= 1.2 on randread-4k-qd32): all $met met in this run."
	else
		echo "Targets (duet/nbdkit >= 1.0 on every job, >= 1.2 on randread-4k-qd32): $met met; missed in this run:"
		printf -- '- %s\n' "${missed[@]}"
	fi
	echo
}

echo
table
echo
if [ ${#missed[@]} -eq 0 ]; then echo "targets: all met"; else printf 'target missed: %s\n' "${missed[@]}"; fi
if [ $write_doc = 1 ]; then
	doc=$ROOT/docs/BENCHMARKS.md
	mkdir -p "$(dirname "$doc")"
	[ -e "$doc" ] || printf '# Benchmarks\n\nEach benchmark runs duet and a peer in the same run on the same machine.\n\n' >"$doc"
	section >"$W/section.md"
	# Replace "## NBD" up to the next "## " heading (or the end); append if absent.
	awk -v sec="$W/section.md" '
		function emit() { while ((getline l < sec) > 0) print l; done = 1 }
		/^## / { if (skip) skip = 0; if ($0 == "## NBD") { emit(); skip = 1; next } }
		!skip { print }
		{ last = $0 }
		END { if (!done) { if (last != "") print ""; emit() } }
	' "$doc" >"$W/doc.md"
	cat "$W/doc.md" >"$doc"
	echo "wrote the NBD section of $doc" >&2
fi
