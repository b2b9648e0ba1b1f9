#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make bench: surge-router on DPDK (net_af_packet on a veth pair, --no-huge)
# driven by surge-bench from another namespace at a sweep of offered rates,
# and, side by side at each rate, the same router core on a kernel UDP socket
# (--io kernel: the baseline "kernel sockets instead of DPDK"); then the
# dispatcher micro-benchmark and the session store benchmark.
# Writes docs/benchmarks.md (generated: never edit it by hand) and the raw
# JSON of every run under $BUILD/bench/.
# Environment: BENCH_SECONDS (per run, default 10), BENCH_RATES (default
# "25000 100000 200000 400000"), BENCH_STORE_DIR (the disk bench_store
# measures, default /var/tmp), BUILD.
set -u
cd "$(dirname "$0")/.."
. deploy/netns.sh
[ "$(id -u)" -eq 0 ] || { echo "make bench needs root (network namespaces, DPDK)"; exit 1; }

P=sbnch N=13
SECS=${BENCH_SECONDS:-10}
RATES=${BENCH_RATES:-"25000 100000 200000 400000"}
out="$BUILD/bench"
mkdir -p "$out"
rm -f "$out"/run-*.json
work=$(mktemp -d)
cleanup() { surge_router_stop >/dev/null 2>&1; surge_ns_down $P; rm -rf "$work"; }
trap cleanup EXIT

surge_ns_up $P $N || exit 1
surge_config $P $N "$work/surge.yaml"
# io_run IO RATE: one measured run of surge-bench against the router on IO.
io_run() {
	local io=$1 rate=$2
	if [ "$io" = kernel ]; then
		# the kernel port needs the address on the interface; DPDK must not have it
		ip netns exec ${P}rt ip addr add 10.77.$N.1/24 dev ${P}r0
		ip netns exec ${P}rt "$SURGE_ROOT/$BUILD/surge-router" --io kernel \
			-c "$work/surge.yaml" >"$work/router-$io-$rate.log" 2>&1 &
		SURGE_ROUTER_PID=$!
		for _ in $(seq 1 100); do
			grep -q '^surge-router: ready' "$work/router-$io-$rate.log" && break
			sleep 0.1
		done
	else
		surge_router_start $P "$work/surge.yaml" "$work/router-$io-$rate.log" || return 1
	fi
	echo "== $io: offered $rate customer messages/s for ${SECS}s"
	ip netns exec ${P}gw "$BUILD/surge-bench" --router 10.77.$N.1:7700 --agents 100 \
		--customers 400 --rate "$rate" --duration "$SECS" --quiet \
		--json "$out/run-$io-$rate.json" || echo "surge-bench failed at rate $rate on $io"
	surge_router_stop || echo "router exit status $? at rate $rate on $io"
	if [ "$io" = kernel ]; then
		ip netns exec ${P}rt ip addr del 10.77.$N.1/24 dev ${P}r0
		ip netns exec ${P}gw ip neigh flush dev ${P}g0
	fi
}

for rate in $RATES; do
	io_run dpdk "$rate"
	io_run kernel "$rate"
done

# The dispatcher alone, without I/O (bench/bench_dispatch.c): ops/s, memory per
# session, growth with agents and queue depth. Needs neither namespaces nor DPDK.
rm -f "$out/dispatch.json"
echo "== dispatcher micro-benchmark"
"$BUILD/bench_dispatch" --json "$out/dispatch.json" || echo "bench_dispatch failed (status $?)"

# The same cycles under callgrind: the instructions per op (the algorithmic
# cost, exact and free of the VM's noise) and the last-level data misses of a
# simulated cache (what the wall clock adds at large sizes), per size, engine
# and naive. About 2 minutes on one core. The simulated LL takes the geometry
# the kernel reports (valgrind's own CPUID probe misreads this VM's L3); where
# the kernel reports none, an EPYC core complex's 32 MiB, 16-way (valgrind
# would guess 512 MiB and count next to no misses).
rm -f "$out"/callgrind.* "$out/dispatch-callgrind.json"
if command -v valgrind >/dev/null 2>&1; then
	ll=()
	c=/sys/devices/system/cpu/cpu0/cache/index3
	if [ "$(cat $c/level 2>/dev/null)" = 3 ]; then
		size=$(cat $c/size)
		case $size in
		*K) size=$((${size%K} * 1024)) ;;
		*M) size=$((${size%M} * 1048576)) ;;
		esac
		ll=(--LL="$size,$(cat $c/ways_of_associativity),$(cat $c/coherency_line_size)")
	else
		ll=(--LL=33554432,16,64)
	fi
	echo "== dispatcher under callgrind (${ll[*]:-LL from valgrind}): instructions and LL misses per op"
	valgrind --tool=callgrind --cache-sim=yes "${ll[@]}" --instr-atstart=no --collect-atstart=no \
		--callgrind-out-file="$out/callgrind.%p" --log-file="$out/callgrind.log" \
		"$BUILD/bench_dispatch" --callgrind --json "$out/dispatch-callgrind.json" ||
		echo "bench_dispatch --callgrind failed (status $?, see $out/callgrind.log)"
else
	echo "valgrind missing (deploy/install-deps.sh): no instruction counts in the report"
fi

# The session store (bench/bench_store.c): durable appends with group commit
# against write+fdatasync per record and Redis (appendfsync always) on the
# same disk, ack latency, and the recovery rate. Needs neither namespaces nor
# DPDK. BENCH_STORE_DIR: the disk to measure (default /var/tmp).
rm -f "$out/store.json"
echo "== session store"
"$BUILD/bench_store" --dir "${BENCH_STORE_DIR:-/var/tmp}" --json "$out/store.json" ||
	echo "bench_store failed (status $?)"

/usr/bin/python3 - "$out" docs/benchmarks.md <<'PY'
import glob, json, os, platform, subprocess, sys, time
out, md = sys.argv[1], sys.argv[2]
runs = []
for path in glob.glob(os.path.join(out, "run-*.json")):
    with open(path) as f:
        r = json.load(f)
    r["io"] = "dpdk" if "-dpdk-" in os.path.basename(path) else "kernel"
    runs.append(r)
runs.sort(key=lambda r: (r["config"]["rate"], r["io"] != "dpdk"))
def us(ns): return "%.1f" % (ns / 1000.0)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
with open(md, "w") as f:
    f.write("# Benchmark results\n\n")
    f.write("Generated by `make bench` (bench/run.sh) — do not edit by hand.\n\n")
    f.write("- when: %s UTC, commit %s\n" % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), commit or "?"))
    f.write("- machine: %d cores (%s), kernel %s\n" % (os.cpu_count(), cpu, platform.release()))
    f.write("- router `dpdk`: surge-router on DPDK `net_af_packet` over a veth pair, `--no-huge --no-pci`, one worker lcore\n")
    f.write("- router `kernel` (the baseline, same run): the same router core on a kernel UDP socket "
            "(`--io kernel`, recvmmsg/sendmmsg in bursts of 32) on the same veth\n")
    f.write("- load: surge-bench (kernel UDP sockets) in another namespace: 100 agents x capacity 4, "
            "400 concurrent sessions, open-loop customer messages, each echoed by its agent\n")
    f.write("- latency is measured from each message's scheduled send time (no coordinated omission)\n\n")
    f.write("| io | offered msg/s | delivered msg/s | exactly once | missing | dup | forward p50 us | p99 us | p99.9 us | max us | round trip p50 us | p99 us | p99.9 us | sender lag mean us | VM stopped |\n")
    f.write("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    def stopped(r):
        v = r.get("vm_stops")
        if not v:
            return "n/a"
        return "%.1f%% (%d)%s" % (100.0 * v["stopped_ns"] / 1e9 / r["config"]["duration_s"], v["count"],
                                 "" if v["realtime_watch"] else "*")
    for r in runs:
        fw, rt = r["forward_latency_ns"], r["round_trip_latency_ns"]
        f.write("| %s | %d | %.0f | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" % (
            r["io"], r["config"]["rate"], r["rate_delivered"], r["exactly_once"], r["missing"], r["duplicates"],
            us(fw["p50"]), us(fw["p99"]), us(fw["p999"]), us(fw["max"]),
            us(rt["p50"]), us(rt["p99"]), us(rt["p999"]), us(r["sender_lag_ns"]["mean"]), stopped(r)))
    pairs = {}
    for r in runs:
        pairs.setdefault(r["config"]["rate"], {})[r["io"]] = r
    f.write("\n| offered msg/s | delivered dpdk / kernel | forward p99 kernel / dpdk | forward p99.9 kernel / dpdk |\n")
    f.write("|---:|---:|---:|---:|\n")
    for rate in sorted(pairs):
        p = pairs[rate]
        if "dpdk" not in p or "kernel" not in p:
            continue
        d, k = p["dpdk"], p["kernel"]
        ratio = lambda a, b: "%.2fx" % (a / b) if b else "n/a"
        f.write("| %d | %s | %s | %s |\n" % (rate, ratio(d["rate_delivered"], k["rate_delivered"]),
                ratio(k["forward_latency_ns"]["p99"], d["forward_latency_ns"]["p99"]),
                ratio(k["forward_latency_ns"]["p999"], d["forward_latency_ns"]["p999"])))
    f.write("\nRatios above 1 favour DPDK. Note that `net_af_packet` on a veth still crosses the "
            "kernel (a packet socket ring): here DPDK saves the UDP/IP stack and the per-burst system "
            "calls, not the driver.\n")
    f.write("\nA sender lag far above the latency means the offered rate was not reached: the "
            "system (router, veth, af_packet and the single-threaded load generator, on 2 cores) "
            "is saturated, and the latency then includes the time messages waited to be sent.\n")
    f.write("\nOn this 2-core machine the router's worker lcore and the bench share the cores with the "
            "kernel's veth and af_packet work, so absolute figures are those of a small VM, not of a NIC.\n")
    f.write("\n*VM stopped*: the share of the measured phase during which a SCHED_FIFO thread in "
            "surge-bench, sleeping 1 ms at a time, woke more than 5 ms late (and how many times): "
            "the virtual machine itself was not running (bench/freeze.c; * marks an ordinary thread, "
            "which a busy guest can also delay). Every message due in such a stop is late by it, so "
            "on these VMs the p99 and beyond are mostly the host's: the host stops both vCPUs for "
            "10-15 ms at a time once the guest's CPU, wake-ups and disk requests together pass its "
            "share (docs/development.md, \"VM stops\").\n")
    dpath = os.path.join(out, "dispatch.json")
    if os.path.exists(dpath):
        with open(dpath) as df:
            d = json.load(df)
        g, m = d["growth"], d["memory"]
        f.write("\n## Dispatcher micro-benchmark\n\n")
        f.write("`build/bench_dispatch` (bench/bench_dispatch.c): the routing engine alone on one core%s, "
                "no I/O. One skill, agents of capacity %d. One cycle = %d API calls (ops): a customer "
                "message and an agent reply on a random assigned session, the agent's close (which "
                "assigns the queue's head to the freed agent when sessions wait) and a new "
                "SessionOpen (assigned at once, or queued). The agent sweep runs with no queue and 75%% "
                "of the capacity in use; the queue sweep behind 1000 full agents. `naive` is a baseline "
                "written in the bench and run by the same driver: a linear scan for the least loaded "
                "agent and a FIFO array, i.e. what a simple implementation costs here.%s%s\n\n" % (
                    " (pinned to CPU %d)" % d["cpu"] if d.get("cpu", -1) >= 0 else "",
                    d["capacity"], d["ops_per_cycle"],
                    " disp_tick runs every virtual ms." if d.get("tick") else
                    " (disp_tick was not available: not driven.)",
                    " Every row is the median of %d alternated rounds (each round measures every "
                    "implementation, sweep and size once), so that a noisy minute on this shared VM "
                    "moves one round of a size, not the ratio of two sizes." % d["rounds"]
                    if d.get("rounds", 1) > 1 else ""))
        f.write("| impl | sweep | agents | assigned | waiting | M ops/s | ns/op |\n")
        f.write("|---|---|---:|---:|---:|---:|---:|\n")
        for r in d["runs"]:
            f.write("| %s | %s | %d | %d | %d | %.2f | %.1f |%s\n" % (
                r["impl"], r["sweep"], r["agents"], r["active"], r["waiting"],
                r["ops_per_s"] / 1e6, r["ns_per_op"], " failures: %d" % r["failures"] if r["failures"] else ""))
        eng = [r for r in d["runs"] if r["impl"] == "engine"]
        best = max(r["ops_per_s"] for r in eng) if eng else 0
        worst = min(r["ops_per_s"] for r in eng) if eng else 0
        f.write("\n| figure | measured | target |\n|---|---:|---:|\n")
        f.write("| engine ops/s, one core (worst .. best size) | %.2f M .. %.2f M | >= 5 M |\n" % (worst / 1e6, best / 1e6))
        def k(n): return "%dk" % (n // 1000) if n < 1000000 else "%dM" % (n // 1000000)
        def rounds(sweep):
            rs = sorted((r for r in eng if r["sweep"] == sweep), key=lambda r: r["agents"] if sweep == "agents" else r["waiting"])
            if len(rs) < 2 or len(rs[0].get("ns_per_op_rounds", [])) < 2:
                return ""
            def size(r):
                return k(r["agents"]) if sweep == "agents" else k(r["waiting"])
            return "; rounds, ns/op: %s %s, %s %s" % (
                size(rs[0]), "/".join("%.0f" % x for x in rs[0]["ns_per_op_rounds"]),
                size(rs[-1]), "/".join("%.0f" % x for x in rs[-1]["ns_per_op_rounds"]))
        f.write("| cost growth, agents 1k -> 100k (ns/op ratio) | %.2fx (naive %.2fx)%s | <= 1.5x |\n" % (g["engine_agents"], g["naive_agents"], rounds("agents")))
        drv = sorted(d.get("driver", []), key=lambda r: r["agents"])
        if len(drv) >= 2 and "engine_agents_net_of_driver" in g:
            f.write("| the same, net of the driver's own cost (ns/op of the driver alone: %s %.1f, %s %.1f) | %.2fx | |\n" % (
                k(drv[0]["agents"]), drv[0]["ns_per_op"], k(drv[-1]["agents"]), drv[-1]["ns_per_op"],
                g["engine_agents_net_of_driver"]))
        f.write("| cost growth, waiting 10k -> 1M (ns/op ratio) | %.2fx (naive %.2fx)%s | <= 1.5x |\n" % (g["engine_queue"], g["naive_queue"], rounds("queue")))
        f.write("| bytes per queued session (session slot + queue slot) | %.0f | <= 256 |\n" % m["per_queued_session"])
        f.write("| bytes per active session (session slot) | %.0f | |\n" % m["per_active_session"])
        f.write("| bytes per agent | %.0f | |\n" % m["per_agent"])
        if len(drv) >= 2:
            f.write("\nThe driver alone: the same cycles with every call answered at once (no dispatcher), in "
                    "the same rounds. What remains is the harness: its random picks in a table of every "
                    "assigned session (10 MB at 100k agents; prefetched a burst ahead, but on this VM a "
                    "prefetch does not walk the pages the TLB misses), building the requests, the calls. "
                    "The net growth subtracts it at both sizes; the target is set on the measured one.\n")
        f.write("\nMemory is what the engine allocates at creation (it allocates nothing afterwards) per "
                "unit of max_sessions / queue_capacity / max_agents, from %s; held text (questions, "
                "messages) comes on top, from the fixed-size text pool.\n" % (
                    "`disp_footprint`" if m["source"] == "disp_footprint" else "malloc's accounting (mallinfo2) around disp_create"))

        fl = d.get("floor")
        if fl:
            f.write("\n### This machine's floor for the agent sweep\n\n")
            f.write("The same binary, without the engine: per cycle %d iterations of work calibrated to the "
                    "engine's cycle at 1k agents (%.0f ns) and N random 64-byte lines, each read and written, "
                    "over an area as large as the engine's session slots and agents at 1k agents (%.1f MB) "
                    "and at 100k agents (%.0f MB); the lines of a burst of 8 cycles are loaded while the "
                    "burst before runs (as a perfect prefetch would), or not at all. Its growth is the least "
                    "that any design touching N random lines per cycle pays on this machine; set the "
                    "engine's against it.\n\n" % (fl["work"], fl["target_ns"], fl["small_bytes"] / 1048576.0,
                                                  fl["large_bytes"] / 1048576.0))
            f.write("| random lines per cycle | loaded | ns/cycle, 1k-agent area | ns/cycle, 100k-agent area | growth |\n")
            f.write("|---:|---|---:|---:|---:|\n")
            for r in fl["rows"]:
                f.write("| %d | %s | %.0f | %.0f | %.2fx |\n" % (r["lines"], "ahead" if r["ahead"] else "no",
                                                             r["small_ns"], r["large_ns"],
                                                             r["large_ns"] / r["small_ns"] if r["small_ns"] else 0))
    cpath = os.path.join(out, "dispatch-callgrind.json")
    if os.path.exists(dpath) and os.path.exists(cpath):
        with open(cpath) as cf:
            c = json.load(cf)
        # every callgrind dump: its name (the client request's), events, totals
        dumps, ll = {}, "?"
        for path in glob.glob(os.path.join(out, "callgrind.*")):
            name, events, total = None, None, None
            try:
                with open(path, errors="replace") as cf:
                    for line in cf:
                        if line.startswith("desc: Trigger: Client Request: "):
                            name = line.split(": ", 3)[3].strip()
                        elif line.startswith("desc: LL cache: "):
                            ll = line.split(": ", 2)[2].strip()
                        elif line.startswith("events: "):
                            events = line.split()[1:]
                        elif line.startswith(("summary: ", "totals: ")) and events:
                            v = [int(x) for x in line.split()[1:]]
                            total = dict(zip(events, v + [0] * (len(events) - len(v))))
                            break
            except (OSError, ValueError):
                continue
            if name and total:
                dumps[name] = total
        rows = []
        for w in c["windows"]:
            t = dumps.get(w["dump"])
            if not t or not w["ops"]:
                continue
            miss = t["DLmr"] + t["DLmw"] if "DLmr" in t else None
            rows.append(dict(w, ir=t["Ir"] / w["ops"], miss=None if miss is None else miss / w["ops"]))
        def growth(impl, sweep):
            rs = sorted((r for r in rows if r["impl"] == impl and r["sweep"] == sweep), key=lambda r: r["size"])
            if len(rs) < 2:
                return None
            lo, hi = rs[0], rs[-1]
            if lo["miss"] is None:
                miss = "not simulated"
            elif lo["miss"] >= 0.05:
                miss = "%.2fx" % (hi["miss"] / lo["miss"])
            else:
                miss = "+%.3f per op (from %.4f: ~0)" % (hi["miss"] - lo["miss"], lo["miss"])
            return lo, hi, "%.3fx" % (hi["ir"] / lo["ir"]), miss
        def k(n): return "%dk" % (n // 1000) if n < 1000000 else "%dM" % (n // 1000000)
        f.write("\n### Instructions and simulated cache misses per op (callgrind)\n\n")
        f.write("The same driver, sizes and warm-up under valgrind's callgrind "
                "(`bench_dispatch --callgrind`): after the warm-up, a fixed window of %d cycles "
                "(%d ops) for the engine and %d cycles for naive, counted between callgrind client "
                "requests. *Instructions per op* is the algorithmic cost: exact, repeatable, free of "
                "the VM's noise. *LL data misses per op* (DLmr + DLmw) come from callgrind's "
                "simulated caches (last level: %s), a model of what the wall clock adds when "
                "sessions and agents no longer fit in the cache. Both include the driver's "
                "work, as the ns/op above do.%s\n\n" % (
                    c["cycles"], c["cycles"] * c["ops_per_cycle"], c["naive_cycles"], ll,
                    " naive with more than %d agents is skipped (its scan of every agent per "
                    "open takes minutes under valgrind)." % c["naive_max_agents"]))
        f.write("| impl | sweep | agents | assigned | waiting | ops counted | instructions/op | LL data misses/op |\n")
        f.write("|---|---|---:|---:|---:|---:|---:|---:|\n")
        for r in rows:
            f.write("| %s | %s | %d | %d | %d | %d | %.0f | %s |%s\n" % (
                r["impl"], r["sweep"], r["agents"], r["active"], r["waiting"], r["ops"], r["ir"],
                "n/a" if r["miss"] is None else "%.3f" % r["miss"],
                " failures: %d" % r["failures"] if r["failures"] else ""))
        f.write("\n| growth, largest / smallest size | instructions/op | LL data misses/op | ns/op (above) | target |\n")
        f.write("|---|---:|---:|---:|---:|\n")
        for impl in ("engine", "naive"):
            for sweep, what in (("agents", "agents"), ("queue", "waiting")):
                gr = growth(impl, sweep)
                if not gr:
                    continue
                lo, hi, ir, miss = gr
                ns = [r["ns_per_op"] for s in (lo, hi) for r in d["runs"] if (r["impl"], r["sweep"],
                      r["agents" if sweep == "agents" else "waiting"]) == (impl, sweep, s["size"])]
                ns = "%.2fx" % (ns[1] / ns[0]) if len(ns) == 2 and ns[0] else "n/a"
                f.write("| %s, %s %s -> %s | %s | %s | %s | %s |\n" % (
                    impl, what, k(lo["size"]), k(hi["size"]), ir, miss, ns,
                    "<= 1.5x" if impl == "engine" else ""))
        f.write("\nRoughly, ns/op = instructions/op x time per instruction + LL misses/op x memory "
                "latency: where instructions per op stay flat while misses per op rise, the "
                "growth in ns/op is the memory hierarchy (random sessions and agents beyond the "
                "last-level cache), not the algorithm.\n")
    spath = os.path.join(out, "store.json")
    if os.path.exists(spath):
        with open(spath) as sf:
            s = json.load(sf)
        c = s["clients"]
        f.write("\n## Session store\n\n")
        f.write("`build/bench_store` (bench/bench_store.c), all on the same disk (`%s`, one run): "
                "surge's store (router/store) with its default policy `sync` (a record is "
                "acknowledged once an fdatasync covers it; group commit: records gather while a "
                "write and sync are in flight) and one producer thread; the baseline "
                "write() + fdatasync() per record on a plain file; Redis with `appendonly yes`, "
                "`appendfsync always`, driven by redis-benchmark (SET, `-d %d`, `-c %d`, no "
                "pipelining). A record is a MSG_IN event with %d bytes of text, %d bytes on disk "
                "(header, fields, padding); the baseline writes %d bytes per record.\n\n" % (
                    os.path.dirname(s["dir"]), s["record_bytes"], c, s["record_bytes"],
                    s["record_disk_bytes"], s["record_disk_bytes"]))
        f.write("- *max*: one producer appends as fast as the store takes records.\n")
        f.write("- *open loop*: %d records/s on a fixed schedule, sent in bursts every %d us "
                "(what is due then: %d records, as a worker appends what one receive burst "
                "brought); the producer sleeps in `store_wait_durable` between bursts. Ack "
                "latency runs from a record's append to the moment the producer, woken by the "
                "store, sees it durable; the row below it counts from the record's scheduled "
                "time, so it includes the wait for its burst.\n" % (
                    s["open_rate"], s.get("open_burst_us", 0),
                    s["open_rate"] * s.get("open_burst_us", 0) // 1000000))
        f.write("- *closed loop*: %d clients, each with one record outstanding, sending the next "
                "once the previous is durable (Redis: %d connections, each waiting for its "
                "reply); latency from append (send) to durable (reply). The clients are one "
                "thread that sleeps in `store_wait_durable` until the oldest is answered, as "
                "redis-benchmark sleeps in epoll. Run twice: without a commit delay (the "
                "store library's default), and on a fresh store with `commit_delay_us` = %d "
                "(after a batch is durable, the next one is held while it is smaller than that "
                "one, up to that long, so that the clients answering their acks share the next "
                "fdatasync instead of taking turns in two halves). That second closed loop and "
                "Redis run %d times, alternated (Redis's own rate varies by 1.7x from one minute "
                "to the next on this disk); the table shows the round whose ratio is the median "
                "(all ratios: %s), and the run without a delay is compared with that round's "
                "Redis. (The router itself defaults to 1000 us, docs/store.md.)\n\n" % (
                    c, c, s.get("commit_delay_us", 0), len(s.get("pair_rounds", [])) or 1,
                    ", ".join("%.2fx" % r["ratio"] for r in s.get("pair_rounds", [])) or "n/a"))
        def us(ns): return "%.0f" % (ns / 1000.0)
        def per_sync(n, syncs): return "%.0f" % (n / syncs) if syncs else ""
        f.write("| system | load | records/s | p50 us | p99 us | p99.9 us | fdatasyncs | records per fdatasync |\n")
        f.write("|---|---|---:|---:|---:|---:|---:|---:|\n")
        m, o, cl = s["surge_max"], s["surge_open"], s["surge_closed"]
        f.write("| surge | max, 1 producer | %.0f | | | | %d | %s |\n" % (
            m["records_per_s"], s["surge_max_syncs"], per_sync(m["records"], s["surge_max_syncs"])))
        f.write("| surge | open loop %d/s | %.0f | %s | %s | %s | %d | %s |\n" % (
            s["open_rate"], o["records_per_s"], us(o["p50_ns"]), us(o["p99_ns"]), us(o["p999_ns"]),
            s["surge_open_syncs"], per_sync(o["records"], s["surge_open_syncs"])))
        os_ = s.get("surge_open_sched")
        if os_:
            f.write("| surge | ... from the scheduled time | | %s | %s | %s | | |\n" % (
                us(os_["p50_ns"]), us(os_["p99_ns"]), us(os_["p999_ns"])))
        f.write("| surge | closed loop, %d clients | %.0f | %s | %s | %s | %d | %s |\n" % (
            c, cl["records_per_s"], us(cl["p50_ns"]), us(cl["p99_ns"]), us(cl["p999_ns"]),
            s["surge_closed_syncs"], per_sync(cl["records"], s["surge_closed_syncs"])))
        cd = s.get("surge_closed_delay")
        if cd:
            f.write("| surge | closed loop, %d clients, commit delay %d us | %.0f | %s | %s | %s | %d | %s |\n" % (
                c, s["commit_delay_us"], cd["records_per_s"], us(cd["p50_ns"]), us(cd["p99_ns"]),
                us(cd["p999_ns"]), s["surge_closed_delay_syncs"],
                per_sync(cd["records"], s["surge_closed_delay_syncs"])))
        for key, what in (("fsync_1", "1 thread"), ("fsync_c", "%d threads" % c)):
            r = s[key]
            f.write("| write + fdatasync per record | %s | %.0f | %s | %s | %s | %d | 1 |\n" % (
                what, r["records_per_s"], us(r["p50_ns"]), us(r["p99_ns"]), us(r["p999_ns"]), r["records"]))
        rd = s.get("redis")
        if rd:
            f.write("| Redis appendfsync always | %d connections | %.0f | %s | %s | | | |\n" % (
                c, rd["requests_per_s"], us(rd["p50_ns"]), us(rd["p99_ns"])))
        else:
            f.write("| Redis appendfsync always | not measured: %s | | | | | | |\n" % s.get("redis_skipped", "?"))
        f.write("\n| recovery | records | MB | seconds | records/s |\n|---|---:|---:|---:|---:|\n")
        for key, what in (("recovery_cold", "cold (log dropped from the page cache: a reboot)"),
                          ("recovery_warm", "warm (log in the page cache: a process restart)")):
            r = s[key]
            f.write("| %s | %d | %.0f | %.2f | %.0f |\n" % (
                what, r["records"], r["bytes"] / 1e6, r["seconds"], r["records_per_s"]))
        ra, t = s["ratios"], s["targets"]
        ok = lambda b: "met" if b else "**not met**"
        f.write("\n| figure | measured | target | |\n|---|---:|---:|---|\n")
        f.write("| durable %d-byte records/s, 1 producer | %.0f | >= 1,000,000 | %s |\n" % (
            s["record_bytes"], m["records_per_s"], ok(t["max_rate"])))
        f.write("| ack p99 at %d records/s | %s us | < 2,000 us | %s |\n" % (
            s["open_rate"], us(o["p99_ns"]), ok(t["open_p99"])))
        f.write("| surge / Redis appendfsync always, %d clients, equal record size | %s | >= 5x | %s |\n" % (
            c, "%.2fx" % ra["surge_vs_redis"] if rd else "n/a", ok(t["vs_redis"]) if rd else "not measured"))
        if cd:
            f.write("| ... with `commit_delay_us` = %d | %s | >= 5x | %s |\n" % (
                s["commit_delay_us"], "%.2fx" % ra["surge_delay_vs_redis"] if rd else "n/a",
                ok(t["vs_redis_delay"]) if rd else "not measured"))
        f.write("| recovery records/s (cold / warm) | %.0f / %.0f | >= 2,000,000 | %s / %s |\n" % (
            s["recovery_cold"]["records_per_s"], s["recovery_warm"]["records_per_s"],
            ok(t["recovery_cold"]), ok(t["recovery_warm"])))
        f.write("| surge max / write+fdatasync per record | %.1fx | | |\n" % ra["surge_max_vs_fsync_per_record"])
        f.write("| surge %d clients / %d threads write+fdatasync | %.2fx | | |\n" % (
            c, c, ra["surge_closed_vs_fsync_c_threads"]))
        if rd:
            f.write("| surge max / Redis %d connections | %.1fx | | |\n" % (c, ra["surge_max_vs_redis"]))
        f.write("\nEvery acknowledgement waits for at least one fdatasync: the p99 of a lone "
                "write + fdatasync on this disk (%s us, the 1-thread row) is the floor under the "
                "store's ack p99 here.\n" % us(s["fsync_1"]["p99_ns"]))
        if "surge_open_freezes" in s:
            f.write("\nDuring the open loop a thread sleeping 1 ms at a time woke more than 5 ms "
                    "late %d times, %.0f ms in all (%.1f%% of the run). On this VM the host "
                    "stops both vCPUs for 10-15 ms every 100 ms once disk flushes come on top "
                    "of a busy vCPU or of thousands of wake-ups a second (bench/vm_stops.sh; "
                    "docs/development.md, \"VM stops\"): every acknowledgement due in such a "
                    "window is late by it. Hence the sleeping producer, the bursts and no ring "
                    "polling while a small batch is in flight: with a spinning producer the "
                    "machine stood still 7-11%% of the open loop and the ack p99 was 12-15 ms.\n" % (
                        s["surge_open_freezes"], s["surge_open_frozen_ms"],
                        100.0 * s["surge_open_frozen_ms"] / 1000.0 / (o["records"] / s["open_rate"])))
        f.write("\nIn a closed loop every system's rate is bounded by clients / latency: with one "
                "record outstanding per client, the %d clients' records can at best share one "
                "fdatasync, so the closed-loop figures compare the cost each adds around the "
                "sync; the max and open-loop rows show what group commit does with a producer "
                "that does not wait.\n" % c)
print("wrote", md)
PY
