/* SPDX-License-Identifier: MIT */
/*
 * The store's writer: tickets become durable under each policy, group
 * commit, several producers, segment rotation and reopening (LSNs continue
 * in a new segment), failed / short writes and failed syncs (read-only, the
 * durable prefix survives, nothing torn), checkpoints with retention,
 * erasure (older segments scrubbed after the next checkpoint), transcripts
 * and encryption at rest. Each test works in its own directory under /tmp.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_pvt.h"

#define MAX_RECS 40000u

/* ---- helpers -------------------------------------------------------------------- */

static char *make_dir(void)
{
	char *d = strdup("/tmp/surge_store_test.XXXXXX");

	assert_non_null(d);
	assert_non_null(mkdtemp(d));
	return d;
}

static void remove_dir(char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (d) {
		while ((de = readdir(d)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
	free(dir);
}

static uint32_t count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint32_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (l == 24 && !strcmp(de->d_name + 20, ".seg"))
			n++;
	}
	closedir(d);
	return n;
}

static bool segment_exists(const char *dir, uint64_t first_lsn)
{
	char name[32], path[512];
	struct stat st;

	store_seg_name(first_lsn, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

static atomic_int errors_logged;

static void test_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)msg;
	if (level == 0)
		atomic_fetch_add(&errors_logged, 1);
}

static struct store_conf base_conf(const char *dir, enum store_policy policy)
{
	struct store_conf c = {
	        .dir = dir,
	        .policy = policy,
	        .interval_ms = 5,
	        .segment_bytes = 1u << 20,
	        .ring_bytes = 1u << 20,
	        .batch_bytes = 256u << 10,
	        .retention_ms = 7ull * 86400000u,
	        .history_customers = 1000,
	        .log = test_log,
	};
	return c;
}

static char texts[4][64];

/* Message i of producer p: msg_id = p << 32 | i, a text that says so. */
static struct store_event msg_event(uint32_t p, uint32_t i)
{
	char *t = texts[p & 3];
	int n = snprintf(t, 64, "message %u of producer %u", i, p);
	struct store_event ev = {
	        .type = STORE_REC_MSG_IN,
	        .ts_ms = 1700000000000ull + i,
	        .session_id = 1,
	        .msg_id = (uint64_t)p << 32 | i,
	        .text = {t, (uint32_t)n},
	};
	return ev;
}

static void append_ok(struct store_producer *p, const struct store_event *ev, uint64_t *ticket)
{
	int ret;

	while ((ret = store_append(p, ev, ticket)) == -ENOBUFS)
		sched_yield();
	assert_int_equal(ret, 0);
}

static bool wait_for(bool (*cond)(const void *, uint64_t), const void *arg, uint64_t v)
{
	for (int i = 0; i < 10000; i++) {
		struct timespec ts = {0, 1000000};

		if (cond(arg, v))
			return true;
		nanosleep(&ts, NULL);
	}
	return cond(arg, v);
}

/* CPU seconds this process used while the test slept: an idle store must not spin. */
static double cpu_while_sleeping(useconds_t us)
{
	struct rusage r0, r1;

	getrusage(RUSAGE_SELF, &r0);
	usleep(us);
	getrusage(RUSAGE_SELF, &r1);
	return (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
	       (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
	       (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
	       (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
}

static bool durable_reached(const void *p, uint64_t t)
{
	return store_durable(p) >= t;
}

static uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* What store_scan read back. */
struct scanned {
	uint32_t n;
	uint64_t lsn[MAX_RECS];
	uint64_t msg_id[MAX_RECS];
	uint16_t type[MAX_RECS];
	char text0[64]; /* the text of the first MSG_IN */
	bool bad_text;  /* a MSG_IN whose text does not match its msg_id */
};

static int scan_fn(void *ctx, const struct store_event *ev)
{
	struct scanned *sc = ctx;
	char want[64];

	if (sc->n == MAX_RECS)
		return -ENOSPC;
	sc->lsn[sc->n] = ev->lsn;
	sc->msg_id[sc->n] = ev->msg_id;
	sc->type[sc->n] = ev->type;
	if (ev->type == STORE_REC_MSG_IN) {
		snprintf(want, sizeof(want), "message %u of producer %u", (uint32_t)ev->msg_id,
		         (uint32_t)(ev->msg_id >> 32));
		if (ev->text.len != strlen(want) || memcmp(ev->text.ptr, want, ev->text.len))
			sc->bad_text = true;
	}
	sc->n++;
	return 0;
}

static struct scanned *scan(const char *dir, const uint8_t *key)
{
	struct scanned *sc = calloc(1, sizeof(*sc));
	struct store_aead *a = key ? store_aead_create(key) : NULL;

	assert_non_null(sc);
	assert_int_equal(store_scan(dir, a, scan_fn, sc), 0);
	store_aead_destroy(a);
	return sc;
}

/* The MSG_IN records read back are messages 0..n-1 of producer 0, LSNs from 1. */
static void assert_msgs(const struct scanned *sc, uint32_t n)
{
	uint32_t k = 0;

	assert_false(sc->bad_text);
	for (uint32_t i = 0; i < sc->n; i++) {
		assert_int_equal(sc->lsn[i], i + 1);
		if (sc->type[i] != STORE_REC_MSG_IN)
			continue;
		assert_int_equal(sc->msg_id[i], k);
		k++;
	}
	assert_int_equal(k, n);
}

/* ---- tests -------------------------------------------------------------------------- */

static void bad_configuration(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct store *s;
	struct store_event ev = msg_event(0, 0);
	char big[STORE_STR_MAX + 1];
	uint64_t t;

	(void)state;
	c.ring_bytes = 100000; /* not a power of 2 */
	errno = 0;
	assert_null(store_open(&c, NULL));
	assert_int_equal(errno, EINVAL);
	c = base_conf(dir, STORE_POLICY_SYNC);
	c.segment_bytes = 100000; /* not a multiple of 4096 */
	assert_null(store_open(&c, NULL));
	assert_int_equal(errno, EINVAL);
	c = base_conf(dir, STORE_POLICY_SYNC);
	c.nb_producers = 65;
	assert_null(store_open(&c, NULL));
	assert_int_equal(errno, EINVAL);
	c = base_conf(NULL, STORE_POLICY_SYNC);
	assert_null(store_open(&c, NULL));
	assert_int_equal(errno, EINVAL);

	c = base_conf(dir, STORE_POLICY_SYNC);
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_null(store_producer(s, 1));
	ev.type = STORE_REC_NONE;
	assert_int_equal(store_append(store_producer(s, 0), &ev, &t), -EINVAL);
	ev.type = STORE_REC_CKPT_BEGIN; /* the writer's own */
	assert_int_equal(store_append(store_producer(s, 0), &ev, &t), -EINVAL);
	ev = msg_event(0, 0);
	memset(big, 'x', sizeof(big));
	ev.text = (struct store_str){big, sizeof(big)};
	assert_int_equal(store_append(store_producer(s, 0), &ev, &t), -EMSGSIZE);
	assert_int_equal(store_close(s), 0);
	remove_dir(dir);
}

static void durable_under_policy(enum store_policy policy)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, policy);
	struct store_producer *p;
	struct store_stats st;
	struct scanned *sc;
	struct store *s;
	uint64_t t = 0;

	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	assert_int_equal(store_durable(p), 0);
	for (uint32_t i = 0; i < 1000; i++) {
		struct store_event ev = msg_event(0, i);

		append_ok(p, &ev, &t);
		assert_int_equal(t, i + 1);
	}
	assert_int_equal(store_wait_durable(p, 1000, mono_ns() + 10000000000ull), 0);
	assert_int_equal(store_durable(p), 1000);
	{
		/* A ticket not yet handed out: the wait ends at the deadline. */
		uint64_t t0 = mono_ns();

		assert_int_equal(store_wait_durable(p, 1001, t0 + 20000000u), -ETIMEDOUT);
		assert_true(mono_ns() - t0 >= 20000000u);
	}
	store_stats_get(s, &st);
	assert_int_equal(st.appended, 1000);
	assert_int_equal(st.durable_lsn, 1000);
	assert_int_equal(st.error, 0);
	assert_true(store_healthy(s));
	if (policy == STORE_POLICY_SYNC)
		assert_true(st.syncs >= 1);
	assert_true(cpu_while_sleeping(200000) < 0.05);
	assert_int_equal(store_close(s), 0);

	sc = scan(dir, NULL);
	assert_int_equal(sc->n, 1000);
	assert_msgs(sc, 1000);
	free(sc);
	remove_dir(dir);
}

static void durable_sync(void **state)
{
	(void)state;
	durable_under_policy(STORE_POLICY_SYNC);
}

static void durable_interval(void **state)
{
	(void)state;
	durable_under_policy(STORE_POLICY_INTERVAL);
}

static void durable_none(void **state)
{
	(void)state;
	durable_under_policy(STORE_POLICY_NONE);
}

struct prod_arg {
	struct store_producer *p;
	uint32_t idx, n;
};

static void *producer_main(void *arg)
{
	struct prod_arg *a = arg;
	uint64_t t = 0;

	for (uint32_t i = 0; i < a->n; i++) {
		char text[64];
		int n = snprintf(text, sizeof(text), "message %u of producer %u", i, a->idx);
		struct store_event ev = {.type = STORE_REC_MSG_IN,
		                         .session_id = 1,
		                         .msg_id = (uint64_t)a->idx << 32 | i,
		                         .text = {text, (uint32_t)n}};
		int ret;

		while ((ret = store_append(a->p, &ev, &t)) == -ENOBUFS)
			sched_yield();
		if (ret || t != i + 1u)
			return (void *)1;
	}
	while (store_durable(a->p) < a->n)
		sched_yield();
	return NULL;
}

/* Two producers through small rings (many wraps): far fewer syncs than records. */
static void group_commit(void **state)
{
	enum { PER = 15000 };
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct prod_arg args[2];
	pthread_t th[2];
	uint32_t next[2] = {0, 0};
	struct store_stats st;
	struct scanned *sc;
	struct store *s;

	(void)state;
	c.nb_producers = 2;
	c.ring_bytes = 64u << 10;
	c.segment_bytes = 4u << 20;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	for (uint32_t i = 0; i < 2; i++) {
		args[i] = (struct prod_arg){.p = store_producer(s, i), .idx = i, .n = PER};
		assert_int_equal(pthread_create(&th[i], NULL, producer_main, &args[i]), 0);
	}
	for (uint32_t i = 0; i < 2; i++) {
		void *ret;

		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
	}
	store_stats_get(s, &st);
	assert_int_equal(st.appended, 2 * PER);
	assert_true(st.syncs * 10 < 2 * PER);
	assert_true(st.max_batch > 10);
	assert_int_equal(store_close(s), 0);

	sc = scan(dir, NULL);
	assert_int_equal(sc->n, 2 * PER);
	assert_false(sc->bad_text);
	for (uint32_t i = 0; i < sc->n; i++) {
		uint32_t who = (uint32_t)(sc->msg_id[i] >> 32);

		assert_int_equal(sc->lsn[i], i + 1);
		assert_true(who < 2);
		/* Each producer's records keep their order. */
		assert_int_equal((uint32_t)sc->msg_id[i], next[who]);
		next[who]++;
	}
	free(sc);
	remove_dir(dir);
}

static void spin_us(uint64_t us)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000u +
	               (uint64_t)(t.tv_nsec - t0.tv_nsec) / 1000u <
	       us);
}

/*
 * Clients that each wait for their ack before sending again: mean records
 * per batch with the given commit delay.
 */
static double closed_loop_batch(uint32_t delay_us)
{
	enum { CLIENTS = 8, ROUNDS = 150 };
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	uint64_t ticket[CLIENTS], b0;
	struct store_producer *p;
	struct store_stats st;
	struct store *s;
	uint32_t done = 0, next = 0;

	c.commit_delay_us = delay_us;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	for (uint32_t k = 0; k < CLIENTS; k++) {
		struct store_event ev = msg_event(0, next++);

		append_ok(p, &ev, &ticket[k]);
	}
	/* The first batches decide the cohorts; count from the second round on. */
	assert_true(wait_for(durable_reached, p, ticket[CLIENTS - 1]));
	store_stats_get(s, &st);
	b0 = st.batches;
	while (done < CLIENTS * ROUNDS) {
		uint64_t d = store_durable(p);

		for (uint32_t k = 0; k < CLIENTS; k++) {
			if (ticket[k] > d || done == CLIENTS * ROUNDS)
				continue;
			struct store_event ev = msg_event(0, next++);

			append_ok(p, &ev, &ticket[k]);
			done++;
			spin_us(40); /* clients answer one after another, not all at once */
		}
		assert_true(store_healthy(s));
	}
	for (uint32_t k = 0; k < CLIENTS; k++)
		assert_true(wait_for(durable_reached, p, ticket[k]));
	store_stats_get(s, &st);
	assert_int_equal(store_close(s), 0);
	remove_dir(dir);
	return (double)(CLIENTS * ROUNDS) / (double)(st.batches - b0);
}

/* The commit delay gathers every waiting client into each batch. */
static void commit_delay(void **state)
{
	double without = closed_loop_batch(0), with = closed_loop_batch(5000);
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);

	(void)state;
	printf("records per batch, 8 clients in a closed loop: %.2f without a commit delay, "
	       "%.2f with 5 ms\n",
	       without, with);
	assert_true(with > 7.0);
	assert_true(with > without);
	c.commit_delay_us = 10001;
	assert_null(store_open(&c, NULL));
	assert_int_equal(errno, EINVAL);
	remove_dir(dir);
}

/* Small segments: many rotations; reopening reads every record; LSNs go on. */
static void rotation_run(bool buffered)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct store_fault fault = {.buffered = buffered};
	struct store_recovery rec;
	struct store_producer *p;
	struct store_stats st;
	struct scanned *sc;
	struct store *s;
	uint32_t segs;
	uint64_t t = 0;

	c.segment_bytes = 64u << 10;
	c.fault = &fault;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	for (uint32_t i = 0; i < 3000; i++) {
		struct store_event ev = msg_event(0, i);

		append_ok(p, &ev, &t);
	}
	assert_true(wait_for(durable_reached, p, 3000));
	store_stats_get(s, &st);
	assert_true(st.segments_created >= 5);
	assert_int_equal(store_close(s), 0);
	segs = count_segments(dir);
	assert_int_equal(segs, st.segments_created);
	sc = scan(dir, NULL);
	assert_int_equal(sc->n, 3000);
	assert_msgs(sc, 3000);
	free(sc);

	s = store_open(&c, &rec);
	assert_non_null(s);
	assert_int_equal(rec.last_lsn, 3000);
	assert_int_equal(rec.torn_bytes, 0);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	for (uint32_t i = 3000; i < 3100; i++) {
		struct store_event ev = msg_event(0, i);

		append_ok(p, &ev, &t);
	}
	assert_int_equal(t, 100); /* tickets count this store's appends */
	assert_int_equal(store_close(s), 0);
	assert_true(segment_exists(dir, 3001));
	assert_int_equal(count_segments(dir), segs + 1);
	sc = scan(dir, NULL);
	assert_int_equal(sc->n, 3100);
	assert_msgs(sc, 3100);
	free(sc);
	remove_dir(dir);
}

static void rotation_and_reopen(void **state)
{
	(void)state;
	rotation_run(false);
}

/* The same through the page cache, as where O_DIRECT is refused. */
static void rotation_buffered(void **state)
{
	(void)state;
	rotation_run(true);
}

/* Closing and reopening, without a start in between, leaves no empty segment. */
static void reopen_continues(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct store_producer *p;
	struct scanned *sc;
	struct store *s;
	uint64_t t;

	(void)state;
	for (uint32_t round = 0; round < 3; round++) {
		s = store_open(&c, NULL);
		assert_non_null(s);
		assert_int_equal(store_close(s), 0); /* nothing appended: nothing created */
		s = store_open(&c, NULL);
		assert_non_null(s);
		assert_int_equal(store_start(s), 0);
		p = store_producer(s, 0);
		for (uint32_t i = 0; i < 10; i++) {
			struct store_event ev = msg_event(0, round * 10 + i);

			append_ok(p, &ev, &t);
		}
		assert_int_equal(store_close(s), 0);
		assert_true(segment_exists(dir, round * 10 + 1));
	}
	assert_int_equal(count_segments(dir), 3);
	sc = scan(dir, NULL);
	assert_int_equal(sc->n, 30);
	assert_msgs(sc, 30);
	free(sc);
	remove_dir(dir);
}

/* ---- fault injection ---------------------------------------------------------------- */

enum fault_kind { FAIL_WRITE, SHORT_WRITE, FAIL_SYNC };

struct fault_ctx {
	enum fault_kind kind;
	atomic_bool armed;
	atomic_int fired;
};

static int before_write(void *ctx, uint64_t off, size_t len)
{
	struct fault_ctx *f = ctx;

	(void)off;
	if (!atomic_load(&f->armed) || f->kind == FAIL_SYNC)
		return 0;
	atomic_store(&f->armed, false);
	atomic_fetch_add(&f->fired, 1);
	return f->kind == FAIL_WRITE ? -ENOSPC : (int)(len / 2 > 0 ? len / 2 : 1);
}

static int before_sync(void *ctx)
{
	struct fault_ctx *f = ctx;

	if (!atomic_load(&f->armed) || f->kind != FAIL_SYNC)
		return 0;
	atomic_store(&f->armed, false);
	atomic_fetch_add(&f->fired, 1);
	return -EIO;
}

static void fault_case(enum fault_kind kind)
{
	const int want_err = kind == FAIL_WRITE ? ENOSPC : EIO;
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct fault_ctx f = {.kind = kind};
	struct store_fault fault = {
	        .before_write = before_write, .before_sync = before_sync, .ctx = &f};
	struct store_producer *p;
	struct store_stats st;
	struct scanned *sc;
	struct store *s;
	uint64_t t = 0;

	atomic_store(&errors_logged, 0);
	c.fault = &fault;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	for (uint32_t i = 0; i < 50; i++) {
		struct store_event ev = msg_event(0, i);

		append_ok(p, &ev, &t);
	}
	assert_true(wait_for(durable_reached, p, 50));
	atomic_store(&f.armed, true);
	for (uint32_t i = 50; i < 100; i++) {
		struct store_event ev = msg_event(0, i);
		int ret;

		/* The failure may come before the last of these. */
		while ((ret = store_append(p, &ev, &t)) == -ENOBUFS)
			sched_yield();
		if (ret == -EROFS)
			break;
		assert_int_equal(ret, 0);
	}
	/* A producer asleep waiting for its last record is woken by the failure. */
	assert_int_equal(store_wait_durable(p, t, mono_ns() + 30000000000ull), -EROFS);
	assert_false(store_healthy(s));
	assert_int_equal(atomic_load(&f.fired), 1);
	/* Whatever was not durable at the failure never becomes so. */
	assert_int_equal(store_durable(p), 50);
	{
		struct store_event ev = msg_event(0, 100);

		assert_int_equal(store_append(p, &ev, &t), -EROFS);
	}
	store_stats_get(s, &st);
	assert_int_equal(st.error, want_err);
	assert_int_equal(st.durable_lsn, 50);
	if (kind == FAIL_SYNC) {
		assert_int_equal(st.sync_errors, 1);
		assert_int_equal(st.write_errors, 0);
	} else {
		assert_int_equal(st.write_errors, 1);
		assert_int_equal(st.sync_errors, 0);
	}
	/* Read-only and idle: the store thread sleeps too. */
	assert_true(cpu_while_sleeping(200000) < 0.05);
	assert_int_equal(store_durable(p), 50);
	assert_int_equal(store_close(s), -want_err);
	assert_int_equal(atomic_load(&errors_logged), 1);

	/*
	 * Reopened: every durable record, then possibly a prefix of the failed
	 * batch that reached the page cache (a failed fdatasync or the complete
	 * records of a short write), nothing torn, nothing else.
	 */
	c.fault = NULL;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_close(s), 0);
	sc = scan(dir, NULL);
	assert_true(sc->n >= 50 && sc->n <= 100);
	if (kind == FAIL_WRITE)
		assert_int_equal(sc->n, 50);
	assert_msgs(sc, sc->n);
	free(sc);
	remove_dir(dir);
}

static void failed_write(void **state)
{
	(void)state;
	fault_case(FAIL_WRITE);
}

static void short_write(void **state)
{
	(void)state;
	fault_case(SHORT_WRITE);
}

static void failed_sync(void **state)
{
	(void)state;
	fault_case(FAIL_SYNC);
}

/* ---- checkpoints and retention -------------------------------------------------------- */

struct sess_seen {
	uint32_t n;
	uint64_t id[16];
	bool assigned[16];
	char customer[16][64];
};

static void collect_session(void *ctx, const struct store_session *ss,
                            const struct store_msg *backlog, uint32_t nb_backlog)
{
	struct sess_seen *seen = ctx;

	(void)backlog;
	(void)nb_backlog;
	if (seen->n == 16)
		return;
	seen->id[seen->n] = ss->session_id;
	seen->assigned[seen->n] = ss->assigned;
	snprintf(seen->customer[seen->n], 64, "%s", ss->customer);
	seen->n++;
}

static void session_events(struct store_producer *p, uint64_t *t)
{
	static const char *const customers[] = {"alice", "bob", "carol", "dave", "erin"};

	for (uint32_t i = 0; i < 5; i++) {
		const char *cu = customers[i];
		struct store_event ev = {.type = STORE_REC_OPENED,
		                         .ts_ms = 1700000000000ull,
		                         .session_id = 100 + i,
		                         .gw = 7,
		                         .ref = i,
		                         .customer = {cu, (uint32_t)strlen(cu)},
		                         .skill = {"billing", 7},
		                         .extra = {"shop", 4},
		                         .text = {"where is my parcel", 18}};

		append_ok(p, &ev, t);
		ev = (struct store_event){.type = STORE_REC_QUEUED,
		                          .ts_ms = 1700000000001ull,
		                          .session_id = 100 + i,
		                          .ref = 1700000000001ull,
		                          .skill = {"billing", 7}};
		append_ok(p, &ev, t);
	}
	for (uint32_t i = 0; i < 2; i++) {
		struct store_event ev = {.type = STORE_REC_ASSIGNED,
		                         .ts_ms = 1700000000002ull,
		                         .session_id = 100 + i,
		                         .gw = 9,
		                         .agent = {"agent-1", 7},
		                         .skill = {"billing", 7}};

		append_ok(p, &ev, t);
		ev = (struct store_event){.type = STORE_REC_MSG_IN,
		                          .ts_ms = 1700000000003ull,
		                          .session_id = 100 + i,
		                          .msg_id = 1,
		                          .text = {"hello?", 6}};
		append_ok(p, &ev, t);
		ev = (struct store_event){.type = STORE_REC_MSG_OUT,
		                          .ts_ms = 1700000000004ull,
		                          .session_id = 100 + i,
		                          .msg_id = 2,
		                          .agent = {"agent-1", 7},
		                          .text = {"hello, how can I help", 21}};
		append_ok(p, &ev, t);
	}
	{
		struct store_event ev = {.type = STORE_REC_ENDED,
		                         .ts_ms = 1700000000005ull,
		                         .session_id = 101,
		                         .code = 1,
		                         .value = 1,
		                         .customer = {"bob", 3},
		                         .skill = {"billing", 7},
		                         .agent = {"agent-1", 7},
		                         .ref = 1700000000000ull,
		                         .text = {"parcel found", 12}};

		append_ok(p, &ev, t);
	}
}

static void assert_sessions(const struct sess_seen *seen)
{
	static const char *const want[] = {"alice", NULL, "carol", "dave", "erin"};
	uint32_t found = 0;

	assert_int_equal(seen->n, 4);
	for (uint32_t i = 0; i < seen->n; i++) {
		uint64_t k = seen->id[i] - 100;

		assert_true(seen->id[i] >= 100 && seen->id[i] < 105 && seen->id[i] != 101);
		assert_string_equal(seen->customer[i], want[k]);
		assert_int_equal(seen->assigned[i], k == 0);
		found |= 1u << k;
	}
	assert_int_equal(found, 0x1d);
}

static void checkpoint_retention(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct store_recovery rec;
	struct sess_seen before = {0}, after = {0};
	struct store_producer *p;
	struct store_stats st;
	struct store *s;
	uint64_t t = 0;

	(void)state;
	c.segment_bytes = 64u << 10;
	c.checkpoint_bytes = 1;
	c.retention_ms = 0;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	session_events(p, &t);
	/* Filler (messages of a session the log never opened) across several segments. */
	for (uint32_t i = 0; i < 2000; i++) {
		struct store_event ev = msg_event(0, i);

		ev.session_id = 999;
		append_ok(p, &ev, &t);
	}
	assert_true(wait_for(durable_reached, p, t));
	assert_int_equal(store_close(s), 0);

	/* The same sessions from the whole log (a reference) ... */
	s = store_open(&c, &rec);
	assert_non_null(s);
	store_state_sessions(store_recovered(s), collect_session, &before);
	assert_sessions(&before);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	/* ... then more filler: rotations start with checkpoints, old segments go. */
	for (uint32_t i = 0; i < 2000; i++) {
		struct store_event ev = msg_event(0, i);

		ev.session_id = 999;
		append_ok(p, &ev, &t);
	}
	assert_true(wait_for(durable_reached, p, t));
	assert_int_equal(store_close(s), 0);
	/* The stats are gone with the store: look at the directory instead. */
	assert_false(segment_exists(dir, 1));

	s = store_open(&c, &rec);
	assert_non_null(s);
	assert_true(rec.from_checkpoint);
	store_stats_get(s, &st);
	store_state_sessions(store_recovered(s), collect_session, &after);
	assert_sessions(&after);
	assert_true(store_state_max_session(store_recovered(s)) >= 104);
	assert_int_equal(store_close(s), 0);
	remove_dir(dir);
}

/* Where live records fell relative to the checkpoints, from a scan. */
struct ckpt_mix {
	bool in_ckpt;
	uint32_t checkpoints, live_inside, records;
};

static int mix_fn(void *ctx, const struct store_event *ev)
{
	struct ckpt_mix *m = ctx;

	m->records++;
	if (ev->type == STORE_REC_CKPT_BEGIN) {
		m->in_ckpt = true;
	} else if (ev->type == STORE_REC_CKPT_END) {
		m->in_ckpt = false;
		m->checkpoints++;
	} else if (m->in_ckpt && ev->type == STORE_REC_MSG_IN && !(ev->flags & STORE_EF_CKPT)) {
		m->live_inside++;
	}
	return 0;
}

/*
 * A checkpoint large enough to take many batches does not stop the
 * appenders: their records go into the log between its batches, and
 * recovery from it gives back the history it holds and every record.
 */
static void checkpoint_keeps_taking(void **state)
{
	enum { CUSTOMERS = 1000, FILLER = 40000 };
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct store_past past[STORE_HISTORY_DEPTH];
	struct store_recovery rec;
	struct ckpt_mix mix = {0};
	struct store_producer *p;
	struct store *s;
	char notes[200], cust[16];
	uint64_t t = 0;

	(void)state;
	c.segment_bytes = 1u << 20;
	c.batch_bytes = 64u << 10;
	c.checkpoint_bytes = 1;
	memset(notes, 'n', sizeof(notes));
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	/* A history of 3 consultations for each customer: checkpoints of about 1 MB. */
	for (uint32_t i = 0; i < 3 * CUSTOMERS; i++) {
		int n = snprintf(cust, sizeof(cust), "c%u", i % CUSTOMERS);
		struct store_event ev = {.type = STORE_REC_ENDED,
		                         .session_id = i + 1,
		                         .customer = {cust, (uint32_t)n},
		                         .skill = {"presale", 7},
		                         .text = {notes, sizeof(notes)}};

		append_ok(p, &ev, &t);
	}
	for (uint32_t i = 0; i < FILLER; i++) {
		struct store_event ev = msg_event(0, i);

		ev.session_id = 999999;
		append_ok(p, &ev, &t);
	}
	assert_true(wait_for(durable_reached, p, t));
	assert_int_equal(store_close(s), 0);
	assert_int_equal(store_scan(dir, NULL, mix_fn, &mix), 0);
	printf("%u checkpoints, %u appended records written inside them\n", mix.checkpoints,
	       mix.live_inside);
	assert_true(mix.checkpoints >= 2);
	assert_true(mix.live_inside > 0);

	s = store_open(&c, &rec);
	assert_non_null(s);
	assert_true(rec.from_checkpoint);
	assert_int_equal(rec.customers, CUSTOMERS);
	assert_int_equal(store_history_get(store_state_history(store_recovered(s)),
	                                   (struct store_str){"c7", 2}, past),
	                 3);
	assert_int_equal(past[0].session_id, 2 * CUSTOMERS + 8); /* newest first */
	assert_int_equal(store_close(s), 0);
	remove_dir(dir);
}

/* The counters of checkpoints and deleted segments, seen while the store runs. */
static void checkpoint_counters(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_INTERVAL);
	struct store_producer *p;
	struct store_stats st;
	struct store *s;
	uint64_t t = 0;

	(void)state;
	c.segment_bytes = 64u << 10;
	c.checkpoint_bytes = 1;
	c.retention_ms = 0;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	session_events(p, &t);
	for (uint32_t i = 0; i < 3000; i++) {
		struct store_event ev = msg_event(0, i);

		ev.session_id = 999;
		append_ok(p, &ev, &t);
	}
	assert_true(wait_for(durable_reached, p, t));
	usleep(50000);
	store_stats_get(s, &st);
	assert_true(st.checkpoints >= 1);
	assert_true(st.segments_deleted >= 1);
	assert_int_equal(count_segments(dir), st.segments_created - st.segments_deleted);
	assert_int_equal(store_close(s), 0);
	remove_dir(dir);
}

/* ---- encryption at rest ----------------------------------------------------------------- */

static bool file_contains(const char *path, const char *needle);

static bool dir_contains(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool found = false;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL && !found) {
		char path[512];

		if (strlen(de->d_name) != 24)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		found = file_contains(path, needle);
	}
	closedir(d);
	return found;
}

static bool erased_counted(const void *s, uint64_t n)
{
	struct store_stats st;

	store_stats_get(s, &st);
	return st.erased >= n;
}

/* An ERASE forces a checkpoint at the next rotation, then the older segments are scrubbed. */
static void erasure(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct store_producer *p;
	struct store *s;
	uint64_t t = 0;
	struct store_event ev;

	(void)state;
	c.segment_bytes = 64u << 10;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	ev = (struct store_event){.type = STORE_REC_OPENED,
	                          .ts_ms = 1700000000000ull,
	                          .session_id = 200,
	                          .customer = {"mallory", 7},
	                          .skill = {"billing", 7},
	                          .text = {"mallory-secret-question", 23}};
	append_ok(p, &ev, &t);
	ev = (struct store_event){.type = STORE_REC_MSG_IN,
	                          .ts_ms = 1700000000001ull,
	                          .session_id = 200,
	                          .msg_id = 1,
	                          .text = {"mallory-secret-message", 22}};
	append_ok(p, &ev, &t);
	ev = (struct store_event){.type = STORE_REC_ENDED,
	                          .ts_ms = 1700000000002ull,
	                          .session_id = 200,
	                          .customer = {"mallory", 7},
	                          .skill = {"billing", 7},
	                          .ref = 1700000000000ull,
	                          .text = {"mallory-secret-notes", 20},
	                          .extra = {"mallory-secret-question", 23}};
	append_ok(p, &ev, &t);
	assert_true(wait_for(durable_reached, p, t));
	assert_true(dir_contains(dir, "mallory-secret"));
	ev = (struct store_event){
	        .type = STORE_REC_ERASE, .ts_ms = 1700000000003ull, .customer = {"mallory", 7}};
	append_ok(p, &ev, &t);
	for (uint32_t i = 0; i < 1000; i++) {
		ev = msg_event(0, i);
		ev.session_id = 999;
		append_ok(p, &ev, &t);
	}
	assert_true(wait_for(durable_reached, p, t));
	assert_true(wait_for(erased_counted, s, 1));
	assert_int_equal(store_close(s), 0);
	assert_false(dir_contains(dir, "mallory-secret"));
	remove_dir(dir);
}

struct msgs_seen {
	uint32_t n;
	char text[4][32];
	bool from_agent[4];
};

static void collect_msg(void *ctx, const struct store_msg *m)
{
	struct msgs_seen *ms = ctx;

	if (ms->n == 4)
		return;
	snprintf(ms->text[ms->n], 32, "%.*s", (int)m->text.len, m->text.ptr);
	ms->from_agent[ms->n] = m->from_agent;
	ms->n++;
}

/* A past session's messages read back from a sealed log while the store runs. */
static void transcript(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct msgs_seen ms = {0};
	struct store_producer *p;
	struct store_event ev;
	struct store_stats st;
	struct store *s;
	uint8_t key[32];
	uint64_t t = 0;

	(void)state;
	memset(key, 0x5a, sizeof(key));
	c.key = key;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	ev = (struct store_event){.type = STORE_REC_OPENED,
	                          .session_id = 300,
	                          .customer = {"zoe", 3},
	                          .skill = {"billing", 7}};
	append_ok(p, &ev, &t);
	ev = (struct store_event){.type = STORE_REC_MSG_IN,
	                          .session_id = 300,
	                          .msg_id = 1,
	                          .text = {"is it shipped?", 14}};
	append_ok(p, &ev, &t);
	ev = (struct store_event){.type = STORE_REC_MSG_OUT,
	                          .session_id = 300,
	                          .msg_id = 2,
	                          .agent = {"agent-2", 7},
	                          .text = {"yes, today", 10}};
	append_ok(p, &ev, &t);
	ev = (struct store_event){.type = STORE_REC_ENDED,
	                          .session_id = 300,
	                          .customer = {"zoe", 3},
	                          .skill = {"billing", 7}};
	append_ok(p, &ev, &t);
	assert_true(wait_for(durable_reached, p, t));
	/* The OPENED record is the log's first: LSN 1. */
	assert_int_equal(store_transcript(s, 300, 1, 0, collect_msg, &ms), 2);
	assert_int_equal(ms.n, 2);
	assert_string_equal(ms.text[0], "is it shipped?");
	assert_false(ms.from_agent[0]);
	assert_string_equal(ms.text[1], "yes, today");
	assert_true(ms.from_agent[1]);
	assert_int_equal(store_transcript(s, 301, 1, 0, collect_msg, &ms), -ENOENT);
	store_stats_get(s, &st);
	assert_int_equal(st.transcripts, 1);
	assert_int_equal(store_close(s), 0);
	remove_dir(dir);
}

static bool file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	size_t nl = strlen(needle), len;
	bool found = false;
	char *buf;
	long sz;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)sz + 1);
	assert_non_null(buf);
	len = fread(buf, 1, (size_t)sz, f);
	fclose(f);
	for (size_t i = 0; i + nl <= len && !found; i++)
		found = memcmp(buf + i, needle, nl) == 0;
	free(buf);
	return found;
}

static void encrypted(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	uint8_t key[32], other[32];
	struct store_producer *p;
	struct scanned *sc;
	struct dirent *de;
	struct store *s;
	uint32_t files = 0;
	uint64_t t = 0;
	DIR *d;

	(void)state;
	for (int i = 0; i < 32; i++) {
		key[i] = (uint8_t)(i * 7 + 1);
		other[i] = (uint8_t)(i * 7 + 2);
	}
	c.key = key;
	c.segment_bytes = 64u << 10;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_start(s), 0);
	p = store_producer(s, 0);
	for (uint32_t i = 0; i < 1000; i++) {
		struct store_event ev = msg_event(0, i);

		append_ok(p, &ev, &t);
	}
	assert_int_equal(store_close(s), 0);

	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[512];

		if (strlen(de->d_name) != 24)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		assert_false(file_contains(path, "of producer"));
		files++;
	}
	closedir(d);
	assert_true(files >= 2);

	/* With the key: all of it. */
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_close(s), 0);
	sc = scan(dir, key);
	assert_int_equal(sc->n, 1000);
	assert_msgs(sc, 1000);
	free(sc);

	/* With another key: refused, and the log is left as it was. */
	c.key = other;
	errno = 0;
	assert_null(store_open(&c, NULL));
	assert_int_equal(errno, EBADMSG);
	c.key = key;
	s = store_open(&c, NULL);
	assert_non_null(s);
	assert_int_equal(store_close(s), 0);
	sc = scan(dir, key);
	assert_int_equal(sc->n, 1000);
	free(sc);
	remove_dir(dir);
}

/* One writer per data directory: a second store on it is refused while the first is open. */
static void one_writer_per_dir(void **state)
{
	char *dir = make_dir();
	struct store_conf c = base_conf(dir, STORE_POLICY_SYNC);
	struct store *a, *b;

	(void)state;
	a = store_open(&c, NULL);
	assert_non_null(a);
	errno = 0;
	b = store_open(&c, NULL);
	assert_null(b);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(store_close(a), 0);
	b = store_open(&c, NULL);
	assert_non_null(b);
	assert_int_equal(store_close(b), 0);
	remove_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(bad_configuration),
	        cmocka_unit_test(one_writer_per_dir),
	        cmocka_unit_test(durable_sync),
	        cmocka_unit_test(durable_interval),
	        cmocka_unit_test(durable_none),
	        cmocka_unit_test(group_commit),
	        cmocka_unit_test(commit_delay),
	        cmocka_unit_test(rotation_buffered),
	        cmocka_unit_test(checkpoint_keeps_taking),
	        cmocka_unit_test(rotation_and_reopen),
	        cmocka_unit_test(reopen_continues),
	        cmocka_unit_test(failed_write),
	        cmocka_unit_test(short_write),
	        cmocka_unit_test(failed_sync),
	        cmocka_unit_test(checkpoint_retention),
	        cmocka_unit_test(checkpoint_counters),
	        cmocka_unit_test(erasure),
	        cmocka_unit_test(encrypted),
	        cmocka_unit_test(transcript),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
