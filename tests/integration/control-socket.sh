#!/usr/bin/env bash
# The control socket (issue 12, finding 6; docs/SECURITY.md "Control
# socket"): created 0600 whatever the umask, or 0660 with [node]
# control_group; every caller checked by SO_PEERCRED (root, the daemon's
# user, a member of the group), a refused one gets one JSON error line; a
# file that is not a socket at the path is never removed (duetd exits 2);
# a dead daemon's socket is replaced.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need setpriv stat
[ "$(id -u)" = 0 ] || skip "needs root (to run duetctl as user nobody)"
id nobody >/dev/null 2>&1 || skip "no user nobody"
getent group daemon >/dev/null || skip "no group daemon"

P=$PORT_BASE
chmod 0755 "$T" # nobody may reach the socket: its mode and the check are tested

# as_nobody GROUPS CMD...: CMD as nobody:nogroup with the supplementary
# GROUPS (comma-separated, "" for none).
as_nobody() {
	local groups=$1
	shift
	if [ -n "$groups" ]; then
		setpriv --reuid=nobody --regid=nogroup --groups="$groups" "$@"
	else
		setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
	fi
}

# refused GROUPS: duetctl as nobody fails with one line and creates nothing.
refused() {
	local rc=0
	as_nobody "$1" "$DUETCTL" --socket "$T/a.sock" volume create evil 1M \
		>"$T/nobody.out" 2>"$T/nobody.err" || rc=$?
	[ $rc -ne 0 ] || fail "nobody (groups '$1') created a volume"
	[ "$(wc -l <"$T/nobody.err")" -eq 1 ] || fail "not one line: $(cat "$T/nobody.err")"
	! ctl a volume list | grep -qw evil || fail "volume evil exists"
}

step "0600 under umask 000"
umask 000
start_node a "$P"
umask 022
mode=$(stat -c %a "$T/a.sock")
[ "$mode" = 600 ] || fail "control socket mode $mode under umask 000, want 600"
ctl a status >/dev/null || fail "root is refused"

step "nobody is refused by the mode"
refused ""
grep -qi 'permission denied' "$T/nobody.err" || fail "no clear line: $(cat "$T/nobody.err")"

step "nobody is refused by SO_PEERCRED"
chmod 0666 "$T/a.sock" # as if the mode were loosened: the peer check still holds
refused ""
grep -q 'permission denied: uid 65534' "$T/nobody.err" ||
	fail "the node did not refuse with its own line: $(cat "$T/nobody.err")"
grep -q 'control connection of uid 65534 refused' "$T/a.log" || fail "the refusal is not logged"
stop_node a

step "control_group: 0660, members allowed, others refused"
start_node a "$P" "[node]" "control_group = daemon"
[ "$(stat -c '%a %G' "$T/a.sock")" = "660 daemon" ] ||
	fail "control socket $(stat -c '%a %G' "$T/a.sock"), want 660 daemon"
as_nobody daemon "$DUETCTL" --socket "$T/a.sock" volume create ok 1M >/dev/null ||
	fail "a member of control_group is refused"
refused ""
chmod 0666 "$T/a.sock"
refused ""
grep -q 'permission denied: uid 65534' "$T/nobody.err" || fail "no clear line: $(cat "$T/nobody.err")"

step "a dead daemon's socket is replaced"
stop_node a KILL
[ -S "$T/a.sock" ] || fail "SIGKILL removed the socket?"
start_node a "$P"
ctl a status >/dev/null || fail "no status after replacing a stale socket"
stop_node a

step "an unknown control_group: exit 2, one line"
write_config a "$P" "[node]" "control_group = no-such-group-$$" >/dev/null
rc=0
"$DUETD" --config "$T/a.conf" 2>"$T/err.out" || rc=$?
[ $rc -eq 2 ] || fail "exit $rc, want 2: $(cat "$T/err.out")"
[ "$(wc -l <"$T/err.out")" -eq 1 ] || fail "not one line: $(cat "$T/err.out")"

step "a regular file at the path: exit 2, one line, the file intact"
write_config a "$P" >/dev/null
echo "precious" >"$T/a.sock"
before=$(sha "$T/a.sock")
rc=0
"$DUETD" --config "$T/a.conf" 2>"$T/err.out" || rc=$?
[ $rc -eq 2 ] || fail "exit $rc, want 2: $(cat "$T/err.out")"
[ "$(wc -l <"$T/err.out")" -eq 1 ] || fail "not one line: $(cat "$T/err.out")"
grep -q 'not a socket' "$T/err.out" || fail "the line does not say why: $(cat "$T/err.out")"
[ -f "$T/a.sock" ] && [ "$(sha "$T/a.sock")" = "$before" ] || fail "the file was touched"
