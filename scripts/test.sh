#!/usr/bin/env bash
# Installs what is missing, starts a throwaway PostgreSQL on loopback, runs every check and
# test, and stops what it started. The one test command of the README; `.ci/run` calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
trap pg_stop EXIT
pg_start
export EMBER_REQUIRE_PG=1
export EMBER_E2E=1

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets 2>&1 | tee /tmp/ember-test.log | grep -vE '^test .* \.\.\. ok$'
