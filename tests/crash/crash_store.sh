#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# kill -9 of the session store while it appends, then recovery and a check of
# the log and the state, SURGE_CRASH_ITERS times (default 50) on one data
# directory (tests/crash/crash_store.c says what is checked). SURGE_SEED
# replays a run (the seed is printed); SURGE_CRASH_DIR: where the data
# directory goes (default /tmp).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin="$BUILD/tests/crash_store"
[ -x "$bin" ] || { echo "skip: $bin is not built (make)"; exit 77; }
exec "$bin" "${SURGE_CRASH_ITERS:-50}"
