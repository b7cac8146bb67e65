#!/usr/bin/env bash
# Installs what is missing, starts a throwaway PostgreSQL on loopback, runs every check and
# test, and stops what it started. The one test command of the README; `.ci/run` calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets --no-fail-fast 2>&1 | tee /tmp/ember-test.log | grep -vE '^test .* \.\.\. ok$'
