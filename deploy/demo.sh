#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make demo: a private namespace pair with a veth between them, surge-router
# on DPDK (net_af_packet, --no-huge --no-pci) in one, surge-bench's customer
# and agent gateways in the other; a festival-style run of DEMO_SECONDS
# (default 20), the report, then everything stopped and removed.
# Environment: DEMO_SECONDS, DEMO_RATE (customer messages/s), DEMO_AGENTS,
# DEMO_CUSTOMERS, BUILD.
set -u
cd "$(dirname "$0")/.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "make demo needs root (network namespaces, DPDK)"; exit 1; }

P=sdemo N=10
SECONDS_RUN=${DEMO_SECONDS:-20}
RATE=${DEMO_RATE:-20000}
AGENTS=${DEMO_AGENTS:-100}
CUSTOMERS=${DEMO_CUSTOMERS:-400}
work=$(mktemp -d)
report="$BUILD/demo-report.txt"
cleanup() { surge_router_stop >/dev/null 2>&1; surge_ns_down $P; rm -rf "$work"; }
trap cleanup EXIT

echo "== topology: namespaces ${P}rt (router) and ${P}gw (gateways), veth ${P}r0 <-> ${P}g0"
surge_ns_up $P $N || exit 1
surge_config $P $N "$work/surge.yaml"
echo "== starting surge-router on 10.77.$N.1:7700 (DPDK net_af_packet, --no-huge --no-pci)"
surge_router_start $P "$work/surge.yaml" "$work/router.log" || exit 1
grep '^surge-router: ready' "$work/router.log"

echo "== surge-bench: $AGENTS agents, $CUSTOMERS concurrent customers, $RATE msg/s for ${SECONDS_RUN}s"
ip netns exec ${P}gw "$BUILD/surge-bench" --router 10.77.$N.1:7700 \
	--agents "$AGENTS" --customers "$CUSTOMERS" --rate "$RATE" \
	--duration "$SECONDS_RUN" --json "$BUILD/demo-report.json" | tee "$report"
bench_rc=${PIPESTATUS[0]}

echo "== stopping the router"
surge_router_stop
router_rc=$?
echo "== router counters at exit (non-zero only)"
awk '/^surge-router: stopping/{p=1} p && $NF != "0" && !/^#/' "$work/router.log"
echo "report: $report and $BUILD/demo-report.json"
[ $bench_rc -eq 0 ] || { echo "surge-bench failed ($bench_rc)"; exit 1; }
[ $router_rc -eq 0 ] || { echo "surge-router exited with $router_rc"; exit 1; }
exit 0
