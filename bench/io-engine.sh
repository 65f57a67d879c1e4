#!/bin/sh
# Compare the store's I/O engines (io_uring and the worker pool) with
# store-bench: 4 KiB random read/write at depth 1 and 32, 1 MiB sequential
# read/write at depth 8, against one 1 GiB volume, best of 3 runs of 5 s.
#
# usage: bench/io-engine.sh [BUILD_DIR] [-- store-bench options]
#   BENCH_DIR  shelf directory (default /tmp/duet-bench-io; removed after)
#   RUNTIME    seconds per run (default 5), REPEAT runs (default 3)
#   SIZE       volume size (default 1G)
# Prints a markdown table (also saved to $BENCH_DIR.md) for docs/BENCHMARKS.md.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
dir=${BENCH_DIR:-/tmp/duet-bench-io}

ninja -C "$build" bench/store-bench >/dev/null
rm -rf "$dir"
trap 'rm -rf "$dir"' EXIT INT TERM

fs=$(findmnt -no FSTYPE --target "$(dirname "$dir")" 2>/dev/null || stat -f -c %T "$(dirname "$dir")")
echo "# store-bench: $(nproc) CPUs, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# shelf $dir on $fs; file I/O is buffered (page cache), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# command: $build/bench/store-bench --dir $dir --size ${SIZE:-1G} --runtime ${RUNTIME:-5} --repeat ${REPEAT:-3} $*"
"$build/bench/store-bench" --dir "$dir" --size "${SIZE:-1G}" --runtime "${RUNTIME:-5}" \
	--repeat "${REPEAT:-3}" "$@" | tee "$dir.md"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
