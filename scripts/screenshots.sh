#!/usr/bin/env bash
# Re-makes screenshots/<view>.png from the real program: the console runs in tmux at 120x36 on
# sample data, each view is captured with its colours (capture-pane -e), turned into HTML by
# aha and into a PNG by headless Chromium. Installs aha, chromium and fonts-dejavu-core from
# apt if missing. Usage: bash scripts/screenshots.sh
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
cargo build --release -q
bin=$PWD/target/release/ember
dir=$(mktemp -d)
session=ember-shots
trap 'tmux kill-session -t $session 2>/dev/null || true; bash scripts/ceph.sh stop "$dir/ceph" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
# A throwaway Ceph cluster for the rbd backends: rbd0 healthy, rbd1 with the classic on-call
# mistake (rbd_user = cinder-x while only ceph.client.cinder.keyring exists).
bash scripts/install-deps.sh
bash scripts/ceph.sh start "$dir/ceph" >/dev/null
cat > "$dir/ember.toml" <<TOML
data_dir = "$dir/data"
host = "storage-01"
report_interval = 2
periodic_interval = 5
periodic_fuzzy_delay = 0
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
E="$bin --config $dir/ember.toml"
tmux new-session -d -s $session -x 120 -y 36 "$E --theme dark"
for _ in $(seq 100); do   # until the console's services heartbeat
  $E service list --json | grep -q '"state": "up"' && break; sleep 0.2
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
$E volume flatten db-clone >/dev/null 2>&1                   # throttled: still running in Jobs
sleep 4

shot() {  # shot NAME KEYS...
  local name=$1; shift
  for k in "$@"; do tmux send-keys -t $session "$k"; sleep 0.4; done
  sleep 1
  tmux capture-pane -e -N -p -t $session > "$dir/$name.ansi"
  aha --black --title "$name" < "$dir/$name.ansi" > "$dir/$name.html"
  sed -i 's|<pre>|<pre style="font-family: DejaVu Sans Mono, monospace; font-size: 14px; line-height: 17px; margin: 0; padding: 6px">|' "$dir/$name.html"
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$dir/chrome" \
    --window-size=1030,630 --screenshot="$PWD/screenshots/$name.png" "file://$dir/$name.html" >/dev/null 2>&1
  echo "screenshots/$name.png"
}
shot overview 1
shot services 2
shot volumes 3
shot volume-detail 3 g Enter
shot jobs Escape 4
shot logs 5
shot help 3 '?'
shot doctor Escape 6 j j j j j j j j j j j j j j
tmux send-keys -t $session Escape; sleep 0.3; tmux send-keys -t $session q; sleep 0.5; tmux send-keys -t $session y
