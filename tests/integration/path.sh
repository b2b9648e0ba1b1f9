#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The whole path over a veth pair: the router on DPDK (net_af_packet) in one
# namespace, gateways on kernel sockets in another. Checks ARP and ICMP echo
# answered by the router, every message delivered exactly once to the right
# side (gw_path_check), and a clean exit 0 on SIGTERM.
set -u
cd "$(dirname "$0")/../.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root for network namespaces"; exit 77; }

P=spth N=11
work=$(mktemp -d)
cleanup() { surge_router_stop >/dev/null 2>&1; surge_ns_down $P; rm -rf "$work"; }
trap cleanup EXIT

surge_ns_up $P $N || exit 1
surge_config $P $N "$work/surge.yaml"
surge_router_start $P "$work/surge.yaml" "$work/router.log" || exit 1

echo "== ARP and ICMP echo answered by the router"
ip netns exec ${P}gw ping -c 3 -i 0.2 -W 2 10.77.$N.1 || { cat "$work/router.log"; exit 1; }
ip netns exec ${P}gw ip neigh show 10.77.$N.1 | grep -q lladdr || { echo "no ARP entry"; exit 1; }

echo "== gateways: every message exactly once to the right side"
ip netns exec ${P}gw "$BUILD/tests/gw_path_check" --router 10.77.$N.1:7700 || {
	kill -USR1 $SURGE_ROUTER_PID; sleep 0.5; cat "$work/router.log"; exit 1; }

echo "== clean stop"
surge_router_stop; rc=$?
cat "$work/router.log"
[ $rc -eq 0 ] || { echo "router exited with $rc"; exit 1; }
arp=$(surge_router_counter "$work/router.log" surge_arp_replies_total)
icmp=$(surge_router_counter "$work/router.log" surge_icmp_replies_total)
[ "${arp:-0}" -ge 1 ] || { echo "no ARP reply counted"; exit 1; }
[ "${icmp:-0}" -ge 3 ] || { echo "fewer than 3 ICMP echo replies counted"; exit 1; }
echo "path ok"
