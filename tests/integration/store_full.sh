#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The router on a full disk (gw_store_check --phase full): its store on a
# small tmpfs fills up; the router stays up, says it is unhealthy, refuses
# new sessions with STORE_FAILED and stops acknowledging, while routing what
# it holds. With space freed and a restart it recovers and takes sessions
# again.
set -u
cd "$(dirname "$0")/../.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root for network namespaces"; exit 77; }

P=sful N=16
work=$(mktemp -d)
mnt="$work/store"
cleanup() {
	surge_router_stop >/dev/null 2>&1
	surge_ns_down $P
	umount "$mnt" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$mnt"
mount -t tmpfs -o size=3m surge-full "$mnt" || { echo "skip: cannot mount a tmpfs"; exit 77; }
surge_ns_up $P $N || exit 1
SURGE_STORE_DIR="$mnt" surge_config $P $N "$work/surge.yaml"
sed -i 's/^  durability: .*$/&\n  segment_mb: 1\n  ring_mb: 1/' "$work/surge.yaml"
surge_router_start $P "$work/surge.yaml" "$work/router1.log" || exit 1

check=(ip netns exec ${P}gw "$BUILD/tests/gw_store_check" --router 10.77.$N.1:7700)
"${check[@]}" --phase full
rc=$?
kill -USR1 "$SURGE_ROUTER_PID"
sleep 0.5
if kill -0 "$SURGE_ROUTER_PID" 2>/dev/null; then
	echo "ok - the router is still up with its disk full"
else
	echo "not ok - the router died on a full disk"
	rc=1
fi
surge_expect_counter "$work/router1.log" surge_store_healthy 0 \
	"it reports the store unhealthy" || rc=1
grep -q 'store failed' "$work/router1.log" && echo "ok - it said why in its log" ||
	{ echo "not ok - no 'store failed' line in the log"; rc=1; }
surge_router_stop

# Space freed, router restarted: recovery, then business as usual.
mount -o remount,size=64m "$mnt"
surge_router_start $P "$work/surge.yaml" "$work/router2.log" || exit 1
grep '^surge-router: store' "$work/router2.log"
"${check[@]}" --phase open || rc=1
surge_router_stop || { echo "router did not stop cleanly"; rc=1; }
[ $rc -eq 0 ] || cat "$work"/router*.log | tail -40
exit $rc
