#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Does this machine stop dead under load? A watcher sleeps 1 ms at a time on
# vCPU 0 and counts wake-ups more than 4 ms late while, in turn: nothing
# else runs; a thread spins; an 8 KiB write+fdatasync loop runs in DIR
# (default /var/tmp); that loop beside the spinner; that loop beside a
# thread sleeping 100 us at a time (CPU near 0, 5-10k wake-ups/s). On the
# 2-core VMs of 2026-12 (Firecracker on PVM) only the last two show gaps:
# 10-15 ms, every 100 ms (docs/development.md, "VM stops"). Run it on an
# otherwise idle machine. About 12 seconds; not part of make bench.
set -eu
dir=${1:-/var/tmp}
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$dir/vm_stops.$$"' EXIT
cat >"$work/p.c" <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}
int main(int argc, char **argv)
{
	double t0 = now(), prev = t0, worst = 0, lost = 0;
	int n = 0;
	if (!strcmp(argv[1], "watch")) {
		const struct timespec ms = {0, 1000000};
		while (now() - t0 < 2) {
			nanosleep(&ms, NULL);
			double t = now(), late = t - prev - 0.001;
			if (late > 0.004) {
				n++;
				lost += late;
				worst = late > worst ? late : worst;
			}
			prev = t;
		}
		printf("%3d wake-ups over 4 ms late in 2 s, %4.0f ms in all, worst %4.1f ms\n", n,
		       lost * 1e3, worst * 1e3);
	} else if (!strcmp(argv[1], "spin")) {
		volatile unsigned long x = 0;
		while (now() - t0 < 2.5)
			x++;
	} else if (!strcmp(argv[1], "nap")) {
		const struct timespec us = {0, 100000};
		while (now() - t0 < 2.5)
			nanosleep(&us, NULL);
	} else {
		static char buf[8192];
		int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
		long off = 0;
		if (fd < 0)
			return 1;
		while (now() - t0 < 2.5) {
			if (pwrite(fd, buf, sizeof(buf), off) != sizeof(buf) || fdatasync(fd))
				return 1;
			off = (off + (long)sizeof(buf)) % (64L << 20);
		}
		close(fd);
	}
	return 0;
}
C
cc -O2 -o "$work/p" "$work/p.c"
p=$work/p
f=$dir/vm_stops.$$
run() { # label, then the load's commands (left to the scheduler: the stops need both vCPUs)
	local label=$1
	shift
	printf '%-32s' "$label:"
	for l in "$@"; do
		# shellcheck disable=SC2086
		$l &
	done
	sleep 0.2
	taskset -c 0 "$p" watch
	wait
}
run "alone"
run "a spinner" "$p spin"
run "fsyncs" "$p fsync $f"
run "fsyncs and a spinner" "$p fsync $f" "$p spin"
run "fsyncs and a 100 us napper" "$p fsync $f" "$p nap"
