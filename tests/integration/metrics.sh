#!/usr/bin/env bash
# [metrics] listen: Prometheus text on GET /metrics (libmicrohttpd on the
# reactor) and the same text from `duetctl metrics`; both pass `promtool
# check metrics`; every family the issue names is there with HELP and TYPE;
# the per-volume counters and latency histogram move with I/O (nbdcopy in
# and out); a bad URL gets 404, a bad method 405, junk on the socket no
# crash; the endpoint is off without the key.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need promtool nbdcopy python3

P=$PORT_BASE
M=$((P + 1))
URL=http://127.0.0.1:$M

# http PATH [METHOD]: prints "STATUS CONTENT-TYPE" (the body goes to $T/body).
http() {
	python3 - "$URL$1" "${2:-GET}" "$T/body" <<'PY'
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], method=sys.argv[2])
body = b""
try:
    r = urllib.request.urlopen(req, timeout=10)
    body = r.read()
    print(r.status, r.headers.get("Content-Type", ""))
except urllib.error.HTTPError as e:
    print(e.code)
open(sys.argv[3], "wb").write(body)
PY
}
scrape() { [ "$(http /metrics | cut -d" " -f1)" = 200 ] && cat "$T/body"; }
# value NAME_WITH_LABELS: the sample's value in $T/m.txt
value() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { exit !f }' "$T/m.txt"; }

step "start a node with [metrics] listen"
start_node a "$P" "[metrics]" "listen = 127.0.0.1:$M"
ctl a volume create vol-a 64M >/dev/null
wait_for port_listening "$M"

step "GET /metrics: Prometheus text that promtool accepts"
first=$(http /metrics)
[ "$first" = "200 text/plain; version=0.0.4; charset=utf-8" ] || fail "GET /metrics: $first"
scrape >"$T/m.txt"
promtool check metrics <"$T/m.txt" >"$T/promtool.out" 2>&1 || fail "promtool: $(cat "$T/promtool.out")"
for fam in duet_ha_state duet_ha_phase duet_ha_partner_alive duet_ha_takeovers_total \
	duet_ha_givebacks_total duet_mirror_state duet_mirror_lag_bytes duet_link_up \
	duet_link_rtt_seconds duet_link_bytes_total duet_ccm_instance_load_bytes \
	duet_volume_requests_total duet_volume_bytes_total duet_volume_errors_total \
	duet_volume_request_duration_seconds duet_proxy_forwarded_total duet_proxy_retried_total \
	duet_proxy_refused_total duet_store_queue_depth duet_mirror_log_used_bytes \
	duet_mirror_consistency_points_total; do
	grep -q "^# HELP $fam " "$T/m.txt" || fail "no HELP for $fam"
	grep -q "^# TYPE $fam " "$T/m.txt" || fail "no TYPE for $fam"
done
[ "$(value 'duet_ha_state{state="up"}')" = 1 ] || fail "ha state up is not 1"
[ "$(value duet_ha_takeovers_total)" = 0 ] || fail "takeovers counted on a fresh node"

step "duetctl metrics prints the same families, promtool accepts it"
ctl a metrics >"$T/ctl.txt"
promtool check metrics <"$T/ctl.txt" >"$T/promtool.out" 2>&1 || fail "promtool (duetctl): $(cat "$T/promtool.out")"
diff <(grep '^# ' "$T/m.txt") <(grep '^# ' "$T/ctl.txt") >/dev/null || fail "duetctl metrics and /metrics differ in their families"

step "the volume's counters move with I/O"
V='{volume="vol-a",owner="a",op="write"}'
R='{volume="vol-a",owner="a",op="read"}'
w0=$(value "duet_volume_requests_total$V" || echo 0)
b0=$(value "duet_volume_bytes_total$V" || echo 0)
head -c 8M /dev/urandom >"$T/data"
nbdcopy "$T/data" "$(nbd_uri "$P" vol-a)"
nbdcopy "$(nbd_uri "$P" vol-a)" "$T/back"
cmp -n $((8 << 20)) "$T/data" "$T/back" || fail "read back differs"
scrape >"$T/m.txt"
promtool check metrics <"$T/m.txt" >/dev/null 2>&1 || fail "promtool after I/O"
w1=$(value "duet_volume_requests_total$V")
b1=$(value "duet_volume_bytes_total$V")
r1=$(value "duet_volume_bytes_total$R")
[ "$w1" -gt "$w0" ] || fail "write requests did not grow ($w0 -> $w1)"
[ $((b1 - b0)) -ge $((8 << 20)) ] || fail "write bytes grew by $((b1 - b0)), want >= 8 MiB"
[ "$r1" -ge $((8 << 20)) ] || fail "read bytes $r1, want >= 8 MiB"
cnt=$(value 'duet_volume_request_duration_seconds_count{volume="vol-a",owner="a"}')
inf=$(value 'duet_volume_request_duration_seconds_bucket{volume="vol-a",owner="a",le="+Inf"}')
[ "$cnt" -gt 0 ] && [ "$cnt" = "$inf" ] || fail "histogram count $cnt, +Inf bucket $inf"
[ "$(value "duet_volume_errors_total$V")" = 0 ] || fail "write errors counted"

step "bad URLs get 404, other methods 405, junk no crash"
for u in / /metric /metrics/ /metricsX "/$(head -c 3000 /dev/zero | tr '\0' a)" /%00 /../metrics; do
	code=$(http "$u")
	[ "$code" = 404 ] || [ "$code" = 414 ] || [ "$code" = 400 ] || fail "GET $u: $code, want 404"
done
[ "$(http /nope)" = 404 ] || fail "GET /nope is not 404"
[ "$(http /metrics POST)" = 405 ] || fail "POST /metrics is not 405"
python3 - "$M" <<'PY'
import socket, sys
for junk in (b"\x00\xff" * 2000, b"GET\r\n\r\n", b"GET /metrics HTTP/9.9\r\n\r\n", b"X" * 70000):
    # The node may keep a half-closed connection until its idle timeout:
    # a second is enough to see it did not crash.
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    try:
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
PY
[ "$(http /metrics | cut -d' ' -f1)" = 200 ] || fail "no metrics after the junk"
ctl a status >/dev/null || fail "the node does not answer after the junk"

step "off without the key"
stop_node a
start_node a "$P" "[metrics]"
port_listening "$M" && fail "metrics port open without [metrics] listen"
ctl a metrics | promtool check metrics >/dev/null 2>&1 || fail "duetctl metrics without the endpoint"
stop_node a
