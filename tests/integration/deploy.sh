#!/usr/bin/env bash
# docs/DEPLOY.md, followed literally in network namespaces: hosta and hostb
# (each its own namespace, joined by a veth interconnect 198.51.100.0/30)
# and a client namespace holding the client network 192.0.2.0/24 on a
# bridge. Every fenced block of the guide tagged `deploy:host-a`,
# `deploy:host-b` or `deploy:client` runs, in the guide's order, in that
# namespace (bash -euo pipefail, in the repository); a block tagged
# `deploy:HOST:PATH` is written to PATH. Paths under /etc/duet, /srv/duet,
# /var/lib/duet and /run/duet move into the test's directory (the two
# "hosts" share it, as they share /srv/duet). `systemctl enable --now|start|
# stop duetd@X` is a stand-in that runs the ExecStart= line of
# dist/systemd/duetd@.service.in (its @SBINDIR@ and @SYSCONFDIR@ filled in,
# %i = X) with NOTIFY_SOCKET set, and returns at READY=1, as systemd does.
# So a guide that no longer matches the configuration keys, the unit, the
# ports of the firewall, duetctl or the status members fails here.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need ip nft jq nbdinfo curl python3
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"

GUIDE=$REPO_ROOT/docs/DEPLOY.md
UNIT=$REPO_ROOT/dist/systemd/duetd@.service.in
[ -f "$UNIT" ] || fail "no unit $UNIT"
NSA=dpa$$ NSB=dpb$$ NSC=dpc$$

cleanup_deploy() {
	local f
	for f in "$T"/pids/*.pid; do
		[ -e "$f" ] || continue
		kill -s TERM "$(cat "$f")" 2>/dev/null || true
	done
	netns_cleanup
}
trap '_rc=$?; cleanup_deploy; (exit $_rc); _cleanup' EXIT

step "namespaces: hosta, hostb, the client network"
netns_pair "$NSA" "$NSB" || skip "cannot create network namespaces"
ip netns add "$NSC" || fail "cannot create $NSC"
NETNS_MADE+=("$NSC")
ip -n "$NSC" link set lo up
# Interface names are made in this namespace first: unique ones.
veth_link "$NSA" "ia$$" 198.51.100.1/30 "$NSB" "ib$$" 198.51.100.2/30 || fail "interconnect veth"
ip -n "$NSC" link add br0 type bridge
ip -n "$NSC" addr add 192.0.2.1/24 dev br0
ip -n "$NSC" link set br0 up
veth_link "$NSA" "ea$$" 192.0.2.10/24 "$NSC" "pa$$" 192.0.2.100/32 || fail "client veth a"
veth_link "$NSB" "eb$$" 192.0.2.11/24 "$NSC" "pb$$" 192.0.2.101/32 || fail "client veth b"
for i in "pa$$" "pb$$"; do
	ip -n "$NSC" addr flush dev "$i"
	ip -n "$NSC" link set "$i" master br0
done

step "the systemctl stand-in and the moved paths"
mkdir -p "$T/bin" "$T/sbin" "$T/pids" "$T/etc" "$T/srv" "$T/var/lib" "$T/run"
ln -s "$BUILD/src/node/duetd" "$T/sbin/duetd"
ln -s "$DUETCTL" "$T/bin/duetctl"
cat >"$T/bin/systemctl" <<'PY'
#!/usr/bin/env python3
# systemctl enable --now|start|stop|restart duetd@X, minus systemd: the
# unit's ExecStart= with NOTIFY_SOCKET; returns at READY=1 (Type=notify).
import os, signal, socket, subprocess, sys, time
env = os.environ
args = [a for a in sys.argv[1:] if a != "--now"]
if len(args) != 2 or not args[1].startswith("duetd@"):
    sys.exit("systemctl stand-in: unsupported: %r" % sys.argv[1:])
verb, inst = args[0], args[1].split("@", 1)[1].removesuffix(".service")
pidfile = os.path.join(env["DEPLOY_PIDS"], inst + ".pid")

def runs(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False

def stop():
    try:
        pid = int(open(pidfile).read())
    except OSError:
        return
    if runs(pid):
        os.kill(pid, signal.SIGTERM)
        end = time.time() + 60  # TimeoutStopSec
        while runs(pid) and time.time() < end:
            time.sleep(0.05)
        if runs(pid):
            os.kill(pid, signal.SIGKILL)
    os.unlink(pidfile)

def start():
    line = [l for l in open(env["DEPLOY_UNIT"]) if l.startswith("ExecStart=")]
    if len(line) != 1:
        sys.exit("systemctl stand-in: want one ExecStart= in the unit")
    cmd = (line[0].split("=", 1)[1].strip()
           .replace("@SBINDIR@", env["DEPLOY_SBINDIR"])
           .replace("@SYSCONFDIR@", env["DEPLOY_SYSCONFDIR"])
           .replace("%i", inst))
    sock_path = os.path.join(env["DEPLOY_PIDS"], inst + ".notify")
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(0.2)
    log = open(os.path.join(env["DEPLOY_LOGS"], inst + ".log"), "ab")
    p = subprocess.Popen(cmd.split(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         env=dict(env, NOTIFY_SOCKET=sock_path), start_new_session=True)
    open(pidfile, "w").write("%d\n" % p.pid)
    end = time.time() + 90  # TimeoutStartSec
    while time.time() < end:
        try:
            msg = ns.recv(4096).decode()
        except socket.timeout:
            if p.poll() is not None:
                sys.exit("duetd@%s exited with status %d while starting" % (inst, p.returncode))
            continue
        if "READY=1" in msg.split("\n"):
            return
    sys.exit("duetd@%s: no READY=1" % inst)

if verb in ("enable", "start"):
    start()
elif verb == "stop":
    stop()
elif verb == "restart":
    stop(); start()
else:
    sys.exit("systemctl stand-in: unsupported verb %s" % verb)
PY
chmod +x "$T/bin/systemctl"
export DEPLOY_PIDS=$T/pids DEPLOY_LOGS=$T DEPLOY_UNIT=$UNIT DEPLOY_SBINDIR=$T/sbin \
	DEPLOY_SYSCONFDIR=$T/etc
moved() { # the guide's paths, moved into $T
	sed -e "s#/etc/duet#$T/etc/duet#g" -e "s#/srv/duet#$T/srv/duet#g" \
		-e "s#/var/lib/duet#$T/var/lib/duet#g" -e "s#/run/duet#$T/run/duet#g"
}

step "extract the tagged blocks of the guide"
python3 - "$GUIDE" "$T/blocks" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
out = sys.argv[2]
os.makedirs(out)
blocks = re.findall(r"^```[a-z]+ deploy:(\S+)\n(.*?)^```$", text, re.S | re.M)
if not blocks:
    sys.exit("no deploy: blocks in the guide")
for i, (tag, body) in enumerate(blocks):
    with open(os.path.join(out, "%02d" % i), "w") as f:
        f.write(tag + "\n" + body)
print(len(blocks), "blocks", file=sys.stderr)
PY
ns_of() {
	case $1 in
	host-a) echo "$NSA" ;;
	host-b) echo "$NSB" ;;
	client) echo "$NSC" ;;
	*) fail "unknown host '$1' in a deploy: tag" ;;
	esac
}
n_files=0 n_cmds=0
for f in "$T"/blocks/*; do
	tag=$(head -n 1 "$f")
	host=${tag%%:*}
	ns=$(ns_of "$host")
	if [ "$tag" != "$host" ]; then
		path=$(echo "${tag#*:}" | moved)
		step "guide: write ${tag#*:} (on $host)"
		mkdir -p "$(dirname "$path")"
		tail -n +2 "$f" | moved >"$path"
		n_files=$((n_files + 1))
		continue
	fi
	step "guide: run on $host: $(sed -n 2p "$f" | cut -c1-60)"
	tail -n +2 "$f" | moved >"$f.sh"
	(cd "$REPO_ROOT" && timeout $((120 * TIMEOUT_SCALE)) ip netns exec "$ns" \
		env PATH="$T/bin:$PATH" bash -euo pipefail "$f.sh") >"$f.out" 2>&1 ||
		fail "the guide's block on $host failed: $(cat "$f.sh") -> $(tail -n 20 "$f.out")"
	n_cmds=$((n_cmds + 1))
	for p in "$T"/pids/*.pid; do
		[ -e "$p" ] && track_pid "$(cat "$p")"
	done
done
[ $n_files -eq 2 ] || fail "want the two configurations in the guide, found $n_files"
[ $n_cmds -ge 10 ] || fail "only $n_cmds command blocks in the guide"

step "both nodes up, each serving its own volume, no takeover left"
for n in a b; do
	"$DUETCTL" --socket "$T/run/duet/$n.sock" status --json |
		jq -e --arg n "$n" '.node == $n and .ha.state == "up" and
			any(.volumes[]; .name == "vol-" + $n and .served_by == $n)' >/dev/null ||
		fail "node $n: $("$DUETCTL" --socket "$T/run/duet/$n.sock" status --json | jq -c .ha)"
done
grep -q "hook .*50-syslog (.*): exit 0" "$T/a.log" || fail "the example hook did not run on a"
echo "deploy guide: $n_files files, $n_cmds command blocks run" >&2

step "stop both as systemd would"
for n in a b; do
	ip netns exec "$([ $n = a ] && echo "$NSA" || echo "$NSB")" "$T/bin/systemctl" stop "duetd@$n"
done
