#!/usr/bin/env bash
# Regenerates src/config/cinder_options.json from Cinder itself: installs the Cinder release
# from PyPI into a throwaway venv and dumps the options of its RBD driver
# (cinder.volume.drivers.rbd.RBD_OPTS) and the options every volume driver shares
# (cinder.volume.driver.volume_opts), and every other option Cinder registers for each backend
# section (its [backend_defaults] group, once cinder.volume.manager is loaded): name, type and
# default. A test compares ember's option table with this file.
# Usage: bash scripts/cinder-options.sh [VERSION] (default 29.0.0); EMBER_CINDER_VENV=DIR reuses
# a venv that has that Cinder installed.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-29.0.0}
if [ -n "${EMBER_CINDER_VENV:-}" ]; then
  venv=$EMBER_CINDER_VENV
else
  venv=$(mktemp -d /tmp/ember-cinder-venv.XXXXXX)
  trap 'rm -rf "$venv"' EXIT
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get install -y -q python3-venv >/dev/null
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "cinder==$version"
fi
"$venv/bin/python" - "$version" >src/config/cinder_options.json.new 2>/dev/null <<'PY'
import json, sys
from oslo_config import cfg
from cinder import objects
objects.register_all()
import cinder.volume.manager  # registers every backend section's options
from cinder.volume import configuration, driver
from cinder.volume.drivers import rbd

def default(v):
    return v if v is None or isinstance(v, (bool, int, float, str, list)) else str(v)

out = {"cinder_version": sys.argv[1], "options": []}
for group, opts in (("rbd", rbd.RBD_OPTS), ("volume", driver.volume_opts)):
    for o in opts:
        out["options"].append({
            "name": o.name,
            "group": group,
            "type": type(o).__name__,
            "default": default(o.default),
        })
seen = {o["name"] for o in out["options"]}
shared = cfg.CONF._groups[configuration.SHARED_CONF_GROUP]._opts
for name in sorted(shared):
    o = shared[name]["opt"]
    if name not in seen:
        out["options"].append({
            "name": name,
            "group": "backend_defaults",
            "type": type(o).__name__,
            "default": default(o.default),
        })
json.dump(out, sys.stdout, indent=1)
print()
PY
mv src/config/cinder_options.json.new src/config/cinder_options.json
echo "src/config/cinder_options.json: $(grep -c '"name"' src/config/cinder_options.json) options of Cinder $version"
