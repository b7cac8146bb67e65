#!/usr/bin/env bash
# Regenerates src/config/cinder_options.json from Cinder itself: installs the Cinder release
# from PyPI into a throwaway venv and dumps the options of its RBD driver
# (cinder.volume.drivers.rbd.RBD_OPTS) and the options every volume driver shares
# (cinder.volume.driver.volume_opts): name, type and default. A test compares ember's option
# table with this file. Usage: bash scripts/cinder-options.sh [VERSION] (default 29.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-29.0.0}
venv=$(mktemp -d /tmp/ember-cinder-venv.XXXXXX)
trap 'rm -rf "$venv"' EXIT
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get install -y -q python3-venv >/dev/null
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q "cinder==$version"
"$venv/bin/python" - "$version" >src/config/cinder_options.json.new 2>/dev/null <<'PY'
import json, sys
from cinder.volume import driver
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
json.dump(out, sys.stdout, indent=1)
print()
PY
mv src/config/cinder_options.json.new src/config/cinder_options.json
echo "src/config/cinder_options.json: $(grep -c '"name"' src/config/cinder_options.json) options of Cinder $version"
