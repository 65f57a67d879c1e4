#!/usr/bin/env bash
# make demo: start a local duet pair in ./demo and drive it with real NBD
# clients; then kill node a under a client's writes, watch node b take over,
# restart a and give its volume back; relocate the volume to b and move its
# data to b's shelf and back while it stays online; checking the data at
# each step. The pair is left running; `make demo-stop` ends it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# bench/ackclient.py imports the NBD client module from tools/python.
export PYTHONPATH=$top/tools/python${PYTHONPATH:+:$PYTHONPATH}
dir=$top/demo
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
pair=$build/tools/duet-pair

if [ "${1:-}" = --stop ]; then
	pair=$top/tools/duet-pair
	[ -d "$dir" ] && DUET_BUILD=$top/build "$pair" down "$dir"
	[ ! -d "$dir-netns" ] || DUET_BUILD=$top/build "$pair" down "$dir-netns"
	exit 0
fi

# Ports as duet-pair: a NBD P, a proxy P+1, b NBD P+2, b proxy P+3.
P=${DUET_DEMO_PORT:-10809}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
say() { printf '%s\n' "$*"; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}
ctl() {
	local n=$1
	shift
	"$build/tools/duetctl" --socket "$dir/$n.sock" "$@"
}
# until_true SECONDS WHAT CMD...: poll CMD every 50 ms until it succeeds.
until_true() {
	local s=$1 what=$2 end=$((SECONDS + $1))
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || die "$what (waited $s s); logs in $dir/a.log and $dir/b.log"
		sleep 0.05
	done
}
# ha_is NODE STATE [PHASE]
ha_is() {
	local j
	j=$(ctl "$1" status --json) || return 1
	[ "$(jq -r .ha.state <<<"$j")" = "$2" ] && { [ $# -lt 3 ] || [ "$(jq -r .ha.phase <<<"$j")" = "$3" ]; }
}
ha_show() {
	printf '$ duetctl --socket %s status --json | jq .ha\n' "$dir/$1.sock"
	ctl "$1" status --json | jq -c '.ha | {state, phase, reason, last_change, partner}'
}
vol_show() {
	printf '$ duetctl --socket %s status --json | jq .volumes\n' "$dir/$1.sock"
	ctl "$1" status --json | jq -c '.volumes[] | {name, owner, served_by, port}'
}
# sum PORT: SHA-256 of the first 16 MiB of vol-a read through PORT.
sum() { python3 "$top/bench/ackclient.py" sum --port "$1" --export vol-a --length $((16 << 20)); }

# Each demo starts from a fresh pair: the failover story needs a known state.
if [ -d "$dir" ]; then
	"$pair" down "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
fi
step "Start a local pair (nodes a and b) in $dir"
export DUET_BUILD=$build
run "$pair" up "$dir" --size 1G --base-port "$P"

uri=nbd://127.0.0.1:$P/vol-a
step "What node a serves: nbdinfo"
run nbdinfo --list "nbd://127.0.0.1:$P"
run nbdinfo "$uri"

step "Write 16 MiB of random data with qemu-img, read it back and compare"
tmp=$(mktemp -d)
cpid=""
trap '[ -z "$cpid" ] || kill "$cpid" 2>/dev/null; rm -rf "$tmp"' EXIT
head -c 16M /dev/urandom >"$tmp/data.img"
run qemu-img convert -n -f raw -O raw "$tmp/data.img" "$uri"
run qemu-img compare -f raw -F raw "$tmp/data.img" "$uri"

step "Allocation map: the written 16 MiB is data, the rest is a hole"
run nbdinfo --map "$uri"

proxy=nbd://127.0.0.1:$((P + 1))/vol-b
direct=nbd://127.0.0.1:$((P + 2))/vol-b
step "Node b's volume through node a's proxy port (forwarded over the interconnect)"
run nbdinfo "$proxy"
head -c 16M /dev/urandom >"$tmp/data-b.img"
run qemu-img convert -n -f raw -O raw "$tmp/data-b.img" "$proxy"
run qemu-img compare -f raw -F raw "$tmp/data-b.img" "$proxy"

step "The same data, read through node b's own port"
run qemu-img compare -f raw -F raw "$tmp/data-b.img" "$direct"

step "Node status"
run "$build/tools/duetctl" --socket "$dir/a.sock" status
printf '$ duetctl --socket %s status --json | jq .proxy\n' "$dir/a.sock"
"$build/tools/duetctl" --socket "$dir/a.sock" status --json | jq '.proxy | {state, partner, commands, bytes_read, bytes_written, errors, retries, timeouts}'

step "Failover: a client writes to vol-a through node b's proxy port"
client=$top/bench/ackclient.py
viab=nbd://127.0.0.1:$((P + 3))/vol-a
say "bench/ackclient.py writes 4 KiB blocks after the first 16 MiB of vol-a, 4 in flight,"
say "logging every acknowledgement; b forwards them to a over the interconnect."
sum_before=$(sha256sum <"$tmp/data.img" | cut -d' ' -f1)
say "SHA-256 of the 16 MiB written by qemu-img above: $sum_before"
client_run() { # LOG: start the client in the background
	rm -f "$tmp/stop"
	python3 "$client" write --port $((P + 3)) --export vol-a --log "$1" --offset $((16 << 20)) \
		--blocks 4096 --qd 4 --rate 1000 --stop-file "$tmp/stop" >"$1.out" 2>&1 &
	cpid=$!
	until_true 30 "the client got no acknowledgement" grep -q '^A ' "$1"
}
# client_stop LOG: stop the client. A broken connection ends the demo; error
# replies (a write failed instead of waiting) are shown loudly, and the story
# goes on: the read-back below still checks every acknowledged write.
client_stop() {
	touch "$tmp/stop"
	wait "$cpid" || true
	cpid=""
	grep -q '^acked=[0-9]* errors=[0-9]* sent=[0-9]*$' "$1.out" || die "the client failed: $(cat "$1.out")"
	if ! grep -q ' errors=0 ' "$1.out"; then
		printf '\033[1;31mWARNING: %s writes got an error reply instead of waiting (errno %s); a duetd bug\033[0m\n' \
			"$(grep -c '^E ' "$1")" "$(awk '$1 == "E" { print $4 }' "$1" | sort -u | paste -sd,)"
	fi
}
# pause LOG T WHAT T_DONE: the client's longest pause between
# acknowledgements that ends after T and starts before T_DONE (when the
# switch was seen done; later pauses are not the failover's).
pause() {
	local g
	g=$(python3 "$client" gap --log "$1" --from "$2" --to "$4")
	[[ $g =~ gap_ms=([^ ]*).*resume_ms=([^ ]*) ]] || die "no acknowledgement after $3"
	say "The client's writes paused for ${BASH_REMATCH[1]} ms around $3;"
	say "its first write after $3 was acknowledged ${BASH_REMATCH[2]} ms after it."
}
# acked_after LOG T: an acknowledgement stamped after T is in LOG.
acked_after() { awk -v t="$2" '$1 == "A" && $4 + 0 > t + 0 { f = 1; exit } END { exit !f }' "$1"; }
can_take_over() { ctl b status --json | jq -e .ha.takeover_possible; }
until_true 60 "b cannot take over a" can_take_over
client_run "$tmp/w1.log"
ha_show b

step "SIGKILL node a while the client writes"
t_kill=$EPOCHREALTIME
run "$pair" kill "$dir" a
say "b notices the silence on the interconnect and in a's mailbox on the shelf, marks a's"
say "mailbox (a's I/O lease runs out), replays its copy of a's NVRAM log onto a's shelf and"
say "serves vol-a itself; the client's writes wait meanwhile (a stall, not an error)."
until_true 30 "b did not take over" ha_is b takeover serving
t_served=$EPOCHREALTIME
until_true 30 "the client's writes did not resume" acked_after "$tmp/w1.log" "$t_kill"
client_stop "$tmp/w1.log"
ha_show b
vol_show b
pause "$tmp/w1.log" "$t_kill" "the kill" "$t_served"
say "b's log (the monitor's steps):"
grep -h ' ha: ' "$dir/b.log" | tail -4

step "The data after the takeover, read through b"
say "Every block the client saw acknowledged holds its last write:"
run python3 "$client" check --log "$tmp/w1.log" --port $((P + 3)) --export vol-a --offset $((16 << 20))
sum_b=$(sum $((P + 3)))
say "SHA-256 of vol-a's first 16 MiB through b: $sum_b"
[ "$sum_b" = "$sum_before" ] || die "vol-a's first 16 MiB differ after the takeover"
say "identical to what qemu-img wrote."

step "Restart node a: it finds b's mark in its mailbox and waits for giveback"
run "$pair" start "$dir" a
until_true 60 "a does not wait for giveback" ha_is a waiting_for_giveback
ha_show a

step "Give vol-a back: duetctl giveback on b, with the client writing through b"
client_run "$tmp/w2.log"
t_gb=$EPOCHREALTIME
# b hears that a waits from a's next heartbeat (20 ms): until then it
# refuses the giveback, harmlessly, so ask until it accepts.
printf '$ %s\n' "$build/tools/duetctl --socket $dir/b.sock giveback"
until_true 10 "b refuses the giveback" "$build/tools/duetctl" --socket "$dir/b.sock" giveback
say "giveback started"
until_true 60 "a does not serve again" ha_is a up
t_served=$EPOCHREALTIME
until_true 60 "b is not back to up" ha_is b up
until_true 30 "the client's writes did not resume" acked_after "$tmp/w2.log" "$t_gb"
client_stop "$tmp/w2.log"
ha_show a
ha_show b
vol_show b
pause "$tmp/w2.log" "$t_gb" "the giveback" "$t_served"

step "The data after the giveback, read through a's own port"
run python3 "$client" check --log "$tmp/w1.log,$tmp/w2.log" --port "$P" --export vol-a --offset $((16 << 20))
sum_a=$(sum "$P")
say "SHA-256 of vol-a's first 16 MiB through a: $sum_a"
[ "$sum_a" = "$sum_before" ] || die "vol-a's first 16 MiB differ after the giveback"
say "identical to what qemu-img wrote."

# vol_at OWNER SHELF: both nodes say vol-a is OWNER's, served by it, its data
# on SHELF's shelf, and no move runs.
vol_at() {
	local n
	for n in a b; do
		ctl "$n" status --json | jq -e --arg o "$1" --arg h "$2" \
			'.move.state == "idle" and ([.volumes[] | select(.name == "vol-a" and .owner == $o
			 and .served_by == $o and .shelf == $h)] | length == 1)' >/dev/null || return 1
	done
}
shelves_show() {
	printf '$ duetctl --socket %s status --json | jq .volumes\n' "$dir/a.sock"
	ctl a status --json | jq -c '.volumes[] | {name, owner, served_by, shelf}'
}
same_data() { # WHEN: vol-a's first 16 MiB through both nodes' ports
	local x y
	x=$(sum "$P") y=$(sum $((P + 2)))
	[ "$x" = "$sum_before" ] && [ "$y" = "$sum_before" ] || die "vol-a's first 16 MiB differ $1"
	say "SHA-256 of vol-a's first 16 MiB through a's port and b's port: identical to what qemu-img wrote."
}

step "Relocate vol-a to b: its ownership moves, its data stays on a's shelf"
say "b reaches a's shelf ([monitor] partner_shelf) and serves vol-a from it; a's own port"
say "now forwards vol-a to b over the interconnect, so a client may use either node."
printf '$ duetctl --socket %s volume relocate vol-a\n' "$dir/a.sock"
ctl a volume relocate vol-a
until_true 30 "vol-a did not become b's" vol_at b a
shelves_show
same_data "after the relocation"

printf '$ duetctl --socket %s volume relocate vol-a\n' "$dir/b.sock"
ctl b volume relocate vol-a
until_true 30 "vol-a did not come back to a" vol_at a a
say "and back to a the same way."

step "Move vol-a's data to b's shelf, then back to a's, while it stays online"
say "The copy runs in the background (every write reaches both copies), then a cut-over;"
say "after a move the volume belongs to the node whose shelf holds it."
move_to() { # FROM TO: FROM moves vol-a's data to TO's shelf
	printf '$ duetctl --socket %s volume move vol-a --shelf %s\n' "$dir/$1.sock" "$2"
	ctl "$1" volume move vol-a --shelf "$2"
	until_true 60 "vol-a did not move to $2's shelf" vol_at "$2" "$2"
	grep -h "move of vol-a to $2's shelf: done" "$dir/$1.log" | tail -n 1
	shelves_show
	same_data "after the move to $2's shelf"
}
move_to a b
move_to b a

step "Metrics: Prometheus text (node b counted the takeover and the giveback)"
say "duetctl metrics prints what [metrics] listen = ADDR:PORT serves on /metrics:"
printf '$ duetctl --socket %s metrics | head -n 12\n' "$dir/b.sock"
ctl b metrics >"$tmp/metrics"
head -n 12 "$tmp/metrics"
printf '$ duetctl --socket %s metrics | grep -E "^duet_ha_(takeovers|givebacks)_total|^duet_mirror_state"\n' "$dir/b.sock"
grep -E '^duet_ha_(takeovers|givebacks)_total|^duet_mirror_state' "$tmp/metrics"
say "Every metric: docs/OPERATIONS.md."

step "Running it on real hosts: what 'meson install' puts where"
printf '$ meson introspect %s --installed\n' "$build"
meson introspect "$build" --installed | jq -r 'to_entries[] | .value' | sort >"$tmp/installed"
cat "$tmp/installed"
confdir=$(sed -n 's|/example\.conf$||p' "$tmp/installed")
say "The unit duetd@NAME.service runs the node of $confdir/NAME.conf (Type=notify,"
say "watchdog, sandboxed): 'systemctl enable --now duetd@a'; see man duetd, docs/OPERATIONS.md."

# A client of a's own address rides through the kill: the service address
# moves with the volumes (issue 13). Needs network namespaces (root).
netns_demo() {
	local nd=$top/demo-netns np=$((P + 20)) net=${DUET_PAIR_NET:-192.0.2} wpid t0
	if [ "$(id -u)" != 0 ] || ! ip netns add "duet13-demo-$$" 2>/dev/null; then
		step "Service addresses: skipped"
		say "This part runs the pair as two hosts in network namespaces (duet-pair up --netns),"
		say "which needs root; run 'sudo make demo' to see a client of a's own address ride"
		say "through the kill."
		return 0
	fi
	ip netns del "duet13-demo-$$"
	if [ -n "$(ip -4 route show "$net.0/24")" ]; then
		# Taken here (this machine's own network, or another pair):
		# a /24 of 10.214/16 that no route uses.
		local x
		for x in $(seq 20 219); do
			[ -n "$(ip -4 route show "10.214.$x.0/24")" ] || { net=10.214.$x; break; }
		done
	fi
	export DUET_PAIR_NET=$net
	step "Service addresses: the pair as two hosts, each in a network namespace"
	"$pair" down "$nd" >/dev/null 2>&1 || true
	rm -rf "$nd"
	run "$pair" up "$nd" --netns --base-port "$np" --size 256M --monitor mailbox_deadline_ms=300 \
		--monitor lease_ms=500 --monitor watchdog_ms=3000
	addr_show() {
		printf '$ duetctl --socket %s status   (addresses)\n' "$nd/$1.sock"
		"$build/tools/duetctl" --socket "$nd/$1.sock" status | sed -n '/^ADDRESS/,$p'
	}
	addr_show a
	local uri_a=nbd://$net.10:$np/vol-a
	say "A libnbd client (tools/python/nbd_reconnect.py) writes $uri_a, block after block;"
	say "on a lost connection it connects again to the same URI and repeats the write."
	rm -f "$tmp/nstop"
	local py=python3
	[ -x /usr/bin/python3 ] && py=/usr/bin/python3
	"$py" "$top/tools/python/nbd_reconnect.py" "$uri_a" --blocks 512 \
		--stop-file "$tmp/nstop" >"$tmp/nr.out" 2>&1 &
	wpid=$!
	sleep 1
	step "SIGKILL node a: b takes over vol-a and a's address $net.10"
	t0=$EPOCHREALTIME
	run "$pair" kill "$nd" a
	nd_ha() { "$build/tools/duetctl" --socket "$nd/$1.sock" status --json | jq -e ".ha.state == \"$2\""; }
	nd_holds() { "$build/tools/duetctl" --socket "$nd/$1.sock" status --json |
		jq -e ".addresses[] | select(.address == \"$net.10/24\") | .held_by == \"$1\""; }
	until_true 30 "b did not take over" nd_ha b takeover
	until_true 30 "b does not hold $net.10" nd_holds b
	say "b holds $net.10 $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }') ms after the kill:"
	addr_show b
	grep -h 'addr: ' "$nd/b.log" | tail -n 1
	sleep 1
	step "Restart a, give vol-a and $net.10 back"
	run "$pair" start "$nd" a
	until_true 60 "a does not wait for giveback" nd_ha a waiting_for_giveback
	until_true 10 "b refuses the giveback" "$build/tools/duetctl" --socket "$nd/b.sock" giveback
	until_true 60 "a does not serve again" nd_holds a
	addr_show a
	sleep 1
	touch "$tmp/nstop"
	wait "$wpid" || die "the client failed: $(cat "$tmp/nr.out")"
	say "The client, which only ever knew $uri_a:"
	cat "$tmp/nr.out"
	grep -q ' bad=0$' "$tmp/nr.out" || die "acknowledged writes lost"
	run "$pair" down "$nd"
	rm -rf "$nd"
}
netns_demo

cat <<MSG

The pair keeps running:
  node a  $uri          control $dir/a.sock
  node b  $direct   control $dir/b.sock
  node b's volume through node a's proxy port: $proxy
  node a's volume through node b's proxy port: $viab
  try:    nbdinfo $uri
          $build/tools/duetctl --socket $dir/a.sock status --json
          $pair kill $dir a        # and watch b take over
          $pair giveback $dir b    # after '$pair start $dir a'
          $build/tools/duetctl --socket $dir/a.sock metrics
  stop:   make demo-stop
MSG
