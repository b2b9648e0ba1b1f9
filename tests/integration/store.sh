#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The session store through the router (gw_store_check): history and
# transcripts, then a SIGKILL of the router and a restart on the same data
# directory: sessions come back with their agent, queue and conversation;
# then an erasure on request (surge-router --erase), honoured after a restart.
set -u
cd "$(dirname "$0")/../.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root for network namespaces"; exit 77; }

P=ssto N=15
work=$(mktemp -d)
cleanup() { surge_router_stop >/dev/null 2>&1; surge_ns_down $P; rm -rf "$work"; }
trap cleanup EXIT

surge_ns_up $P $N || exit 1
surge_config $P $N "$work/surge.yaml"
surge_router_start $P "$work/surge.yaml" "$work/router1.log" || exit 1

check=(ip netns exec ${P}gw "$BUILD/tests/gw_store_check" --router 10.77.$N.1:7700
	--state "$work/ids")
"${check[@]}" --phase before
rc=$?
# A crash: no chance to flush or say goodbye.
kill -KILL "$SURGE_ROUTER_PID"
wait "$SURGE_ROUTER_PID" 2>/dev/null
SURGE_ROUTER_PID=
if [ $rc -eq 0 ]; then
	surge_router_start $P "$work/surge.yaml" "$work/router2.log" || exit 1
	grep '^surge-router: store' "$work/router2.log"
	"${check[@]}" --phase after
	rc=$?
	surge_router_stop || { echo "router did not stop cleanly"; rc=1; }
	surge_expect_counter "$work/router2.log" surge_store_restored_sessions 2 \
		"the restarted router restored 2 open sessions" || rc=1
	surge_expect_counter "$work/router2.log" surge_store_restored_agents 1 \
		"the restarted router restored the figures of its 1 agent" || rc=1
fi
if [ $rc -eq 0 ]; then
	# Erasure on request, the router stopped: a tombstone honoured by recovery.
	ip netns exec ${P}rt "$BUILD/surge-router" -c "$work/surge.yaml" --erase cust-1 || rc=1
	surge_router_start $P "$work/surge.yaml" "$work/router3.log" || exit 1
	"${check[@]}" --phase erased || rc=1
	surge_router_stop || { echo "router did not stop cleanly"; rc=1; }
fi
[ $rc -eq 0 ] || cat "$work"/router*.log
exit $rc
