# shellcheck shell=bash
# Helpers for duet's shell tests (tests/integration/*.sh, tests/fault/*.sh).
#
# Source it at the top of a test, after `set -euo pipefail`:
#     . "$(dirname "$0")/../lib.sh"
#
# It gives the test (its working directory is $T):
#   $T            a fresh temp dir (removed on exit unless DUET_KEEP_TMP=1)
#   $TEST_DIR     the folder of the test script (for helpers beside it)
#   $PORT_BASE    first TCP port this test may use (env DUET_PORT_BASE, default 23000);
#                 a test uses PORT_BASE .. PORT_BASE+19
#   $BUILD        the build dir (env DUET_BUILD, default build; relative to the repo)
#   $DUETD $DUETCTL
#   $QUICK        1 under `run.sh --quick`: use less data
#   $TIMEOUT_SCALE  3 on sanitizer builds (env DUET_TIMEOUT_SCALE); wait_for uses it
#   start_node NAME PORT [config lines...]   start duetd in the background, wait until
#                                           it answers; config in $T/NAME.conf, log in
#                                           $T/NAME.log; restarts reuse the config
#   stop_node NAME [SIGNAL]                 signal it (TERM), reap it; after TERM the
#                                           exit status must be 0
#   node_pid NAME / ctl NAME ARGS...        its PID / duetctl against its socket
#   node_ready NAME                         its control socket answers and its NBD
#                                           port listens
#   nbd_uri PORT VOLUME                     nbd://127.0.0.1:PORT/VOLUME
#   wait_for [-t SECS] CMD...               poll until CMD succeeds (default 30 s)
#   port_listening PORT / port_connections PORT   (ss, without connecting)
#   track_pid PID / untrack_pids            background helpers the exit trap ends
#   step MSG / fail MSG / skip MSG / need TOOL...   (skip exits 77: counted as skipped)
#   log_mark NAME / log_since NAME          lines node NAME logged since the mark
#   sha FILE
#   write_config NAME PORT [lines...]       write $T/NAME.conf (start_node does it)
#   need_fio_nbd                            skip unless fio has the nbd engine
#   proxy_pair_setup                        a loopback proxy pair's ports (P=PORT_BASE,
#                                           A_NBD, A_PROXY, B_NBD, B_PROXY = P..P+3; the
#                                           links take P+4, P+5), MB of data (64, 32
#                                           with --quick), the secret $T/cluster.key
#   proxy_pair_lines ME PEER PROXY_PORT LOCAL_IC PEER_IC [TIMEOUT_MS]
#                                           config lines (after [nbd] listen) of one
#                                           node of a proxy pair on loopback: its proxy
#                                           port, [ic] with one link and the secret
#                                           $T/cluster.key, [proxy] timeout_ms if given
#   proxy_up NODE / proxy_serves NODE VOLUME   NODE's proxy is up / its proxy
#                                           port lists VOLUME (for wait_for)
#   shelf_of NAME [VIEWER]                  where node VIEWER (default NAME) sees NAME's
#                                           shelf: $T/NAME-shelf, or on own mounts
#                                           $T/mnt-VIEWER/NAME-shelf
#   make_shelf NAME                         create NAME's shelf (in the backing
#                                           directory on own mounts)
# The two-host stand-in (issue 16), opt-in with env DUET_OWN_MOUNTS=1 (set
# before sourcing this file): every node NAME reaches every shelf through a
# FUSE mount of its own, $T/mnt-NAME, of one backing directory $SHELVES
# (libfuse3's packaged example passthrough_ll, `-o writeback,cache=always`,
# so each mount keeps its own dirty and clean pages as a host would). The
# backing directory is on tmpfs ($T when it is tmpfs, else a directory in
# /dev/shm, removed at exit; $T/shelves links to it): the example opens the
# backing file with the client's O_DIRECT and writes it from an unaligned
# buffer, which ext4 refuses (EINVAL) and tmpfs takes.
# write_config mounts it and points [node] shelf there; the NVRAM log and
# the partner image stay local ($T/NAME-shelf.nvram, $T/NAME-shelf.partner,
# as in the plain layout). The test is skipped when /dev/fuse, fusermount3
# or the example is missing; the exit trap unmounts.
#   OWN_MOUNTS                              1 on that layout, else 0
#   SHELVES                                 the backing directory (the "disk")
#   own_mount NAME                          mount $T/mnt-NAME (write_config does it)
#   drop_caches                             sync, then drop clean caches (root):
#                                           time passing on real hosts
# From tests/node-config.sh (sourced here):
#   write_node_config FILE ID DIR [ITEM...] the one duetd INI writer
#   write_cluster_key FILE                  a fresh interconnect secret
# From tests/netns.sh (sourced here; needs root):
#   netns_pair NS_A NS_B / veth_link NS_A IF_A ADDR_A NS_B IF_B ADDR_B /
#   netns_cleanup                           namespaces and veth pairs; a test
#                                           that makes them calls netns_cleanup
#                                           from its exit trap
# PYTHONPATH holds tools/python (duet_nbd.py, the shared NBD client module).
# On exit it stops only the processes it started (by PID), checks their logs
# for sanitizer reports, prints the log tails when the test failed, and prints
# one line: "PASS name (Ns)", "FAIL name (Ns) at: step" or "SKIP name".
# DUET_VERBOSE=1 prints each step.

TEST_NAME=$(basename "$0" .sh)
TEST_DIR=$(cd "$(dirname "$0")" && pwd) # the test script's folder
TEST_START=$SECONDS
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BUILD=${DUET_BUILD:-build}
case $BUILD in
/*) ;;
*) BUILD=$REPO_ROOT/$BUILD ;;
esac
DUETD=$BUILD/src/node/duetd
DUETCTL=$BUILD/tools/duetctl
PORT_BASE=${DUET_PORT_BASE:-23000}
# shellcheck source=tests/node-config.sh
. "$REPO_ROOT/tests/node-config.sh"
# shellcheck source=tests/netns.sh
. "$REPO_ROOT/tests/netns.sh"
export PYTHONPATH=$REPO_ROOT/tools/python${PYTHONPATH:+:$PYTHONPATH}
# The nodes a test starts run at normal priority (write_node_config): their
# clients share the same two cores, and a real-time node starves them, which
# duetd's default (auto) becomes on a loaded machine; realtime-auto.sh tests
# the switch, bench/soak-links.sh measures the default. DUET_REALTIME=auto or
# on runs a test with it.
export DUET_REALTIME=${DUET_REALTIME:-off}
# Slow builds (ASan) may scale every timeout; the runner sets this.
TIMEOUT_SCALE=${DUET_TIMEOUT_SCALE:-1}
QUICK=${DUET_QUICK:-0}

# Sanitizer reports go to the node logs; make them complete and findable.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-}

T=$(mktemp -d "${TMPDIR:-/tmp}/duet-$TEST_NAME.XXXXXX")
# Clients that drop files in the working directory (fio's verify state) do
# it in the temp dir, never in the checkout.
cd "$T" || exit 1

declare -A NODE_PID=()  # node name -> pid of its duetd
declare -A NODE_PORT=() # node name -> NBD port
declare -a EXTRA_PIDS=() # other background processes the test registered
_STEP=""

step() {
	_STEP=$*
	[ "${DUET_VERBOSE:-0}" = 1 ] && echo "-- $*" >&2
	return 0
}

fail() {
	echo "FAIL: ${_STEP:+[$_STEP] }$*" >&2
	exit 1
}

# skip MSG: the test cannot run here (a missing tool); the runner counts it
# as skipped, not passed.
skip() {
	echo "SKIP: $*" >&2
	exit 77
}

# need TOOL...: skip unless every TOOL is on PATH.
need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (scripts/deps.sh installs it)"
	done
}

# True while PID is a live (not zombie) process.
_alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$st" != Z ] && [ "$st" != X ]
}

# wait_for [-t SECS] CMD...: run CMD until it succeeds; fail after SECS
# (default 30, times DUET_TIMEOUT_SCALE). Polls, never sleeps blindly.
wait_for() {
	local t=30
	if [ "${1:-}" = -t ]; then
		t=$2
		shift 2
	fi
	local deadline=$((SECONDS + t * TIMEOUT_SCALE))
	local delay=0.01
	while ! "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			echo "wait_for: timed out after $((t * TIMEOUT_SCALE))s: $*" >&2
			return 1
		fi
		sleep $delay
		case $delay in
		0.01) delay=0.02 ;;
		0.02) delay=0.05 ;;
		*) delay=0.1 ;;
		esac
	done
}

nbd_uri() { echo "nbd://127.0.0.1:$1/$2"; }

# The TCP port is listening (checked without connecting, so the server logs
# nothing for it).
port_listening() {
	[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# Number of established server-side connections on PORT.
port_connections() {
	ss -Htn state established "sport = :$1" 2>/dev/null | wc -l
}

# write_config NAME PORT [lines...]: write $T/NAME.conf (write_node_config:
# [node] with the defaults, [nbd] listen = 127.0.0.1:PORT, then the lines),
# make its shelf, print its path. On own mounts: mount $T/mnt-NAME first,
# the shelf there, the NVRAM log and partner image on local files (the
# test's lines come after these and win).
write_config() {
	local name=$1 port=$2
	shift 2
	local conf=$T/$name.conf
	local -a own=()
	make_shelf "$name"
	if [ "$OWN_MOUNTS" = 1 ]; then
		own_mount "$name"
		own=("shelf = $(shelf_of "$name")" "[mirror]" "log = $T/$name-shelf.nvram"
			"partner_image = $T/$name-shelf.partner")
	fi
	write_node_config "$conf" "$name" "$T" ${own[@]+"${own[@]}"} "[nbd]" "listen = 127.0.0.1:$port" "$@"
	echo "$conf"
}

# --- own mounts: the two-host stand-in (see the header) ---
OWN_MOUNTS=${DUET_OWN_MOUNTS:-0}
declare -A MOUNT_PID=() # mount point -> pid of the passthrough_ll serving it
PASSTHROUGH=""          # the built example (own_mounts_prepare)
SHELVES=""              # the backing directory (own_mounts_prepare)
_SHELVES_SHM=""         # ... when made in /dev/shm: removed at exit

shelf_of() {
	if [ "$OWN_MOUNTS" = 1 ]; then
		echo "$T/mnt-${2:-$1}/$1-shelf"
	else
		echo "$T/$1-shelf"
	fi
}

make_shelf() {
	if [ "$OWN_MOUNTS" = 1 ]; then
		mkdir -p "$SHELVES/$1-shelf"
	else
		mkdir -p "$T/$1-shelf"
	fi
}

# passthrough_build: print the path of libfuse3's example passthrough_ll,
# compiled from the packaged source into a cache dir outside the repo the
# first time (into a temp name, then renamed: concurrent tests may race).
# 1 with a reason on stderr when it cannot be had.
passthrough_build() {
	local dir=${XDG_CACHE_HOME:-$HOME/.cache}/duet src
	local bin=$dir/passthrough_ll
	if [ ! -x "$bin" ]; then
		src=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
		[ -r "$src" ] || { echo "$src missing (scripts/deps.sh installs libfuse3-dev)" >&2; return 1; }
		command -v cc >/dev/null && pkg-config --exists fuse3 ||
			{ echo "no cc or no fuse3 pkg-config (scripts/deps.sh installs them)" >&2; return 1; }
		mkdir -p "$dir" || return 1
		# shellcheck disable=SC2046 # pkg-config's words
		cc -O2 -o "$bin.$$" "$src" $(pkg-config fuse3 --cflags --libs) >&2 ||
			{ rm -f "$bin.$$"; echo "cannot build $src" >&2; return 1; }
		mv -f "$bin.$$" "$bin"
	fi
	echo "$bin"
}

# own_mounts_prepare: skip unless the stand-in can run here; build the
# example. Called at the end of this file when DUET_OWN_MOUNTS=1.
own_mounts_prepare() {
	local why
	[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] || skip "own mounts: no usable /dev/fuse"
	command -v fusermount3 >/dev/null || skip "own mounts: fusermount3 is not installed (scripts/deps.sh installs fuse3)"
	PASSTHROUGH=$(passthrough_build 2>"$T/passthrough-build.out") || {
		why=$(tail -n 1 "$T/passthrough-build.out")
		skip "own mounts: ${why:-cannot build passthrough_ll}"
	}
	if [ "$(stat -f -c %T "$T")" = tmpfs ]; then
		SHELVES=$T/shelves
		mkdir -p "$SHELVES"
	elif [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
		SHELVES=$(mktemp -d "/dev/shm/duet-$TEST_NAME.XXXXXX")
		_SHELVES_SHM=$SHELVES
		ln -s "$SHELVES" "$T/shelves"
	else
		skip "own mounts: no tmpfs for the backing directory (neither $T nor /dev/shm)"
	fi
}

_mounted() { mountpoint -q "$1" 2>/dev/null; }

# own_mount NAME: node NAME's own mount of the backing directory at
# $T/mnt-NAME (once; its passthrough_ll runs in the foreground of a
# background job, so that its PID is ours to end).
own_mount() {
	local mp=$T/mnt-$1
	if [ -n "${MOUNT_PID[$mp]:-}" ]; then
		_alive "${MOUNT_PID[$mp]}" && _mounted "$mp" && return 0
		fail "the mount $mp is gone (passthrough_ll ${MOUNT_PID[$mp]} ended): $(tail -n 3 "$T/fuse-$1.out")"
	fi
	mkdir -p "$mp"
	"$PASSTHROUGH" -f -o "source=$SHELVES,writeback,cache=always" "$mp" >>"$T/fuse-$1.out" 2>&1 </dev/null &
	MOUNT_PID[$mp]=$!
	wait_for -t 10 _mounted "$mp" || fail "passthrough_ll did not mount $mp: $(tail -n 3 "$T/fuse-$1.out")"
}

# own_mounts_cleanup: unmount what own_mount mounted (by mount point; lazily
# when still busy), and end its passthrough_ll (by PID) if unmounting did
# not. From the exit trap, after the nodes have ended.
own_mounts_cleanup() {
	local mp pid deadline
	# Also a mount made in a subshell (its PID unknown here): by mount point.
	for mp in "$T"/mnt-*; do
		_mounted "$mp" || continue
		fusermount3 -u "$mp" 2>/dev/null || fusermount3 -u -z "$mp" 2>/dev/null ||
			echo "own mounts: cannot unmount $mp" >&2
	done
	for mp in "${!MOUNT_PID[@]}"; do
		pid=${MOUNT_PID[$mp]}
		deadline=$((SECONDS + 10))
		while _alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.02; done
		_alive "$pid" && kill -s TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		unset "MOUNT_PID[$mp]"
	done
	if [ -n "$_SHELVES_SHM" ]; then
		if [ "${DUET_KEEP_TMP:-0}" = 1 ]; then
			echo "kept the backing directory $_SHELVES_SHM" >&2
		else
			rm -rf "$_SHELVES_SHM"
		fi
		_SHELVES_SHM=""
	fi
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# need_fio_nbd: skip unless fio has its nbd engine.
need_fio_nbd() {
	fio --enghelp 2>/dev/null | grep -qw nbd || skip "this fio has no nbd engine"
}

# proxy_pair_setup: the ports, data size and secret of a proxy pair test.
proxy_pair_setup() {
	P=$PORT_BASE
	A_NBD=$P A_PROXY=$((P + 1)) B_NBD=$((P + 2)) B_PROXY=$((P + 3))
	MB=64
	[ "$QUICK" = 1 ] && MB=32
	write_cluster_key "$T/cluster.key"
}

# proxy_pair_lines ME PEER PROXY_PORT LOCAL_IC PEER_IC [TIMEOUT_MS]: the
# start_node lines of one node of a proxy pair on loopback (one link).
proxy_pair_lines() {
	printf '%s\n' "proxy_listen = 127.0.0.1:$3" "[ic]" "partner = $2" \
		"cluster_id = proxy-test" "secret_file = $T/cluster.key" \
		"link = ic0 127.0.0.1:$4 127.0.0.1:$5"
	[ -z "${6:-}" ] || printf '%s\n' "[proxy]" "timeout_ms = $6"
}

# proxy_up NODE: its proxy is up. proxy_serves NODE VOLUME: its proxy port
# lists VOLUME.
proxy_up() { ctl "$1" status --json | jq -e '.proxy.state == "up"'; }
proxy_serves() {
	ctl "$1" status --json | jq -e --arg v "$2" 'any(.volumes[]; .name == $v and .port == "proxy")'
}

node_ready() {
	local name=$1
	"$DUETCTL" --socket "$T/$name.sock" status >/dev/null 2>&1 && port_listening "${NODE_PORT[$name]}"
}

# start_node NAME PORT [config lines...]: start duetd with a fresh config (or
# the existing one when restarting), log to $T/NAME.log, wait until its
# control socket answers and its NBD port listens.
start_node() {
	local name=$1 port=$2
	shift 2
	local conf=$T/$name.conf
	if [ ! -e "$conf" ] || [ $# -gt 0 ]; then
		write_config "$name" "$port" "$@" >/dev/null
	fi
	[ -x "$DUETD" ] || fail "no duetd at $DUETD (build first, or set DUET_BUILD)"
	if [ -n "${NODE_PID[$name]:-}" ] && _alive "${NODE_PID[$name]}"; then
		fail "node $name already runs (pid ${NODE_PID[$name]})"
	fi
	echo "=== $(date +%T) start $name" >>"$T/$name.log"
	"$DUETD" --config "$conf" 2>>"$T/$name.log" &
	NODE_PID[$name]=$!
	NODE_PORT[$name]=$port
	local deadline=$((SECONDS + 30 * TIMEOUT_SCALE))
	while ! node_ready "$name"; do
		if ! _alive "${NODE_PID[$name]}"; then
			local rc=0
			wait "${NODE_PID[$name]}" || rc=$?
			unset "NODE_PID[$name]"
			fail "duetd $name exited with status $rc while starting"
		fi
		[ $SECONDS -lt $deadline ] || fail "duetd $name not ready after $((30 * TIMEOUT_SCALE))s"
		sleep 0.02
	done
}

# stop_node NAME [SIGNAL]: send SIGNAL (default TERM) and reap it. After TERM
# the exit status must be 0 (a clean shutdown; under ASan also leak-free).
stop_node() {
	local name=$1 sig=${2:-TERM}
	local pid=${NODE_PID[$name]:-}
	[ -n "$pid" ] || fail "stop_node: node $name is not running"
	kill -s "$sig" "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 30 * TIMEOUT_SCALE)) rc=0
	while _alive "$pid"; do
		if [ $SECONDS -ge $deadline ]; then
			kill -s KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			unset "NODE_PID[$name]"
			fail "duetd $name did not exit within $((30 * TIMEOUT_SCALE))s of SIG$sig"
		fi
		sleep 0.02
	done
	wait "$pid" 2>/dev/null || rc=$?
	unset "NODE_PID[$name]"
	echo "=== $(date +%T) stopped $name with SIG$sig: status $rc" >>"$T/$name.log"
	if [ "$sig" = TERM ] || [ "$sig" = INT ]; then
		[ $rc -eq 0 ] || fail "duetd $name exited with status $rc after SIG$sig"
	fi
	return 0
}

node_pid() { echo "${NODE_PID[$1]}"; }

# ctl NAME ARGS...: duetctl against node NAME.
ctl() {
	local name=$1
	shift
	"$DUETCTL" --socket "$T/$name.sock" "$@"
}

# Register a background process so that the exit trap ends it; forget them
# all once the test has reaped them itself.
track_pid() { EXTRA_PIDS+=("$1"); }
untrack_pids() { EXTRA_PIDS=(); }

log_mark() {
	local f=$T/$1.log
	if [ -e "$f" ]; then
		wc -l <"$f" >"$T/.mark-$1"
	else
		echo 0 >"$T/.mark-$1"
	fi
}

log_since() {
	local n
	n=$(cat "$T/.mark-$1" 2>/dev/null || echo 0)
	tail -n +"$((n + 1))" "$T/$1.log"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Sanitizer and crash reports in a log.
_sanitizer_report() {
	grep -E -m5 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak)Sanitizer' "$1" 2>/dev/null
}

_cleanup() {
	local rc=$? name pid f
	set +e
	trap - EXIT
	for pid in "${EXTRA_PIDS[@]}"; do
		kill -s TERM "$pid" 2>/dev/null
	done
	local deadline=$((SECONDS + 10))
	for pid in "${EXTRA_PIDS[@]}"; do
		while _alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.02; done
		_alive "$pid" && kill -s KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	for name in "${!NODE_PID[@]}"; do
		pid=${NODE_PID[$name]}
		kill -s TERM "$pid" 2>/dev/null
		local deadline=$((SECONDS + 30 * TIMEOUT_SCALE))
		while _alive "$pid" && [ $SECONDS -lt $deadline ]; do
			sleep 0.02
		done
		_alive "$pid" && kill -s KILL "$pid" 2>/dev/null
		local st=0
		wait "$pid" 2>/dev/null || st=$?
		echo "=== $(date +%T) stopped $name at exit: status $st" >>"$T/$name.log"
		if [ $st -ne 0 ] && { [ $rc -eq 0 ] || [ $rc -eq 77 ]; }; then
			echo "FAIL: duetd $name exited with status $st at the end of the test" >&2
			rc=1
		fi
	done
	for f in "$T"/*.log; do
		[ -e "$f" ] || continue
		if _sanitizer_report "$f" >/dev/null; then
			echo "FAIL: sanitizer report in $(basename "$f"):" >&2
			_sanitizer_report "$f" >&2
			{ [ $rc -eq 0 ] || [ $rc -eq 77 ]; } && rc=1
		fi
	done
	# Namespaces a test made and did not remove itself (tests/netns.sh).
	netns_cleanup
	# Own mounts, now that no node holds a file open on them.
	own_mounts_cleanup
	if [ $rc -eq 77 ]; then
		echo "SKIP $TEST_NAME ($((SECONDS - TEST_START))s)"
	elif [ $rc -ne 0 ]; then
		for f in "$T"/*.log; do
			[ -e "$f" ] || continue
			echo "--- last lines of $(basename "$f") ---" >&2
			tail -n "${DUET_LOG_TAIL:-30}" "$f" >&2
		done
		echo "FAIL $TEST_NAME ($((SECONDS - TEST_START))s)${_STEP:+ at: $_STEP}"
	else
		echo "PASS $TEST_NAME ($((SECONDS - TEST_START))s)"
	fi
	if [ "${DUET_KEEP_TMP:-0}" = 1 ]; then
		echo "kept $T" >&2
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[ "$OWN_MOUNTS" != 1 ] || own_mounts_prepare
