#!/usr/bin/env bash
# Prints the health check codes the installed Ceph can raise about pools, placement groups,
# OSDs, monitors, the manager or clocks, one per line, sorted: the codes ember's doctor must
# explain (src/driver/rbd/health_codes.rs; tests/ceph_health_codes.rs compares the two).
#
# Read from the daemons' and the manager modules' own text (Ceph has no list of them to
# query): identifiers in the binaries that belong to the health-check families, and the codes
# the manager's Python modules raise. CephFS codes (MDS_*, FS_*) and the selftest module's
# examples are left out; so are the few identifiers of those families that are not health
# checks (listed below, each checked against Ceph's health-checks page).
set -euo pipefail

bins=()
for b in /usr/bin/ceph-mon /usr/bin/ceph-mgr /usr/bin/ceph-osd \
         /usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2 /usr/lib/*/ceph/libceph-common.so.*; do
  [ -f "$b" ] && bins+=("$b")
done
[ ${#bins[@]} -gt 0 ] || { echo "ceph-health-codes.sh: no Ceph daemons installed (scripts/install-deps.sh)" >&2; exit 1; }
mgr=/usr/share/ceph/mgr

families='^(OSD|OSDMAP|PG|POOL|MON|MGR|AUTH|DAEMON|SLOW|TOO|SMALLER|MANY|LARGE|CACHE|OLD_CRUSH|RECENT|DEVICE|BLUESTORE|BLUEFS|PENDING|DEGRADED|RECOVERING|INCORRECT|UNEVEN|TELEMETRY|ALERTS)_[A-Z0-9_]+$'
# Identifiers of those families that are not health checks: statistics and perf-counter
# names, manager module option and metadata keys.
not_checks='^(AUTH_ACCEPTING.*|AUTH_CONNECTING.*|CACHE_INVALID|CACHE_VALID|OSD_STAT|PG_STAT|OSD_METADATA|MON_METADATA|MGR_METADATA|MGR_STATUS|MGR_MODULE_STATUS|MGR_MODULE_CAN_RUN|OSD_STATS|OSD_STATUS|OSD_POOL_STATS|OSD_PERF_.*|PG_NUM|PG_NUM_MIN|PG_STATES|POOL_METADATA|POOL_REFRESH_INTERVAL|DEGRADED_OBJECTS|OSD_FLAGS_.*)$'

{
  for b in "${bins[@]}"; do strings -n 6 "$b"; done | grep -E "$families" || true
  if [ -d "$mgr" ]; then
    # The codes quoted in the modules that raise health checks (set_health_checks).
    grep -rl "set_health_checks" --include=*.py "$mgr" | grep -vE "/(selftest|test_orchestrator)/|mgr_module.py" \
      | xargs grep -ohE "['\"][A-Z][A-Z0-9]+(_[A-Z0-9]+)+['\"]" | tr -d "'\"" || true
  fi
} | grep -E "$families" | grep -vE "$not_checks" | sort -u
