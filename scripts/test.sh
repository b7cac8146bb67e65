#!/usr/bin/env bash
# Installs what is missing, starts a throwaway PostgreSQL on loopback, runs every check and
# test, and stops what it started. The one test command of the README; `.ci/run` calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
# The rbd tests start their own throwaway Ceph clusters (scripts/ceph.sh) under this dir and
# stop them when done; whatever a killed test left behind is stopped here, by pid file.
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

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets 2>&1 | tee /tmp/ember-test.log | grep -vE '^test .* \.\.\. ok$'
