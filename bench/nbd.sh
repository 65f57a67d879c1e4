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
#      BENCH_TLS      0: no TLS line (default 1: duetd runs with tls = on and
#                     an x509 certificate made with certtool; three jobs run
#                     again over nbds:// and are compared to plain, same run)
# Prints a Markdown table; --write-doc also replaces the "NBD" section of
# docs/BENCHMARKS.md with it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=nbd.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_args "$@"
SECS=${BENCH_SECONDS:-10}
PORT=${BENCH_PORT_BASE:-23950}
DUET_PORT=$PORT
KIT_PORT=$((PORT + 1))
SIZE=1G

bench_need_fio_bench fio nbdkit jq nbdinfo ss

bench_workdir duet-bench
cd "$W"

# TLS material (certtool, as the tests make it): tls = on serves plain
# clients exactly as tls = off does, and nbds:// clients over TLS. fio's
# nbd engine takes no tls-certificates= in its URI (no local files): libnbd
# then reads $HOME/.pki/libnbd, which the TLS jobs point at $W/pki.
TLS=${BENCH_TLS:-1}
tls_lines=()
if [ "$TLS" = 1 ]; then
	bench_need certtool
	mkdir -p "$W/home/.pki"
	tls_make_pki "$W/pki" || bench_die "certtool failed (see $W/pki/certtool.log)"
	ln -s "$W/pki" "$W/home/.pki/libnbd"
	tls_lines=("tls = on" "tls_certificates = $W/pki")
fi

# duetd with one 1 GiB volume.
mkdir -p "$W/shelf"
write_node_config "$W/duet.conf" a "$W" "shelf = $W/shelf" "log_level = warn" \
	"[nbd]" "listen = 127.0.0.1:$DUET_PORT" ${tls_lines[@]+"${tls_lines[@]}"} \
	"[store]" "io_engine = ${BENCH_ENGINE:-uring}"
"$DUETD" --config "$W/duet.conf" 2>"$W/duetd.log" &
PIDS+=($!)
bench_wait_port "$DUET_PORT" "$!" duetd
until "$DUETCTL" --socket "$W/a.sock" status >/dev/null 2>&1; do sleep 0.05; done
"$DUETCTL" --socket "$W/a.sock" volume create bench $SIZE >/dev/null

# nbdkit's file plugin on a 1 GiB file next to it.
bench_nbdkit "$KIT_PORT" $SIZE

URI_duet=nbd://127.0.0.1:$DUET_PORT/bench
URI_nbdkit=nbd://127.0.0.1:$KIT_PORT/

# Write both volumes fully once (random data, 1 MiB writes), so reads hit data.
echo "pre-filling both volumes ($SIZE each)..." >&2
for s in duet nbdkit; do
	uri_var=URI_$s
	bench_prefill "$s" "${!uri_var}" $SIZE
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

# run_job NAME ARGS SERVER OUT: one fio run.
run_job() {
	local uri_var=URI_$3
	bench_fio "$1" "$2" "${!uri_var}" "$4" "$3" --lat_percentiles=1
}

REPEAT=${BENCH_REPEAT:-1}
rows=()
missed=() # jobs under the issue's targets
met=0
for j in "${JOBS[@]}"; do
	IFS='|' read -r name args side <<<"$j"
	bench_want_job "$name" || continue
	for r in $(seq "$REPEAT"); do
		# Alternate who goes first, so that neither always runs on a warmer machine.
		order="duet nbdkit"
		[ $((r % 2)) = 0 ] && order="nbdkit duet"
		for s in $order; do
			echo "$name on $s (${SECS}s, run $r of $REPEAT)..." >&2
			run_job "$name" "$args" "$s" "$W/$name-$s-$r.json"
		done
	done
	read -r d_iops d_mibs d_p50 d_p99 <<<"$(bench_metric "$(bench_median_run "$side" "$W/$name"-duet-*.json)" "$side")"
	read -r k_iops k_mibs k_p50 k_p99 <<<"$(bench_metric "$(bench_median_run "$side" "$W/$name"-nbdkit-*.json)" "$side")"
	ratio=$(bench_ratio "$d_iops" "$k_iops")
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

# The TLS line: the same server, plain and over TLS, alternating.
TLS_JOBS=(randread-4k-qd32 read-1m-qd8 write-1m-qd8)
tls_rows=()
if [ "$TLS" = 1 ]; then
	for j in "${JOBS[@]}"; do
		IFS='|' read -r name args side <<<"$j"
		[[ " ${TLS_JOBS[*]} " == *" $name "* ]] || continue
		bench_want_job "$name" || continue
		for r in $(seq "$REPEAT"); do
			order="plain tls"
			[ $((r % 2)) = 0 ] && order="tls plain"
			for s in $order; do
				echo "$name on duet, $s (${SECS}s, run $r of $REPEAT)..." >&2
				if [ $s = tls ]; then
					HOME=$W/home bench_fio "$name" "$args" \
						"nbds://127.0.0.1:$DUET_PORT/bench" "$W/$name-t$s-$r.json" \
						"duet (TLS)" --lat_percentiles=1
				else
					bench_fio "$name" "$args" "$URI_duet" "$W/$name-t$s-$r.json" duet \
						--lat_percentiles=1
				fi
			done
		done
		read -r p_iops p_mibs p_p50 p_p99 <<<"$(bench_metric "$(bench_median_run "$side" "$W/$name"-tplain-*.json)" "$side")"
		read -r t_iops t_mibs t_p50 t_p99 <<<"$(bench_metric "$(bench_median_run "$side" "$W/$name"-ttls-*.json)" "$side")"
		ratio=$(bench_ratio "$t_iops" "$p_iops")
		tls_rows+=("| $name | $p_iops | $t_iops | $p_mibs | $t_mibs | $p_p50 | $t_p50 | $p_p99 | $t_p99 | **$ratio** |")
	done
fi

bench_servers_alive "a server"

fs=$(df -T "$W" | awk 'NR==2 {print $2}')
table() {
	echo "| job | duet IOPS | nbdkit IOPS | duet MiB/s | nbdkit MiB/s | duet p50 µs | nbdkit p50 µs | duet p99 µs | nbdkit p99 µs | duet/nbdkit |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${rows[@]}"
}
tls_table() {
	[ ${#tls_rows[@]} -gt 0 ] || return 0
	echo "| job (duet, TLS line) | plain IOPS | TLS IOPS | plain MiB/s | TLS MiB/s | plain p50 µs | TLS p50 µs | plain p99 µs | TLS p99 µs | TLS/plain |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${tls_rows[@]}"
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
	echo "- machine: $(bench_machine)"
	echo "- duet: $(bench_commit "$ROOT" "$build")"
	echo "- load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-minute load average when the run ended)"
	echo "- command: \`BENCH_SECONDS=$SECS BENCH_REPEAT=$REPEAT bench/nbd.sh --write-doc\`"
	echo
	table
	echo
	if [ ${#tls_rows[@]} -gt 0 ]; then
		echo "TLS line: the same duetd (\`tls = on\`, an ECDSA x509 certificate made by certtool), the"
		echo "same volume, plain (\`nbd://\`) against TLS (\`nbds://\`, GnuTLS $(certtool --version | awk 'NR==1 {print $NF}')),"
		echo "alternating which went first; TLS/plain is the IOPS ratio."
		echo
		tls_table
		echo
	fi
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
if [ ${#tls_rows[@]} -gt 0 ]; then
	tls_table
	echo
fi
if [ ${#missed[@]} -eq 0 ]; then echo "targets: all met"; else printf 'target missed: %s\n' "${missed[@]}"; fi
if [ $write_doc = 1 ]; then
	doc=$ROOT/docs/BENCHMARKS.md
	mkdir -p "$(dirname "$doc")"
	[ -e "$doc" ] || printf '# Benchmarks\n\nEach benchmark runs duet and a peer in the same run on the same machine.\n\n' >"$doc"
	section >"$W/section.md"
	bench_write_section "$doc" NBD "$W/section.md"
	echo "wrote the NBD section of $doc" >&2
fi
