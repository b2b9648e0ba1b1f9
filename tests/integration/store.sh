#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The session store through the router (gw_store_check): history and
# transcripts, then a SIGKILL of the router and a restart on the same data
# directory: sessions come back with their agent, queue and conversation;
# then an erasure on request (surge-router --erase), honoured after a restart;
# then one through the admin endpoint with the router running (POST
# /api/v1/erase), honoured at once and after a crash.
set -u
cd "$(dirname "$0")/../.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root for network namespaces"; exit 77; }

P=ssto N=15
work=$(mktemp -d)
cleanup() { surge_router_stop >/dev/null 2>&1; surge_ns_down $P; rm -rf "$work"; }
trap cleanup EXIT

# admin_get PATH / admin_expect CODE METHOD PATH WHAT: the admin endpoint, from
# inside the router's namespace (it listens on that namespace's loopback).
ADMIN=7781
admin_get() {
	ip netns exec ${P}rt curl -s --max-time 40 "http://127.0.0.1:$ADMIN$1"
}
admin_expect() {
	local want=$1 method=$2 path=$3 what=$4 got
	got=$(ip netns exec ${P}rt curl -s -o "$work/admin.out" -w '%{http_code}' --max-time 40 \
		-X "$method" "http://127.0.0.1:$ADMIN$path")
	if [ "$got" = "$want" ]; then
		echo "ok - $what"
	else
		echo "not ok - $what: HTTP $got: $(cat "$work/admin.out")"
		return 1
	fi
}

surge_ns_up $P $N || exit 1
surge_config $P $N "$work/surge.yaml" "admin:
  port: $ADMIN"
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
	# Erasure on request through the admin endpoint, the router running.
	live=(ip netns exec ${P}gw "$BUILD/tests/gw_store_check" --router 10.77.$N.1:7700
		--state "$work/live")
	"${live[@]}" --phase live || rc=1
	admin_expect 409 POST "/api/v1/erase?customer=cust-2" \
		"erasing a customer with an open session is refused (409)" || rc=1
	admin_expect 400 POST "/api/v1/erase?customer=" "an empty customer id is refused (400)" || rc=1
	admin_expect 405 GET "/api/v1/erase?customer=cust-4" "erasure wants POST (405)" || rc=1
	admin_expect 200 POST "/api/v1/erase?customer=cust-4" \
		"cust-4 erased on request, tombstone durable (200)" || rc=1
	admin_expect 200 GET /healthz "healthz: 200" || rc=1
	if admin_get /metrics | grep -qx 'surge_admin_erasures_total 1'; then
		echo "ok - /metrics counts the erasure"
	else
		echo "not ok - /metrics counts the erasure"
		rc=1
	fi
	"${live[@]}" --phase live-erased || rc=1
	# The tombstone survives a crash.
	kill -KILL "$SURGE_ROUTER_PID"
	wait "$SURGE_ROUTER_PID" 2>/dev/null
	SURGE_ROUTER_PID=
	surge_router_start $P "$work/surge.yaml" "$work/router4.log" || exit 1
	"${live[@]}" --phase live-erased || rc=1
	surge_router_stop || { echo "router did not stop cleanly"; rc=1; }
fi
[ $rc -eq 0 ] || cat "$work"/router*.log
exit $rc
