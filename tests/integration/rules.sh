#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The dispatcher's service rules over the wire (gw_rules_check): queue
# positions, the break cap, disconnect re-route with backlog, transfer
# consent and the service-level clocks, with the clocks configured short.
set -u
cd "$(dirname "$0")/../.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root for network namespaces"; exit 77; }

P=srul N=14
work=$(mktemp -d)
cleanup() { surge_router_stop >/dev/null 2>&1; surge_ns_down $P; rm -rf "$work"; }
trap cleanup EXIT

surge_ns_up $P $N || exit 1
surge_config $P $N "$work/surge.yaml" "  - name: vip
  - name: sla
    sla_answer_ms: 700
    first_response_ms: 600
    reply_overdue_ms: 800
    hold_max_ms: 1000"
sed -i 's/^  gateway_timeout_ms: 30000$/  gateway_timeout_ms: 30000\n  heartbeat_timeout_ms: 1500/' "$work/surge.yaml"
surge_router_start $P "$work/surge.yaml" "$work/router.log" || exit 1

ip netns exec ${P}gw "$BUILD/tests/gw_rules_check" --router 10.77.$N.1:7700
rc=$?
surge_router_stop || { echo "router did not stop cleanly"; rc=1; }
[ $rc -eq 0 ] || cat "$work/router.log"
exit $rc
