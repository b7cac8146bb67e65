#!/usr/bin/env bash
# Re-makes screenshots/<view>.png from the real program: the console runs in tmux at 120x36 on
# sample data, each view is captured with its colours (capture-pane -e), turned into HTML by
# aha and into a PNG by headless Chromium. Installs aha, chromium and fonts-dejavu-core from
# apt if missing. Usage: bash scripts/screenshots.sh (EMBER_BIN=path to use a built binary).
#
# Three hosts share a throwaway PostgreSQL: the console on storage-01 (file0, rbd0, rbd1), and
# two `ember serve` forming the cluster ceph-b@rbd2 (storage-02, storage-03). storage-03 is
# killed in the middle of a flatten, so the pictures show a takeover. The Ceph cluster has a
# pool over its quota and the noout flag set, so the doctor shows Ceph's health checks.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v aha >/dev/null || need+=(aha)
command -v chromium >/dev/null || need+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need+=(fonts-dejavu-core)
command -v tmux >/dev/null || need+=(tmux)
if [ ${#need[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -z "${EMBER_BIN:-}" ]; then cargo build --release -q; fi
bin=${EMBER_BIN:-$PWD/target/release/ember}
dir=$(mktemp -d)
session=ember-shots
pids=()
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
trap 'tmux kill-session -t ember-shots 2>/dev/null || true; tmux kill-session -t ember-shots-light 2>/dev/null || true; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; bash scripts/ceph.sh stop "$dir/ceph" >/dev/null 2>&1 || true; pg_stop; rm -rf "$dir"' EXIT
aha_bg=--black
shot() {  # shot NAME KEYS...
  local name=$1; shift
  for k in "$@"; do tmux send-keys -t $session "$k"; sleep 0.4; done
  sleep 1
  tmux capture-pane -e -N -p -t $session > "$dir/$name.ansi"
  aha $aha_bg --title "$name" < "$dir/$name.ansi" > "$dir/$name.html"
  sed -i 's|<pre>|<pre style="font-family: DejaVu Sans Mono, monospace; font-size: 14px; line-height: 17px; margin: 0; padding: 6px">|' "$dir/$name.html"
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$dir/chrome" \
    --window-size=1030,630 --screenshot="$PWD/screenshots/$name.png" "file://$dir/$name.html" >/dev/null 2>&1
  echo "screenshots/$name.png"
}
# The fast timers every ember here runs with (heartbeat 2 s, down after 6 s).
timers="report_interval = 2
service_down_time = 6
periodic_interval = 5
periodic_fuzzy_delay = 0"
# All well first: a fresh installation with one healthy backend, a few volumes, no trouble.
mkdir -p "$dir/calm"
cat > "$dir/calm/ember.toml" <<TOML
data_dir = "$dir/calm"
host = "storage-01"
$timers
[backends.file0]
volume_driver = "file"
TOML
C0="$bin --config $dir/calm/ember.toml"
tmux new-session -d -s $session -x 120 -y 36 "$C0 --theme dark"
for _ in $(seq 100); do [ "$($C0 service list --json | grep -c '"state": "up"')" -ge 1 ] && break; sleep 0.2; done
$C0 volume create web-root --size 20G --wait >/dev/null 2>&1
$C0 volume create db-data --size 100G --wait >/dev/null 2>&1
$C0 volume snapshot create db-nightly --volume db-data --wait >/dev/null 2>&1
$C0 volume create db-clone --snapshot db-nightly --wait >/dev/null 2>&1
sleep 6   # the doctor's first run ends
shot overview-all-well 1
tmux send-keys -t $session q; sleep 1
tmux kill-session -t $session 2>/dev/null || true
# A throwaway Ceph cluster for the rbd backends: rbd0 healthy, rbd1 with the classic on-call
# mistake (rbd_user = cinder-x while only ceph.client.cinder.keyring exists).
bash scripts/install-deps.sh
bash scripts/ceph.sh start "$dir/ceph" >/dev/null
pg_start >/dev/null
db=${EMBER_TEST_DATABASE_URL}
cat > "$dir/ember.toml" <<TOML
data_dir = "$dir/data"
database_url = "$db"
host = "storage-01"
$timers
[backends.file0]
volume_driver = "file"
volume_copy_bps_limit = 2097152
[backends.rbd0]
volume_driver = "rbd"
rbd_pool = "volumes"
rbd_user = "cinder"
rbd_ceph_conf = "$dir/ceph/ceph.conf"
[backends.rbd1]
volume_driver = "rbd"
rbd_pool = "volumes"
rbd_user = "cinder-x"
rbd_ceph_conf = "$dir/ceph/ceph.conf"
TOML
for m in storage-02 storage-03; do   # the cluster ceph-b@rbd2
  mkdir -p "$dir/$m"
  cat > "$dir/$m/ember.toml" <<TOML
data_dir = "$dir/$m"
database_url = "$db"
host = "$m"
cluster = "ceph-b"
$timers
[backends.rbd2]
volume_driver = "rbd"
rbd_pool = "volumes"
rbd_user = "cinder"
rbd_ceph_conf = "$dir/ceph/ceph.conf"
volume_copy_bps_limit = 16777216
TOML
  EMBER_LOG=warn "$bin" --config "$dir/$m/ember.toml" serve 2>"$dir/$m/serve.log" &
  pids+=($!)
done
E="$bin --config $dir/ember.toml"
tmux new-session -d -s $session -x 120 -y 36 "$E --theme dark"
for _ in $(seq 100); do   # until the console's services and the cluster heartbeat
  [ "$($E service list --json | grep -c '"state": "up"')" -ge 4 ] && break; sleep 0.2
done
$E volume create web-root --size 20G --backend file0 --wait >/dev/null 2>&1
$E volume create db-data --size 100G --backend file0 --wait >/dev/null 2>&1
$E volume create scratch --size 5G --backend file0 --wait >/dev/null 2>&1
$E volume snapshot create db-nightly --volume db-data --wait >/dev/null 2>&1
snap=$($E volume snapshot list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
python3 - "$dir/data/volumes/file0/snapshot-$snap" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1 << 30); f.write(b"\x07" * (64 << 20))
PY
$E volume create db-clone --snapshot db-nightly --wait >/dev/null 2>&1
$E volume create reports --source web-root --wait >/dev/null 2>&1
$E volume create vm-image --size 40G --backend rbd0 --wait >/dev/null 2>&1
$E volume snapshot create golden --volume vm-image --wait >/dev/null 2>&1
$E volume create vm-01 --snapshot golden --wait >/dev/null 2>&1
$E volume extend scratch --size 1G >/dev/null 2>&1 || true   # refused: shown in events
# db-data is a guest's disk (the A column, the detail pane's attachments; the doctor finds no
# client of compute-03 on it: attached on paper only).
$E volume attach db-data --host compute-03 --instance i-0c1f9e >/dev/null 2>&1
# On the cluster: a parent with data, a clone, and a flatten; the member running it is killed.
$E volume create base-image --size 1G --backend rbd2 --wait >/dev/null 2>&1
base=$($E volume show base-image --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
rbd -c "$dir/ceph/ceph.conf" bench --io-type write --io-size 4M --io-pattern seq --io-total 512M "volumes/volume-$base" >/dev/null
$E volume snapshot create base-snap --volume base-image --wait >/dev/null 2>&1
$E volume create vm-02 --snapshot base-snap --wait >/dev/null 2>&1
fjob=$($E volume flatten vm-02 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
for _ in $(seq 100); do
  runner=$($E job show "$fjob" --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["claimed_by"] or "" if j["state"]=="running" else "")')
  [ -n "$runner" ] && break; sleep 0.2
done
case "$runner" in storage-02@rbd2) kill -9 "${pids[0]}";; storage-03@rbd2) kill -9 "${pids[1]}";; esac
$E volume flatten db-clone >/dev/null 2>&1                   # throttled: still running in Jobs
for _ in $(seq 100); do   # until the peer has taken the flatten over
  $E events --json | grep -q job_taken_over && break; sleep 0.2
done
# Ceph's own health, as the doctor explains it: another pool over its quota (information under
# the cluster, not a failure of rbd0) and the noout flag an operator left set after maintenance.
C="ceph -c $dir/ceph/ceph.conf"
$C osd pool create backups 8 8 replicated --size 1 >/dev/null 2>&1
$C osd pool application enable backups rbd >/dev/null 2>&1
$C osd pool set-quota backups max_objects 2 >/dev/null 2>&1
for o in a b c; do rados -c "$dir/ceph/ceph.conf" -p backups put "$o" /etc/hostname; done
$C osd set noout >/dev/null 2>&1
for _ in $(seq 100); do $C health 2>/dev/null | grep -q full && break; sleep 0.2; done
sleep 3

shot overview 1
shot services 2
shot volumes 3
shot volume-detail 3 g j j Enter   # db-data: attached, snapshotted, cloned
shot jobs Escape 4
shot logs 5
shot help 3 '?'
# vm-01 held open by another client (as a guest's qemu would): the detail pane names it, and
# the delete confirmation asks for FORCE. `rbd watch` runs until its stdin closes.
vm01=$($E volume show vm-01 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
(sleep 600 | rbd -c "$dir/ceph/ceph.conf" watch "volumes/volume-$vm01" >/dev/null 2>&1) &
pids+=($!)
for _ in $(seq 50); do
  $E volume locks vm-01 --json | grep -q '"watcher"' && break; sleep 0.2
done
tmux send-keys -t $session Escape; sleep 0.3
for k in 3 /; do tmux send-keys -t $session "$k"; sleep 0.4; done
tmux send-keys -t $session -l vm-01; sleep 0.4
tmux send-keys -t $session Enter; sleep 0.4; tmux send-keys -t $session Enter; sleep 3
shot volume-open
shot volume-open-delete d
tmux send-keys -t $session Escape; sleep 0.3; tmux send-keys -t $session Escape; sleep 0.3
tmux send-keys -t $session Escape; sleep 0.3
# The Doctor view runs its checks again (r), now that Ceph reports the full pool and the flag.
tmux send-keys -t $session Escape; sleep 0.3; tmux send-keys -t $session 6; sleep 0.3
tmux send-keys -t $session r; sleep 4
shot doctor G
# The running flatten (sorted by state, it comes first): its detail, throughput chart, ETA.
shot job-detail 4 : "sort state" Enter g Enter
# base-image's clone family: its snapshot, and vm-02 under it with the flatten still running.
shot family Escape 3 / base-image Enter x
shot events 7
# The light theme, from a second console attached to the same database while the first runs.
main=$session
session=ember-shots-light
tmux new-session -d -s $session -x 120 -y 36 "$E --attach --theme light 2>$dir/light.err; echo EXITED \$?; sleep 60"
for _ in $(seq 50); do
  tmux capture-pane -p -t $session | grep -q "attached" && break; sleep 0.2
done
if ! tmux capture-pane -p -t $session | grep -q "attached"; then
  echo "the light-theme console did not open:"; tmux capture-pane -p -t $session; cat "$dir/light.err"; exit 1
fi
sleep 3
aha_bg=""
shot overview-light 1
shot events-light 7
tmux send-keys -t $session q; sleep 1
tmux kill-session -t $session 2>/dev/null || true
session=$main
tmux send-keys -t $session Escape; sleep 0.3; tmux send-keys -t $session q; sleep 0.5; tmux send-keys -t $session y 2>/dev/null || true   # asked only while jobs run
