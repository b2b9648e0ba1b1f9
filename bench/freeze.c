/* SPDX-License-Identifier: MIT */
/*
 * Freeze watch (bench.h): a thread that sleeps 1 ms at a time and counts the
 * wake-ups that came more than 5 ms late.
 *
 * On the VMs these benchmarks run on (Firecracker on PVM, 2 vCPUs) the host
 * stops both vCPUs for 10-15 ms every 100 ms once the guest's CPU, its
 * wake-ups and its disk requests together pass the VM's share
 * (docs/development.md, "VM stops"). Every latency measured across such a
 * window grows by it, whatever the code under test does, so the benchmarks
 * report how much of their run the watch saw stopped. The watch asks for
 * SCHED_FIFO (root): then no thread of the guest can make it late, only the
 * guest not running at all (or, for well under a millisecond, an interrupt
 * handler). Without it a fully busy guest can also delay it by a scheduler
 * slice, and the report says which kind of watch it was.
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define FREEZE_PERIOD_NS 1000000u /* one sleep */
#define FREEZE_LATE_NS   5000000u /* late by more than this: stopped */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *freeze_main(void *arg)
{
	struct bench_freeze *w = arg;
	const struct timespec period = {0, FREEZE_PERIOD_NS};
	const struct sched_param prio = {.sched_priority = 1};

	w->realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &prio) == 0;
	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		uint64_t t0 = mono_ns(), t1, late;

		nanosleep(&period, NULL);
		t1 = mono_ns();
		late = t1 - t0 - FREEZE_PERIOD_NS;
		if (t1 - t0 <= FREEZE_LATE_NS || t1 < w->from_ns || t0 >= w->until_ns)
			continue;
		w->count++;
		w->stopped_ns += late;
		if (late > w->worst_ns)
			w->worst_ns = late;
	}
	return NULL;
}

int bench_freeze_start(struct bench_freeze *w, uint64_t from_ns, uint64_t until_ns)
{
	memset(w, 0, sizeof(*w));
	w->from_ns = from_ns;
	w->until_ns = until_ns;
	if (pthread_create(&w->th, NULL, freeze_main, w) != 0)
		return -1;
	w->running = true;
	return 0;
}

void bench_freeze_stop(struct bench_freeze *w)
{
	if (!w->running)
		return;
	atomic_store_explicit(&w->stop, true, memory_order_relaxed);
	pthread_join(w->th, NULL);
	w->running = false;
}
