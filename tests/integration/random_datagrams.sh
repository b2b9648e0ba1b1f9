#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# 10,000 random datagrams to the router's port: it must count them as drops
# by reason, stay up, and still serve a normal session afterwards.
set -u
cd "$(dirname "$0")/../.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root for network namespaces"; exit 77; }

P=srnd N=12 COUNT=${SURGE_RANDOM_COUNT:-10000}
seed=${SURGE_SEED:-$(date +%s)}
work=$(mktemp -d)
cleanup() { surge_router_stop >/dev/null 2>&1; surge_ns_down $P; rm -rf "$work"; }
trap cleanup EXIT

surge_ns_up $P $N || exit 1
surge_config $P $N "$work/surge.yaml"
surge_router_start $P "$work/surge.yaml" "$work/router.log" || exit 1

ip netns exec ${P}gw "$BUILD/tests/gw_random_datagrams" --router 10.77.$N.1:7700 \
	--count "$COUNT" --seed "$seed" || { cat "$work/router.log"; exit 1; }

kill -0 $SURGE_ROUTER_PID || { echo "router died"; cat "$work/router.log"; exit 1; }
surge_router_stop; rc=$?
[ $rc -eq 0 ] || { echo "router exited with $rc"; cat "$work/router.log"; exit 1; }
grep -E 'surge_drops_total|surge_rx_datagrams_total|surge_sessions' "$work/router.log"
rx=$(surge_router_counter "$work/router.log" surge_rx_datagrams_total)
drops=$(grep -F 'surge_drops_total{layer="wire"' "$work/router.log" | grep -v duplicate | awk '{s += $NF} END {print s + 0}')
echo "seed $seed: $rx datagrams received, $drops counted as wire drops"
[ "${rx:-0}" -ge "$COUNT" ] || { echo "router saw fewer datagrams than sent"; exit 1; }
# A random datagram can, rarely, be a well-formed Packet of a configured
# gateway; those are answered, not dropped. Nearly all must be drops.
[ "$drops" -ge $((COUNT * 98 / 100)) ] || { echo "too few drops counted"; exit 1; }
echo "random datagrams ok"
