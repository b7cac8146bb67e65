#!/usr/bin/env bash
# The fault suite's long form. `.ci/run` (scripts/test.sh) runs every fault at least once;
# this runs the long rounds: kill -9 at random moments (20 rounds on the file backend and 10 on
# rbd, every job kind), 100,000 mutated configs and command lines, and the database, disk and
# Ceph faults three times each, and issue 22's randomized interrupted copies: 1,000 file rounds
# (4 at a time), 20 rbd rounds, 10 cluster rounds; and 30 migrations cancelled or killed -9 at a
# random moment, 30 of a volume moving with its clones, and 10 rbd live migrations. Rounds:
# EMBER_MIGRATE_ROUNDS, EMBER_LIVE_ROUNDS, EMBER_KILL_ROUNDS,
# EMBER_KILL_ROUNDS_RBD, EMBER_FUZZ_ROUNDS, EMBER_COPY_ROUNDS, EMBER_COPY_ROUNDS_RBD,
# EMBER_COPY_ROUNDS_CLUSTER, FAULT_REPEATS. A failing round prints its seed (EMBER_FUZZ_SEED,
# EMBER_COPY_SEED replay it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh
export EMBER_KILL_ROUNDS=${EMBER_KILL_ROUNDS:-20}
export EMBER_KILL_ROUNDS_RBD=${EMBER_KILL_ROUNDS_RBD:-10}
export EMBER_FUZZ_ROUNDS=${EMBER_FUZZ_ROUNDS:-100000}
export EMBER_COPY_ROUNDS=${EMBER_COPY_ROUNDS:-1000}
export EMBER_COPY_ROUNDS_RBD=${EMBER_COPY_ROUNDS_RBD:-20}
export EMBER_COPY_ROUNDS_CLUSTER=${EMBER_COPY_ROUNDS_CLUSTER:-10}
export EMBER_COPY_PARALLEL=${EMBER_COPY_PARALLEL:-4}
export EMBER_MIGRATE_ROUNDS=${EMBER_MIGRATE_ROUNDS:-30}
export EMBER_LIVE_ROUNDS=${EMBER_LIVE_ROUNDS:-10}
repeats=${FAULT_REPEATS:-3}
started=$SECONDS
echo "== kill -9 rounds: $EMBER_KILL_ROUNDS (file), $EMBER_KILL_ROUNDS_RBD (rbd)"
cargo test -q --test kill_rounds -- --include-ignored --nocapture 2>&1 | grep -E 'round|seed|test result|panicked'
echo "== copy rounds: $EMBER_COPY_ROUNDS (file), $EMBER_COPY_ROUNDS_RBD (rbd), $EMBER_COPY_ROUNDS_CLUSTER (cluster)"
cargo test -q --test copy_rounds -- --nocapture 2>&1 | grep -E -A2 'first seed|clean in|DATA LOST|test result|panicked'
echo "== migrations cancelled or killed: $EMBER_MIGRATE_ROUNDS"
cargo test -q --test migrate cancel_or_kill -- --nocapture 2>&1 | grep -E 'round|seed|test result|panicked'
echo "== migrations of a volume with its clones (--with-clones) cancelled or killed: $EMBER_MIGRATE_ROUNDS"
cargo test -q --test migrate_family cancel_or_kill -- --nocapture 2>&1 | grep -E 'round|seed|test result|panicked'
echo "== rbd live migrations cancelled or killed: $EMBER_LIVE_ROUNDS"
cargo test -q --test migrate rbd_live_migration -- --nocapture 2>&1 | grep -E 'round|seed|test result|panicked'
echo "== garbage in: $EMBER_FUZZ_ROUNDS configs and command lines"
cargo test -q --test garbage_in -- --nocapture 2>&1 | grep -E 'seed|loaded|parsed|test result|panicked'
for i in $(seq "$repeats"); do
  echo "== database, disk and Ceph faults: run $i of $repeats"
  cargo test -q --test faults --test rbd_faults --test ceph_health --test read_only 2>&1 \
    | grep -E 'test result|panicked|FAILED'
done
echo "== fault suite passed in $((SECONDS - started)) s"
