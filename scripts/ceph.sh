#!/usr/bin/env bash
# A throwaway single-node Ceph cluster on 127.0.0.1 for ember's rbd tests and benchmarks.
#
#   scripts/ceph.sh start DIR [--no-mgr]   1 mon + 1 memstore OSD (+ 1 mgr), pool `volumes`,
#                                          client.cinder with `profile rbd` caps; ~3 s
#   scripts/ceph.sh stop DIR               kills what `start` started (by pid file, checked), rm -rf DIR
#   scripts/ceph.sh mon-stop DIR           kills the monitor only (a "monitor down" fault)
#   scripts/ceph.sh mon-start DIR          starts it again on the same ports and data
#   scripts/ceph.sh osd-freeze DIR         freezes the OSD (SIGSTOP) and marks it down: OSD_DOWN
#                                          and every op on the pool hangs, as with a dead OSD host
#   scripts/ceph.sh osd-thaw DIR           lets it run again; it rejoins with its data (memstore
#                                          keeps data only in RAM, so a real stop would lose it)
#   scripts/ceph.sh mon-freeze DIR         freezes the monitor (SIGSTOP): with osd-freeze, Ceph is
#   scripts/ceph.sh mon-thaw DIR           gone, without losing its data; mon-thaw resumes it
#   scripts/ceph.sh backup-pool DIR        pool `backups` and client.cinder-backup with
#                                          `profile rbd pool=backups` (backup_driver = "ceph")
#
# Everything lives under DIR: its own ceph.conf (with `[client] keyring = DIR/ceph.$name.keyring`,
# timeouts so clients never hang), data in RAM (memstore), logs, pid files. Nothing is written to
# /etc/ceph or /var/lib/ceph, and only loopback ports are used. DIR/env holds CEPH_CONF and the
# monitor ports for scripts. Needs ceph-mon ceph-osd ceph-mgr ceph-common (scripts/install-deps.sh).
set -euo pipefail

cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop|backup-pool|mon-stop|mon-start|osd-freeze|osd-thaw|mon-freeze|mon-thaw DIR [--no-mgr]" >&2; exit 2; }
DIR=$(realpath -m "$DIR")
CONF=$DIR/ceph.conf

# A free loopback port below Linux's ephemeral range (32768-60999): a port the kernel hands
# out picks one from that range, which an outgoing connection of another cluster in the same
# test run may take before the monitor binds it (seen: "unable to bind monitor ... in use").
free_port() {
  python3 -c '
import random, socket
for _ in range(500):
    p = random.randint(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
else:
    raise SystemExit("no free port in 20000-32000")
'
}

# Kills the daemon named by a pid file, only if that pid really is one of this cluster's.
kill_daemon() { # pidfile signal
  local f=$1 sig=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null) || return 0
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
}

# Waits until the daemon behind a pid file is gone (a zombie counts as gone).
wait_gone() { # pidfile seconds
  local f=$1 n=$(( $2 * 20 )) pid state
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null) || return 0
  while [ $n -gt 0 ]; do
    [ -r "/proc/$pid/stat" ] || return 0
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
    [ "$state" = Z ] && return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" || return 0
    sleep 0.05; n=$((n - 1))
  done
  return 1
}

stop() {
  [ -d "$DIR" ] || return 0
  # Throwaway data: SIGKILL is enough and takes ~0.1 s (a clean TERM only saves memstore to disk).
  for f in "$DIR"/run/osd.*.pid "$DIR"/run/mgr.*.pid "$DIR"/run/mon.*.pid; do
    kill_daemon "$f" KILL
  done
  for f in "$DIR"/run/*.pid; do wait_gone "$f" 5 || echo "ceph.sh: $f did not exit" >&2; done
  rm -rf "$DIR"
}

mon_stop() {
  kill_daemon "$DIR/run/mon.a.pid" KILL
  wait_gone "$DIR/run/mon.a.pid" 5
}

mon_start() {
  ceph-mon -c "$CONF" -i a
}

osd_freeze() {
  kill_daemon "$DIR/run/osd.0.pid" STOP
  # A frozen OSD cannot say it is gone, and with no peer to report it the monitor would wait
  # mon_osd_report_timeout (15 min): mark it down now.
  ceph -c "$CONF" osd down 0 >/dev/null 2>&1
}

osd_thaw() {
  kill_daemon "$DIR/run/osd.0.pid" CONT
}

start() {
  local mgr=1
  [ "${3:-}" = --no-mgr ] && mgr=0
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    echo "ceph.sh: $DIR is not empty; stop it first ($0 stop $DIR)" >&2; exit 1
  fi
  for b in ceph-mon ceph-osd ceph-authtool monmaptool ceph rbd uuidgen; do
    command -v $b >/dev/null || { echo "ceph.sh: $b missing: run scripts/install-deps.sh" >&2; exit 1; }
  done
  trap 'echo "ceph.sh: start failed at line $LINENO; last monitor log lines:" >&2; tail -n 20 "$DIR/log/mon.a.log" >&2 2>/dev/null || true; stop' ERR
  mkdir -p "$DIR"/{run,log,mon/ceph-a,osd/ceph-0,mgr/ceph-x}
  local fsid p1 p2
  fsid=$(uuidgen); p1=$(free_port); p2=$(free_port)
  while [ "$p2" = "$p1" ]; do p2=$(free_port); done
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$cluster-\$id
osd data = $DIR/osd/\$cluster-\$id
mgr data = $DIR/mgr/\$cluster-\$id
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
osd objectstore = memstore
memstore device bytes = 8589934592
paxos propose interval = 0.05
paxos min wait = 0.01
mon mgr mkfs grace = 1000000
mgr stats period = 1
mon data avail warn = 2
mon data avail crit = 1
[mon]
admin socket = $DIR/run/\$name.asok
[osd]
admin socket = $DIR/run/\$name.asok
[mgr]
admin socket = $DIR/run/\$name.asok
[client]
keyring = $DIR/ceph.\$name.keyring
admin socket =
client mount timeout = 10
rados mon op timeout = 10
rados osd op timeout = 30
EOF
  local C="-c $CONF"
  export CEPH_CONF=$CONF
  ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/osd/ceph-0/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/mgr/ceph-x/keyring" --gen-key -n mgr.x \
    --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
  for k in ceph.client.admin.keyring osd/ceph-0/keyring mgr/ceph-x/keyring; do
    ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/$k" >/dev/null
  done
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]" "$DIR/monmap" >/dev/null
  ceph-mon $C --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
  ceph-mon $C -i a
  local uuid id
  uuid=$(uuidgen); id=$(ceph $C osd new "$uuid")
  ceph-osd $C -i "$id" --mkfs --osd-uuid "$uuid" >"$DIR/log/osd-mkfs.out" 2>&1
  ceph-osd $C -i "$id" >"$DIR/log/osd.out" 2>&1
  [ $mgr = 1 ] && ceph-mgr $C -i x >"$DIR/log/mgr.out" 2>&1
  ceph $C osd pool create volumes 8 8 replicated --size 1 >/dev/null 2>&1
  rbd $C pool init volumes
  ceph $C auth get-or-create client.cinder mon 'profile rbd' osd 'profile rbd pool=volumes' \
    mgr 'profile rbd pool=volumes' -o "$DIR/ceph.client.cinder.keyring"
  chmod 600 "$DIR"/*.keyring
  local n=300
  until ceph $C health 2>/dev/null | grep -q HEALTH_OK; do
    n=$((n - 1)); [ $n -gt 0 ] || { echo "ceph.sh: no HEALTH_OK after 60 s" >&2; false; }
    sleep 0.2
  done
  cat >"$DIR/env" <<EOF
CEPH_CONF=$CONF
CEPH_MON_V1=127.0.0.1:$p1
CEPH_MON_V2=127.0.0.1:$p2
CEPH_POOL=volumes
CEPH_USER=cinder
EOF
  trap - ERR
  echo "$CONF"
}

# Cinder's backup pool and user, as its deployment guides make them: the backup service
# writes only to `backups`.
backup_pool() {
  local C="-c $CONF"
  ceph $C osd pool create backups 8 8 replicated --size 1 >/dev/null 2>&1
  rbd $C pool init backups
  ceph $C auth get-or-create client.cinder-backup mon 'profile rbd' osd 'profile rbd pool=backups' \
    -o "$DIR/ceph.client.cinder-backup.keyring"
  chmod 600 "$DIR"/*.keyring
}

case $cmd in
  start) start "$@" ;;
  backup-pool) backup_pool ;;
  stop) stop ;;
  mon-stop) mon_stop ;;
  mon-start) mon_start ;;
  osd-freeze) osd_freeze ;;
  osd-thaw) osd_thaw ;;
  mon-freeze) kill_daemon "$DIR/run/mon.a.pid" STOP ;;
  mon-thaw) kill_daemon "$DIR/run/mon.a.pid" CONT ;;
  *) echo "usage: $0 start|stop|backup-pool|mon-stop|mon-start|osd-freeze|osd-thaw|mon-freeze|mon-thaw DIR [--no-mgr]" >&2; exit 2 ;;
esac
