#!/usr/bin/env bash
# `meson install` into a staging root (DESTDIR): duetd in sbindir; duetctl,
# duet-nvram and duet-pair in bindir; duetd(8), duetctl(8) and duet.conf(5)
# in mandir, built from scdoc and rendering without a warning; the unit
# duetd@.service in the systemd unit dir, naming the installed duetd and
# sysconfdir; the example configuration in sysconfdir/duet, valid for
# `duetd --check`. Every file `meson introspect --installed` lists must land.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need meson jq

ROOT=$T/root
step "meson install --destdir"
# --no-rebuild: the build is up to date (tests/run.sh ran ninja), and tests
# running beside this one use it.
meson install -C "$BUILD" --no-rebuild --quiet --destdir "$ROOT" >"$T/install.log" 2>&1 ||
	fail "meson install: $(tail -5 "$T/install.log")"

step "every file listed lands"
meson introspect "$BUILD" --installed >"$T/installed.json"
mapfile -t dests < <(jq -r '.[]' "$T/installed.json")
[ ${#dests[@]} -ge 9 ] || fail "only ${#dests[@]} files to install: $(cat "$T/installed.json")"
for d in "${dests[@]}"; do
	[ -e "$ROOT$d" ] || fail "$d not installed"
done
opt() { meson introspect "$BUILD" --buildoptions | jq -r --arg n "$1" '.[] | select(.name == $n) | .value'; }
prefix=$(opt prefix)
abs() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
sbindir=$(abs "$(opt sbindir)") bindir=$(abs "$(opt bindir)")
mandir=$(abs "$(opt mandir)") sysconfdir=$(abs "$(opt sysconfdir)")
for f in "$sbindir/duetd" "$bindir/duetctl" "$bindir/duet-nvram" "$bindir/duet-pair"; do
	[ -x "$ROOT$f" ] || fail "$f missing or not executable"
done
for p in man8/duetd.8 man8/duetctl.8 man5/duet.conf.5; do
	[ -s "$ROOT$mandir/$p" ] || fail "$mandir/$p missing"
done
unit=$(printf '%s\n' "${dests[@]}" | grep '/duetd@\.service$') || fail "no duetd@.service installed"
case $unit in */systemd/system/duetd@.service) ;; *) fail "unit installed at $unit" ;; esac
[ -s "$ROOT$sysconfdir/duet/example.conf" ] || fail "no $sysconfdir/duet/example.conf"
datadir=$(abs "$(opt datadir)")
[ -x "$ROOT$datadir/duet/hooks/50-syslog" ] || fail "no example hook $datadir/duet/hooks/50-syslog"

step "the installed binaries run"
"$ROOT$sbindir/duetd" --version | grep -q '^duetd ' || fail "installed duetd --version"
"$ROOT$bindir/duetctl" --help | grep -q metrics || fail "installed duetctl --help"
"$ROOT$sbindir/duetd" --check --config "$ROOT$sysconfdir/duet/example.conf" >/dev/null ||
	fail "the example configuration is not valid"

step "the unit names what was installed"
grep -qx "ExecStart=$sbindir/duetd --config $sysconfdir/duet/%i.conf" "$ROOT$unit" ||
	fail "ExecStart in the unit: $(grep ExecStart= "$ROOT$unit")"
grep -qx 'Type=notify' "$ROOT$unit" || fail "the unit is not Type=notify"

step "the man pages render without warnings"
for p in man8/duetd.8 man8/duetctl.8 man5/duet.conf.5; do
	page=$ROOT$mandir/$p
	if command -v mandoc >/dev/null 2>&1; then
		mandoc -T lint -W warning "$page" >"$T/lint" 2>&1 || fail "mandoc -T lint $p: $(cat "$T/lint")"
	elif command -v groff >/dev/null 2>&1; then
		groff -man -Tutf8 -ww -z "$page" 2>"$T/lint" || fail "groff $p failed: $(cat "$T/lint")"
		[ ! -s "$T/lint" ] || fail "groff warns on $p: $(cat "$T/lint")"
	else
		skip "neither mandoc nor groff to render the man pages"
	fi
	# And man itself shows the page, name section first.
	if command -v man >/dev/null 2>&1; then
		MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q '^NAME' || fail "man -l $p shows no NAME"
	fi
done
