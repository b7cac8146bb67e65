# Sourced by scripts/test.sh and scripts/faults.sh: installs what is missing, starts a throwaway
# PostgreSQL on loopback, and makes every test require PostgreSQL, Ceph and tmux. The rbd tests
# start their own throwaway Ceph clusters (scripts/ceph.sh) under EMBER_TEST_CEPH_ROOT and stop
# them when done; whatever a killed test left behind is stopped on exit, by pid file.
bash scripts/install-deps.sh
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
export EMBER_TEST_CEPH_ROOT
EMBER_TEST_CEPH_ROOT=$(mktemp -d /tmp/ember-ceph-tests.XXXXXX)
cleanup() {
  for d in "$EMBER_TEST_CEPH_ROOT"/ember-ceph-*; do
    [ -d "$d" ] && bash scripts/ceph.sh stop "$d"
  done
  rm -rf "$EMBER_TEST_CEPH_ROOT"
  pg_stop
}
trap cleanup EXIT
pg_start
export EMBER_REQUIRE_PG=1
export EMBER_REQUIRE_CEPH=1
export EMBER_E2E=1
