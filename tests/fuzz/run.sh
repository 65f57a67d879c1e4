#!/usr/bin/env bash
# Build the fuzz targets with clang into build-fuzz and run fuzz_nbd for a
# bounded time (seconds, default 60) on a copy of the seed corpus, then
# fuzz_allow (the [nbd] allow parser) for a tenth of that.
# Exits non-zero when the fuzzer finds a crash, a leak or a timeout; the
# reproducer is left in build-fuzz/artifacts/.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Db_lundef=false
fi
ninja -C build-fuzz tests/fuzz/fuzz_nbd tests/fuzz/fuzz_allow
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests/fuzz/corpus/nbd "$work/corpus"
mkdir -p build-fuzz/artifacts
build-fuzz/tests/fuzz/fuzz_nbd -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
	-max_len=16384 -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ \
	"$work/corpus"
cp -r tests/fuzz/corpus/allow "$work/allow"
build-fuzz/tests/fuzz/fuzz_allow -max_total_time=$(((secs + 9) / 10)) -timeout=10 \
	-max_len=4096 -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ "$work/allow"
