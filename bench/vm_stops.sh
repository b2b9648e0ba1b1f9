#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Does this machine stop dead under load? Runs a loop that reads the clock on
# vCPU 0 and counts gaps over 4 ms, (a) alone, (b) with a spinning thread on
# vCPU 1, (c) with the spinner and an 8 KiB write+fdatasync loop in DIR
# (default /var/tmp). On the 2-core VMs of 2026-12 only (c) shows gaps:
# 10-15 ms every 100 ms (docs/development.md). Run it on an otherwise idle
# machine (anything else busy preempts the clock loop and shows as gaps in
# (b) too). About 10 seconds; not part of make bench.
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
	if (!strcmp(argv[1], "gaps")) {
		while (now() - t0 < 2) {
			double t = now();
			if (t - prev > 0.004) {
				n++;
				lost += t - prev;
				worst = t - prev > worst ? t - prev : worst;
			}
			prev = t;
		}
		printf("%3d gaps over 4 ms in 2 s, %4.0f ms in all, worst %4.1f ms\n", n,
		       lost * 1e3, worst * 1e3);
	} else if (!strcmp(argv[1], "spin")) {
		volatile unsigned long x = 0;
		while (now() - t0 < 2.5)
			x++;
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
echo -n "alone:                         "
taskset -c 0 "$p" gaps
echo -n "with a spinner on vCPU 1:      "
taskset -c 1 "$p" spin & sleep 0.2
taskset -c 0 "$p" gaps
wait
echo -n "with the spinner and fsyncs:   "
taskset -c 1 "$p" spin & "$p" fsync "$dir/vm_stops.$$" & sleep 0.2
taskset -c 0 "$p" gaps
wait
