#!/usr/bin/env bash
# Build the fuzz targets with clang into build-fuzz and run each for a
# bounded time on a copy of its seed corpus (tests/fuzz/corpus/<name>).
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS (default 60) is the total, split across the targets run (the
# NBD server, the NVRAM image and the CCM get two shares, the others one;
# at least 5 s each), so `make test` spends about what it always did.
# Exits non-zero when a fuzzer finds a crash, a leak or a timeout; the
# reproducer is left in build-fuzz/artifacts/. Prints one line per target
# with its executions and coverage (libFuzzer's final stats).
set -euo pipefail
secs=${1:-60}
shift || true
all=(fuzz_nbd fuzz_allow fuzz_nvram fuzz_ccm fuzz_proxy fuzz_mbox fuzz_control fuzz_config fuzz_netaddr fuzz_owner fuzz_balance)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Db_lundef=false
fi
ninja -C build-fuzz $(printf 'tests/fuzz/%s ' "${targets[@]}")
declare -A share=([fuzz_nbd]=2 [fuzz_nvram]=2 [fuzz_ccm]=2)
shares=0
for t in "${targets[@]}"; do shares=$((shares + ${share[$t]:-1})); done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p build-fuzz/artifacts
# Per target: the largest input it takes.
declare -A maxlen=([fuzz_nbd]=16384 [fuzz_allow]=4096 [fuzz_nvram]=65537 [fuzz_ccm]=16441 [fuzz_proxy]=16384
	[fuzz_mbox]=4097 [fuzz_control]=8192 [fuzz_config]=8192 [fuzz_netaddr]=256
	[fuzz_owner]=4096 [fuzz_balance]=10272)
rc=0
for t in "${targets[@]}"; do
	c=${t#fuzz_}
	each=$((secs * ${share[$t]:-1} / shares))
	[ "$each" -ge 5 ] || each=5
	mkdir -p "$work/$c"
	[ -d "tests/fuzz/corpus/$c" ] && cp -r "tests/fuzz/corpus/$c/." "$work/$c/"
	echo "== $t: $each s" >&2
	r=0
	"build-fuzz/tests/fuzz/$t" -max_total_time="$each" -timeout=10 -rss_limit_mb=4096 \
		-max_len="${maxlen[$t]:-16384}" -print_final_stats=1 \
		-artifact_prefix="build-fuzz/artifacts/$t-" "$work/$c" 2>"$work/$t.log" || r=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
	cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -n1)
	if [ $r -ne 0 ]; then
		tail -n 60 "$work/$t.log" >&2
		echo "FAIL $t: exit $r after ${runs:-?} runs (reproducer in build-fuzz/artifacts/)"
		rc=1
	else
		echo "ok $t: ${runs:-?} runs in $each s, ${cov:-cov: ?}"
	fi
done
exit $rc
