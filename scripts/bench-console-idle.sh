#!/usr/bin/env bash
# The console's idle cost: bytes written to the terminal and CPU per minute, with two file
# backends served by the console itself, measured in a real terminal (tmux).
# Usage: bash scripts/bench-console-idle.sh [SECONDS]   (default 60; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
bin=target/release/ember
[ -x "$bin" ] || cargo build --release -q
dir=$(mktemp -d)
trap 'tmux kill-session -t ember-idle 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/ember.toml" <<TOML
data_dir = "$dir/data"
periodic_fuzzy_delay = 0
[backends.file0]
volume_driver = "file"
[backends.file1]
volume_driver = "file"
TOML
tmux new-session -d -s ember-idle -x 120 -y 36 "$bin --config $dir/ember.toml"
sleep 3   # start-up and first frame are not idle
pid=$(pgrep -f -n "$bin --config $dir/ember.toml")
tmux pipe-pane -o -t ember-idle "cat > $dir/out.bin"
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks); sleep "$secs"; t1=$(ticks)
tmux pipe-pane -t ember-idle
hz=$(getconf CLK_TCK)
bytes=$(stat -c %s "$dir/out.bin")
python3 - "$bytes" "$t0" "$t1" "$hz" "$secs" <<'PY'
import sys
b, t0, t1, hz, s = map(float, sys.argv[1:])
print(f"console idle, 2 services, {s:.0f} s: {b * 60 / s:.0f} bytes/min to the terminal (goal < 2048), "
      f"CPU {(t1 - t0) / hz / s * 100:.2f} % (goal < 0.5 %)")
PY
