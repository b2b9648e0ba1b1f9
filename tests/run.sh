#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Runs every test of surge, each under a timeout, and ends with one line
# "N passed, N failed, N skipped". A test that exits 77 is skipped (it says why).
#   tests/run.sh            everything
#   tests/run.sh unit       unit tests and fuzz-corpus replays only
# Environment: BUILD (build dir, default build), SURGE_SEED (randomized tests).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
what=${1:-all}
passed=0 failed=0 skipped=0
failures=()
logdir="$BUILD/test-logs"
mkdir -p "$logdir"

run_one() {
	local name=$1 limit=$2
	shift 2
	local log="$logdir/$name.log" rc start end
	start=$(date +%s)
	timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
	rc=$?
	end=$(date +%s)
	case $rc in
	0)
		passed=$((passed + 1))
		printf 'PASS  %-28s %3ss\n' "$name" $((end - start))
		;;
	77)
		skipped=$((skipped + 1))
		printf 'SKIP  %-28s %s\n' "$name" "$(tail -n 1 "$log")"
		;;
	*)
		failed=$((failed + 1))
		failures+=("$name")
		[ $rc -eq 124 ] && echo "timed out after $limit s" >>"$log"
		printf 'FAIL  %-28s %3ss (exit %d)\n' "$name" $((end - start)) $rc
		sed 's/^/    | /' "$log" | tail -n 60
		;;
	esac
}

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	run_one "$(basename "$t")" 300 "$t"
done
for t in "$BUILD"/tests/replay_*; do
	[ -x "$t" ] || continue
	corpus="tests/fuzz/corpus/$(basename "$t" | sed 's/^replay_//')"
	if [ -d "$corpus" ]; then
		run_one "$(basename "$t")" 300 "$t" "$corpus"/*
	else
		run_one "$(basename "$t")" 300 "$t"
	fi
done

if [ "$what" = all ]; then
	for t in tests/crash/*.sh tests/integration/*.sh; do
		[ -x "$t" ] || continue
		run_one "$(basename "$t" .sh)" 600 env BUILD="$BUILD" "$t"
	done
fi

echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}  (logs in $logdir/)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
