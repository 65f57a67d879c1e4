# shellcheck shell=bash
# Helpers shared by the bench/*.sh scripts (sourced, not run).
# Each script sets BENCH_NAME (for messages) before sourcing this file.
#
# It also sources tests/node-config.sh (write_node_config: the one duetd INI
# writer) and tests/netns.sh (netns_pair, veth_link, netns_cleanup), and
# puts tools/python (duet_nbd.py, the NBD client module) on PYTHONPATH.
#
# Functions:

_BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/node-config.sh
. "$_BENCH_ROOT/tests/node-config.sh"
# shellcheck source=tests/netns.sh
. "$_BENCH_ROOT/tests/netns.sh"
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
