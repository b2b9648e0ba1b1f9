/* SPDX-License-Identifier: MIT */
/*
 * bench_store: the session store's durable append rate and acknowledgement
 * latency, side by side with the alternatives, in one run on one disk.
 *
 *  (a) surge's store (policy SYNC: acknowledged after fdatasync, group
 *      commit), one producer thread, 200-byte records (the text of a MSG_IN
 *      event; the record on disk is larger, see record_disk_bytes):
 *      (i)   max: append as fast as the ring takes them, for a few seconds;
 *            durable records/s, fdatasyncs and records per fdatasync;
 *      (ii)  open loop: 100,000 records/s on a fixed schedule; ack latency
 *            from each record's scheduled time (so a stall is not hidden) to
 *            the moment store_durable, busy-polled by the producer, covers it;
 *      (iii) closed loop: C clients (default 50), each with one record
 *            outstanding, sending its next when the previous is durable;
 *            once with the default configuration and once, on a fresh
 *            store, with a commit delay (--commit-delay, default 200 us:
 *            store_conf.commit_delay_us).
 *  (b) the baseline: write() + fdatasync() per record on a plain file, one
 *      thread, and C threads each doing the same on one shared file.
 *  (c) Redis (redis-server, appendonly yes, appendfsync always, same
 *      directory) driven by redis-benchmark: SET with 200-byte values, C
 *      connections, no pipelining.
 *  (d) recovery: store_open on the log (a) wrote (no checkpoint in it, so
 *      every record is replayed), once with its pages dropped from the page
 *      cache (cold: as after a reboot) and once warm (as after a process
 *      restart); records/s from struct store_recovery.
 *
 * Usage: bench_store [--dir DIR (/var/tmp)] [--clients C (50)] [--quick]
 *                    [--commit-delay US (200)] [--json FILE]
 * The default run takes about a minute and a half, --quick about 20 s. Every
 * file is created in a fresh directory under DIR and removed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "store.h"
#include "store_pvt.h"

#define RECORD_BYTES 200u
#define OPEN_RATE    100000u
/*
 * The open loop's producer sends what is due in bursts this far apart (at
 * OPEN_RATE: 50 records), as a worker sends what one receive burst brought;
 * ack latency counts from each record's append, and again from its scheduled
 * time (the wait for its burst included).
 */
#define OPEN_PACE_NS 500000u
#define REDIS_SERVER "/usr/bin/redis-server"
#define REDIS_BENCH  "redis-benchmark"

/* Targets (issue 4). */
#define TARGET_MAX_RATE   1000000.0
#define TARGET_P99_NS     2000000u
#define TARGET_VS_REDIS   5.0
#define TARGET_RECOVERY_S 2000000.0

struct durations {
	double max_s, open_s, closed_s, fsync_s, redis_s;
	double pair_s; /* each round of the alternated commit-delay / Redis pair */
};

static const struct durations g_full = {6.0, 5.0, 6.0, 4.0, 5.0, 4.0};
static const struct durations g_quick = {2.0, 2.0, 2.0, 1.0, 2.0, 1.0};

/*
 * Redis's own rate varies 1.7x from one minute to the next on this disk:
 * the commit-delay closed loop and Redis run PAIR_ROUNDS times, alternated,
 * and the round with the median ratio is the one reported.
 */
#define PAIR_ROUNDS 3u

struct lat {
	uint64_t records;
	double seconds;
	double rate; /* records/s */
	uint64_t p50, p99, p999, max;
	double mean;
};

static struct {
	/* (a) */
	struct lat max;
	uint64_t max_syncs, max_batches, max_bytes, max_batch_records;
	struct lat open;       /* from each record's append */
	struct lat open_sched; /* from its scheduled time: the wait for its burst too */
	double open_offered;
	uint64_t open_syncs;
	uint64_t open_freezes, open_frozen_ns; /* the VM stopped (freeze watch) */
	bool open_freeze_rt;                   /* the watch ran SCHED_FIFO */
	struct lat closed, closed_cd;          /* cd: with the commit delay */
	uint64_t closed_syncs, closed_cd_syncs;
	/* (b) */
	struct lat fsync1, fsyncc;
	/* (c) */
	bool redis;
	char redis_why[160];
	double redis_rps, redis_p50_ms, redis_p99_ms, redis_avg_ms, redis_max_ms;
	uint64_t redis_requests;
	/* (d) */
	struct store_recovery cold, warm;
	uint64_t log_bytes;
} R;

static uint32_t g_clients = 50;
static bool g_timeline; /* --timeline: the open loop's worst latency per 50 ms */

/* --phases: which measurements run. */
enum {
	PH_MAX = 1,
	PH_OPEN = 2,
	PH_CLOSED = 4,
	PH_RECOVERY = 8,
	PH_FSYNC = 16,
	PH_REDIS = 32,
	PH_ALL = 63
};
static unsigned g_phases = PH_ALL;
static uint32_t g_disk_bytes; /* a record's bytes on disk */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void lat_from(struct lat *l, const struct bench_hist *h, uint64_t records, double seconds)
{
	l->records = records;
	l->seconds = seconds;
	l->rate = seconds > 0 ? (double)records / seconds : 0;
	l->p50 = bench_hist_percentile(h, 50.0);
	l->p99 = bench_hist_percentile(h, 99.0);
	l->p999 = bench_hist_percentile(h, 99.9);
	l->max = bench_hist_max(h);
	l->mean = bench_hist_mean(h);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- (a) surge's store ------------------------------------------------------------ */

static char g_text[RECORD_BYTES];
static uint32_t g_commit_delay_us = 200;

static void make_event(struct store_event *ev, uint64_t k)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = STORE_REC_MSG_IN;
	ev->session_id = 1;
	ev->msg_id = k;
	ev->ts_ms = k;
	ev->text = (struct store_str){g_text, RECORD_BYTES};
}

static struct store_conf bench_conf(const char *dir)
{
	struct store_conf c = {
	        .dir = dir,
	        .policy = STORE_POLICY_SYNC,
	        .nb_producers = 1,
	        /* No checkpoint: recovery (d) replays every record (a) wrote. */
	        .checkpoint_bytes = 1ull << 40,
	        .retention_ms = 7ull * 24 * 3600 * 1000,
	        .history_customers = 1024,
	};
	return c;
}

/* Wait until ticket is durable; false after 60 s or when the store failed. */
static bool wait_durable(struct store *s, struct store_producer *p, uint64_t ticket)
{
	uint64_t limit = now_ns() + 60000000000ull;

	while (store_durable(p) < ticket) {
		if (!store_healthy(s) || now_ns() > limit)
			return false;
		cpu_relax();
	}
	return true;
}

/* (i) as fast as it goes. Returns the last ticket, 0 on failure. */
static uint64_t run_max(struct store *s, struct store_producer *p, uint64_t tk, double secs)
{
	struct store_stats a, b;
	struct store_event ev;
	uint64_t t0, t1, end, n = 0, k = tk;
	int ret;

	store_stats_get(s, &a);
	t0 = now_ns();
	end = t0 + (uint64_t)(secs * 1e9);
	for (uint32_t i = 0;; i++) {
		if ((i & 63) == 0 && now_ns() >= end)
			break;
		make_event(&ev, k + 1);
		ret = store_append(p, &ev, &k);
		if (ret == 0) {
			n++;
		} else if (ret == -ENOBUFS) {
			k = tk + n;
			cpu_relax();
		} else {
			fprintf(stderr, "store_append: %s\n", strerror(-ret));
			return 0;
		}
	}
	k = tk + n;
	if (!wait_durable(s, p, k))
		return 0;
	t1 = now_ns();
	store_stats_get(s, &b);
	R.max.records = n;
	R.max.seconds = (double)(t1 - t0) / 1e9;
	R.max.rate = (double)n / R.max.seconds;
	R.max_syncs = b.syncs - a.syncs;
	R.max_batches = b.batches - a.batches;
	R.max_bytes = b.written_bytes - a.written_bytes;
	R.max_batch_records = b.max_batch;
	return k;
}

/* (ii) a fixed schedule; latency from the scheduled time. */
static uint64_t run_open(struct store *s, struct store_producer *p, uint64_t tk, double secs,
                         struct bench_hist *h)
{
	uint64_t total = (uint64_t)(OPEN_RATE * secs), sent = 0, done = 0;
	uint64_t interval = 1000000000u / OPEN_RATE, t0, limit, last_send = 0;
	struct store_stats a, b;
	struct store_event ev;
	uint64_t ticket;

	struct bench_hist *hs = malloc(sizeof(*hs));
	uint64_t *burst_ns = calloc(total, sizeof(*burst_ns)); /* each record's append time */
	struct bench_freeze fw;
	bool watching;

	if (!hs || !burst_ns) {
		free(hs);
		free(burst_ns);
		return 0;
	}
	watching = bench_freeze_start(&fw, 0, UINT64_MAX) == 0;
	store_stats_get(s, &a);
	bench_hist_init(h);
	bench_hist_init(hs);
	t0 = now_ns() + 1000000u;
	limit = t0 + (uint64_t)(secs * 1e9) + 30000000000ull;
	uint64_t win_end = t0 + 50000000u, win_max = 0, next_burst = t0;

	while (done < total) {
		uint64_t d = store_durable(p) - tk, now = now_ns();

		for (; done < d && done < sent; done++) {
			uint64_t l = now - burst_ns[done];

			bench_hist_record(h, l);
			bench_hist_record(hs, now - (t0 + done * interval));
			win_max = l > win_max ? l : win_max;
		}
		if (g_timeline && now >= win_end) {
			store_stats_get(s, &b);
			printf("   t=%5.0f ms worst ack %8.0f us, %" PRIu64 " syncs, %" PRIu64
			       " segments, %" PRIu64 " behind\n",
			       (double)(now - t0) / 1e6, (double)win_max / 1e3, b.syncs - a.syncs,
			       b.segments_created, sent - done);
			win_max = 0;
			win_end += 50000000u;
		}
		if (now >= next_burst)
			next_burst = now + OPEN_PACE_NS;
		else
			goto wait;
		while (sent < total && t0 + sent * interval <= now) {
			make_event(&ev, tk + sent + 1);
			int ret = store_append(p, &ev, &ticket);

			if (ret == -ENOBUFS)
				break;
			if (ret) {
				fprintf(stderr, "store_append: %s\n", strerror(-ret));
				done = 0;
				goto out;
			}
			burst_ns[sent++] = now;
			last_send = now;
		}
		if (now > limit || !store_healthy(s)) {
			fprintf(stderr, "open loop: stalled (%" PRIu64 " of %" PRIu64 " durable)\n",
			        done, total);
			done = 0;
			goto out;
		}
	wait:
		/* Asleep until the oldest record is durable or the next burst is due. */
		if (done < total)
			store_wait_durable(p, tk + done + 1, next_burst);
	}
	store_stats_get(s, &b);
	lat_from(&R.open, h, total, (double)(last_send - t0) / 1e9);
	lat_from(&R.open_sched, hs, total, (double)(last_send - t0) / 1e9);
	R.open_offered = OPEN_RATE;
	R.open_syncs = b.syncs - a.syncs;
out:
	if (watching) {
		bench_freeze_stop(&fw);
		R.open_freezes = fw.count;
		R.open_frozen_ns = fw.stopped_ns;
		R.open_freeze_rt = fw.realtime;
	}
	free(hs);
	free(burst_ns);
	return done == total ? tk + total : 0;
}

struct outstanding {
	uint64_t ticket, sent;
};

/* (iii) C clients, one record outstanding each. */
static uint64_t run_closed(struct store *s, struct store_producer *p, uint64_t tk, double secs,
                           struct bench_hist *h, struct lat *out, uint64_t *syncs)
{
	struct outstanding *q = calloc(g_clients, sizeof(*q));
	uint32_t head = 0, n = 0;
	uint64_t t0, end, done = 0, k = tk, limit;
	struct store_stats a, b;
	struct store_event ev;
	bool stopping = false;

	if (!q)
		return 0;
	store_stats_get(s, &a);
	bench_hist_init(h);
	t0 = now_ns();
	end = t0 + (uint64_t)(secs * 1e9);
	limit = end + 30000000000ull;
	/* Tickets are durable in order: the client waiting longest is at the head. */
	for (uint32_t c = 0; c < g_clients; c++) {
		make_event(&ev, k + 1);
		while (store_append(p, &ev, &k) == -ENOBUFS)
			cpu_relax();
		q[(head + n++) % g_clients] = (struct outstanding){k, t0};
	}
	while (n) {
		/* Like a client on a socket: asleep until the longest-waiting one's answer. */
		store_wait_durable(p, q[head].ticket, now_ns() + 1000000u);
		uint64_t d = store_durable(p), now = now_ns();

		stopping = stopping || now >= end;
		while (n && q[head].ticket <= d) {
			if (!stopping) {
				bench_hist_record(h, now - q[head].sent);
				done++;
			}
			head = (head + 1) % g_clients;
			n--;
			if (stopping)
				continue;
			make_event(&ev, k + 1);
			int ret;

			while ((ret = store_append(p, &ev, &k)) == -ENOBUFS)
				cpu_relax();
			if (ret) {
				fprintf(stderr, "store_append: %s\n", strerror(-ret));
				free(q);
				return 0;
			}
			q[(head + n++) % g_clients] = (struct outstanding){k, now};
		}
		if (now > limit || !store_healthy(s)) {
			fprintf(stderr, "closed loop: stalled\n");
			free(q);
			return 0;
		}
	}
	store_stats_get(s, &b);
	lat_from(out, h, done, (double)(end - t0) / 1e9);
	*syncs = b.syncs - a.syncs;
	free(q);
	return k;
}

/* Let the disk finish what the previous phase left (the next segment's zero fill). */
static void settle(void)
{
	struct timespec ts = {.tv_sec = 1};

	nanosleep(&ts, NULL);
}

/* A store opened on conf and started, or NULL (said on stderr). */
static struct store *open_started(const struct store_conf *conf)
{
	struct store *s = store_open(conf, NULL);
	int ret;

	if (!s) {
		fprintf(stderr, "store_open %s: %s\n", conf->dir, strerror(errno));
		return NULL;
	}
	ret = store_start(s);
	if (ret) {
		fprintf(stderr, "store_start: %s\n", strerror(-ret));
		store_close(s);
		return NULL;
	}
	return s;
}

static int run_surge(const char *dir, const struct durations *d, struct bench_hist *h)
{
	struct store_conf conf = bench_conf(dir);
	struct store_producer *p;
	struct store *s;
	bool ok = false;
	uint64_t tk;
	int ret;

	s = open_started(&conf);
	if (!s)
		return -1;
	p = store_producer(s, 0);
	tk = 0;
	if (g_phases & PH_MAX) {
		printf("== surge store: max durable rate, 1 producer, %.0f s\n", d->max_s);
		tk = run_max(s, p, tk, d->max_s);
		if (!tk)
			goto out_close;
		printf("   %.0f records/s (%" PRIu64 " in %.2f s), %" PRIu64 " fdatasyncs, %.0f "
		       "records per sync, %.0f MB/s\n",
		       R.max.rate, R.max.records, R.max.seconds, R.max_syncs,
		       R.max_syncs ? (double)R.max.records / (double)R.max_syncs : 0,
		       (double)R.max_bytes / R.max.seconds / 1e6);
	}
	if (g_phases & PH_OPEN) {
		printf("== surge store: open loop at %u records/s, %.0f s\n", OPEN_RATE, d->open_s);
		settle();
		tk = run_open(s, p, tk, d->open_s, h);
		if (!tk)
			goto out_close;
		printf("   ack latency p50 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us "
		       "(%" PRIu64 " fdatasyncs)\n",
		       R.open.p50 / 1e3, R.open.p99 / 1e3, R.open.p999 / 1e3, R.open.max / 1e3,
		       R.open_syncs);
		printf("   from the scheduled time (with the wait for the burst): p50 %.0f us, "
		       "p99 %.0f us\n",
		       R.open_sched.p50 / 1e3, R.open_sched.p99 / 1e3);
		printf("   a 1 ms sleeper%s woke > 5 ms late %" PRIu64 " times, %.0f ms in all "
		       "(%.1f%% of the run)\n",
		       R.open_freeze_rt ? " (SCHED_FIFO)" : "", R.open_freezes,
		       (double)R.open_frozen_ns / 1e6,
		       100.0 * (double)R.open_frozen_ns / 1e9 / d->open_s);
	}
	if (g_phases & PH_CLOSED) {
		printf("== surge store: closed loop, %u clients, %.0f s\n", g_clients, d->closed_s);
		settle();
		tk = run_closed(s, p, tk, d->closed_s, h, &R.closed, &R.closed_syncs);
		if (!tk)
			goto out_close;
		printf("   %.0f records/s, latency p50 %.0f us, p99 %.0f us (%" PRIu64
		       " fdatasyncs)\n",
		       R.closed.rate, R.closed.p50 / 1e3, R.closed.p99 / 1e3, R.closed_syncs);
	}
	ok = true;
out_close:
	ret = store_close(s);
	if (ret)
		fprintf(stderr, "store_close: %s\n", strerror(-ret));
	return ok && !ret ? 0 : -1;
}

/* (iii) again on a fresh store with a commit delay, for secs. */
static int run_closed_delay(const char *dir, double secs, struct bench_hist *h)
{
	struct store_conf conf = bench_conf(dir);
	struct store *s;
	uint64_t tk;
	int ret;

	conf.commit_delay_us = g_commit_delay_us;
	s = open_started(&conf);
	if (!s)
		return -1;
	printf("== surge store: closed loop, %u clients, commit delay %u us, %.0f s\n", g_clients,
	       g_commit_delay_us, secs);
	settle();
	tk = run_closed(s, store_producer(s, 0), 0, secs, h, &R.closed_cd, &R.closed_cd_syncs);
	if (tk)
		printf("   %.0f records/s, latency p50 %.0f us, p99 %.0f us (%" PRIu64
		       " fdatasyncs)\n",
		       R.closed_cd.rate, R.closed_cd.p50 / 1e3, R.closed_cd.p99 / 1e3,
		       R.closed_cd_syncs);
	ret = store_close(s);
	if (ret)
		fprintf(stderr, "store_close: %s\n", strerror(-ret));
	return tk && !ret ? 0 : -1;
}

/* ---- (d) recovery ------------------------------------------------------------------ */

/* Drop the log's pages from the page cache (a cold start); the log's size. */
static uint64_t drop_cache(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t bytes = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		struct stat st;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0)
			bytes += (uint64_t)st.st_size;
		/* Written pages must be clean before they can be dropped. */
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	closedir(d);
	return bytes;
}

static int run_recovery(const char *dir)
{
	struct store_conf conf = bench_conf(dir);
	struct store *s;

	R.log_bytes = drop_cache(dir);
	for (int warm = 0; warm < 2; warm++) {
		struct store_recovery *rec = warm ? &R.warm : &R.cold;

		s = store_open(&conf, rec);
		if (!s) {
			fprintf(stderr, "store_open (recovery): %s\n", strerror(errno));
			return -1;
		}
		store_close(s);
		printf("== recovery (%s page cache): %" PRIu64 " records, %.0f MB in %.2f s: %.0f "
		       "records/s\n",
		       warm ? "warm" : "cold", rec->records, (double)rec->bytes / 1e6,
		       (double)rec->elapsed_ns / 1e9,
		       rec->elapsed_ns ? (double)rec->records * 1e9 / (double)rec->elapsed_ns : 0);
	}
	return 0;
}

/* ---- (b) write + fdatasync per record -------------------------------------------- */

struct fs_thread {
	pthread_t th;
	int fd;
	uint64_t end;
	uint64_t n;
	int err;
	struct bench_hist h;
};

static void *fs_main(void *arg)
{
	struct fs_thread *t = arg;
	char buf[4096];

	memset(buf, 'x', sizeof(buf));
	for (;;) {
		uint64_t a = now_ns(), b;

		if (a >= t->end)
			break;
		if (write(t->fd, buf, g_disk_bytes) != (ssize_t)g_disk_bytes || fdatasync(t->fd)) {
			t->err = errno ? errno : EIO;
			break;
		}
		b = now_ns();
		bench_hist_record(&t->h, b - a);
		t->n++;
	}
	return NULL;
}

static int run_fsync(const char *dir, uint32_t nthreads, double secs, struct lat *out,
                     struct bench_hist *h)
{
	struct fs_thread *t = calloc(nthreads, sizeof(*t));
	char path[4200];
	uint64_t t0, n = 0;
	int fd, err = 0;

	if (!t)
		return -1;
	snprintf(path, sizeof(path), "%s/fsync-%u.dat", dir, nthreads);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		free(t);
		return -1;
	}
	t0 = now_ns();
	for (uint32_t i = 0; i < nthreads; i++) {
		t[i].fd = fd;
		t[i].end = t0 + (uint64_t)(secs * 1e9);
		bench_hist_init(&t[i].h);
		if (pthread_create(&t[i].th, NULL, fs_main, &t[i])) {
			t[i].end = 0;
			nthreads = i;
			err = EAGAIN;
			break;
		}
	}
	bench_hist_init(h);
	for (uint32_t i = 0; i < nthreads; i++) {
		pthread_join(t[i].th, NULL);
		bench_hist_merge(h, &t[i].h);
		n += t[i].n;
		if (t[i].err)
			err = t[i].err;
	}
	lat_from(out, h, n, (double)(now_ns() - t0) / 1e9);
	close(fd);
	unlink(path);
	free(t);
	if (err)
		fprintf(stderr, "write + fdatasync: %s\n", strerror(err));
	printf("   %u thread%s: %.0f records/s, latency p50 %.0f us, p99 %.0f us\n", nthreads,
	       nthreads > 1 ? "s" : "", out->rate, out->p50 / 1e3, out->p99 / 1e3);
	return err ? -1 : 0;
}

/* ---- (c) Redis ------------------------------------------------------------------------ */

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool redis_ping(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[16] = {0};
	bool ok = false;

	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, "PING\r\n", 6) == 6 &&
	    read(fd, buf, sizeof(buf) - 1) > 0)
		ok = !strncmp(buf, "+PONG", 5);
	close(fd);
	return ok;
}

/* One redis-benchmark run; its CSV line "SET",rps,avg,min,p50,p95,p99,max. */
static int redis_bench(int port, uint64_t n)
{
	char cmd[512], line[512];
	FILE *f;
	int ok = -1;

	snprintf(cmd, sizeof(cmd),
	         REDIS_BENCH " -h 127.0.0.1 -p %d -t set -d %u -c %u -n %" PRIu64
	                     " -P 1 -r 100000 --csv 2>&1",
	         port, RECORD_BYTES, g_clients, n);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		double v[7];

		if (sscanf(line, "\"SET\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\"",
		           &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]) == 7) {
			R.redis_rps = v[0];
			R.redis_avg_ms = v[1];
			R.redis_p50_ms = v[3];
			R.redis_p99_ms = v[5];
			R.redis_max_ms = v[6];
			R.redis_requests = n;
			ok = 0;
		}
	}
	if (pclose(f) != 0)
		ok = -1;
	return ok;
}

static void run_redis(const char *dir, double secs)
{
	char rdir[4200], logf[4300], portstr[16];
	int port, status;
	pid_t pid;

	if (access(REDIS_SERVER, X_OK) != 0) {
		snprintf(R.redis_why, sizeof(R.redis_why), "%s not installed", REDIS_SERVER);
		return;
	}
	port = free_port();
	snprintf(rdir, sizeof(rdir), "%s/redis", dir);
	snprintf(logf, sizeof(logf), "%s/redis.log", rdir);
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (port < 0 || mkdir(rdir, 0700) < 0) {
		snprintf(R.redis_why, sizeof(R.redis_why), "no port or directory: %s",
		         strerror(errno));
		return;
	}
	pid = fork();
	if (pid == 0) {
		execl(REDIS_SERVER, REDIS_SERVER, "--port", portstr, "--bind", "127.0.0.1",
		      "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", rdir,
		      "--daemonize", "no", "--logfile", logf, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		snprintf(R.redis_why, sizeof(R.redis_why), "fork: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < 100 && !redis_ping(port); i++)
		usleep(50000);
	if (!redis_ping(port)) {
		snprintf(R.redis_why, sizeof(R.redis_why), "redis-server did not answer on port %d",
		         port);
	} else if (redis_bench(port, 5000) != 0) {
		snprintf(R.redis_why, sizeof(R.redis_why), "%s failed", REDIS_BENCH);
	} else {
		/* Size the measured run to last about secs. */
		uint64_t n = (uint64_t)(R.redis_rps * secs);

		if (n < 10000)
			n = 10000;
		if (n > 5000000)
			n = 5000000;
		if (redis_bench(port, n) != 0)
			snprintf(R.redis_why, sizeof(R.redis_why), "%s failed", REDIS_BENCH);
		else
			R.redis = true;
	}
	kill(pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			pid = 0;
			break;
		}
		usleep(50000);
	}
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	rm_rf(rdir);
	if (R.redis)
		printf("   %u connections: %.0f requests/s, latency p50 %.0f us, p99 %.0f us "
		       "(%" PRIu64 " SETs)\n",
		       g_clients, R.redis_rps, R.redis_p50_ms * 1e3, R.redis_p99_ms * 1e3,
		       R.redis_requests);
	else
		printf("   skipped: %s\n", R.redis_why);
}

/* ---- the alternated pair: commit-delay closed loop and Redis ----------------------- */

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

struct pair_round {
	struct lat cd;
	uint64_t cd_syncs;
	double rps, p50_ms, p99_ms, avg_ms, max_ms;
	uint64_t requests;
	bool ok_cd, ok_redis;
};

static struct pair_round g_pairs[PAIR_ROUNDS];

/* What a round is ranked by: the ratio, or the one rate measured. */
static double pair_key(const struct pair_round *p)
{
	if (p->ok_cd && p->ok_redis)
		return ratio(p->cd.rate, p->rps);
	return p->ok_cd ? p->cd.rate : p->rps;
}

static int run_pairs(const char *dir, const struct durations *d, struct bench_hist *h)
{
	unsigned order[PAIR_ROUNDS], n = 0;
	char sdir[4200];
	int rc = 0;

	if (!(g_phases & (PH_CLOSED | PH_REDIS)))
		return 0;
	for (unsigned r = 0; r < PAIR_ROUNDS; r++) {
		struct pair_round *p = &g_pairs[r];

		if (g_phases & PH_CLOSED) {
			snprintf(sdir, sizeof(sdir), "%s/store-delay-%u", dir, r);
			p->ok_cd = run_closed_delay(sdir, d->pair_s, h) == 0;
			rm_rf(sdir);
			if (!p->ok_cd)
				rc = 1;
			p->cd = R.closed_cd;
			p->cd_syncs = R.closed_cd_syncs;
		}
		if (g_phases & PH_REDIS) {
			printf("== Redis, appendonly yes, appendfsync always, SET of %u bytes "
			       "(round %u of %u)\n",
			       RECORD_BYTES, r + 1, PAIR_ROUNDS);
			settle();
			R.redis = false;
			run_redis(dir, d->redis_s);
			p->ok_redis = R.redis;
			p->rps = R.redis_rps;
			p->p50_ms = R.redis_p50_ms;
			p->p99_ms = R.redis_p99_ms;
			p->avg_ms = R.redis_avg_ms;
			p->max_ms = R.redis_max_ms;
			p->requests = R.redis_requests;
		}
		if ((p->ok_cd || !(g_phases & PH_CLOSED)) &&
		    (p->ok_redis || !(g_phases & PH_REDIS)))
			order[n++] = r;
	}
	/* The round of the median ratio is the one the report and the targets use. */
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i;
		     j > 0 && pair_key(&g_pairs[order[j - 1]]) > pair_key(&g_pairs[order[j]]);
		     j--) {
			unsigned t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	R.redis = false;
	if (n) {
		const struct pair_round *m = &g_pairs[order[n / 2]];

		R.closed_cd = m->cd;
		R.closed_cd_syncs = m->cd_syncs;
		R.redis = m->ok_redis;
		R.redis_rps = m->rps;
		R.redis_p50_ms = m->p50_ms;
		R.redis_p99_ms = m->p99_ms;
		R.redis_avg_ms = m->avg_ms;
		R.redis_max_ms = m->max_ms;
		R.redis_requests = m->requests;
	}
	return rc;
}

/* ---- report ------------------------------------------------------------------------ */

static double rec_rate(const struct store_recovery *r)
{
	return r->elapsed_ns ? (double)r->records * 1e9 / (double)r->elapsed_ns : 0;
}

static void json_lat(FILE *f, const char *name, const struct lat *l, bool comma)
{
	fprintf(f,
	        "  \"%s\": {\"records\": %" PRIu64 ", \"seconds\": %.3f, \"records_per_s\": %.0f, "
	        "\"p50_ns\": %" PRIu64 ", \"p99_ns\": %" PRIu64 ", \"p999_ns\": %" PRIu64
	        ", \"max_ns\": %" PRIu64 ", \"mean_ns\": %.0f}%s\n",
	        name, l->records, l->seconds, l->rate, l->p50, l->p99, l->p999, l->max, l->mean,
	        comma ? "," : "");
}

static void json_rec(FILE *f, const char *name, const struct store_recovery *r, bool comma)
{
	fprintf(f,
	        "  \"%s\": {\"records\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"segments\": %u, "
	        "\"seconds\": %.3f, \"records_per_s\": %.0f}%s\n",
	        name, r->records, r->bytes, r->segments, (double)r->elapsed_ns / 1e9, rec_rate(r),
	        comma ? "," : "");
}

static int write_json(const char *path, const char *dir, bool quick)
{
	FILE *f = fopen(path, "w");
	double vs_redis = R.redis ? ratio(R.closed.rate, R.redis_rps) : 0;
	double vs_redis_cd = R.redis ? ratio(R.closed_cd.rate, R.redis_rps) : 0;

	if (!f) {
		perror(path);
		return -1;
	}
	fprintf(f, "{\n  \"dir\": \"%s\", \"quick\": %s, \"clients\": %u,\n", dir,
	        quick ? "true" : "false", g_clients);
	fprintf(f,
	        "  \"record_bytes\": %u, \"record_disk_bytes\": %u, \"open_rate\": %u, "
	        "\"open_burst_us\": %u,\n",
	        RECORD_BYTES, g_disk_bytes, OPEN_RATE, OPEN_PACE_NS / 1000u);
	json_lat(f, "surge_max", &R.max, true);
	fprintf(f,
	        "  \"surge_max_syncs\": %" PRIu64 ", \"surge_max_records_per_sync\": %.1f, "
	        "\"surge_max_batches\": %" PRIu64 ", \"surge_max_largest_batch\": %" PRIu64
	        ", \"surge_max_mb_per_s\": %.1f,\n",
	        R.max_syncs, ratio((double)R.max.records, (double)R.max_syncs), R.max_batches,
	        R.max_batch_records,
	        R.max.seconds > 0 ? (double)R.max_bytes / R.max.seconds / 1e6 : 0);
	json_lat(f, "surge_open", &R.open, true);
	json_lat(f, "surge_open_sched", &R.open_sched, true);
	fprintf(f, "  \"surge_open_syncs\": %" PRIu64 ",\n", R.open_syncs);
	fprintf(f,
	        "  \"surge_open_freezes\": %" PRIu64 ", \"surge_open_frozen_ms\": %.1f, "
	        "\"surge_open_freeze_watch_realtime\": %s,\n",
	        R.open_freezes, (double)R.open_frozen_ns / 1e6,
	        R.open_freeze_rt ? "true" : "false");
	json_lat(f, "surge_closed", &R.closed, true);
	fprintf(f, "  \"surge_closed_syncs\": %" PRIu64 ",\n", R.closed_syncs);
	json_lat(f, "surge_closed_delay", &R.closed_cd, true);
	fprintf(f, "  \"surge_closed_delay_syncs\": %" PRIu64 ", \"commit_delay_us\": %u,\n",
	        R.closed_cd_syncs, g_commit_delay_us);
	json_lat(f, "fsync_1", &R.fsync1, true);
	json_lat(f, "fsync_c", &R.fsyncc, true);
	if (R.redis)
		fprintf(f,
		        "  \"redis\": {\"requests\": %" PRIu64 ", \"requests_per_s\": %.0f, "
		        "\"p50_ns\": %.0f, \"p99_ns\": %.0f, \"mean_ns\": %.0f, \"max_ns\": "
		        "%.0f},\n",
		        R.redis_requests, R.redis_rps, R.redis_p50_ms * 1e6, R.redis_p99_ms * 1e6,
		        R.redis_avg_ms * 1e6, R.redis_max_ms * 1e6);
	else
		fprintf(f, "  \"redis\": null, \"redis_skipped\": \"%s\",\n", R.redis_why);
	fprintf(f, "  \"pair_rounds\": [");
	for (unsigned r = 0; r < PAIR_ROUNDS; r++) {
		const struct pair_round *p = &g_pairs[r];

		fprintf(f,
		        "%s{\"surge_delay_per_s\": %.0f, \"redis_per_s\": %.0f, \"ratio\": %.2f}",
		        r ? ", " : "", p->ok_cd ? p->cd.rate : 0, p->ok_redis ? p->rps : 0,
		        p->ok_cd && p->ok_redis ? ratio(p->cd.rate, p->rps) : 0);
	}
	fprintf(f, "],\n");
	json_rec(f, "recovery_cold", &R.cold, true);
	json_rec(f, "recovery_warm", &R.warm, true);
	fprintf(f,
	        "  \"ratios\": {\"surge_vs_redis\": %.2f, \"surge_delay_vs_redis\": %.2f, "
	        "\"surge_max_vs_fsync_per_record\": %.1f, "
	        "\"surge_closed_vs_fsync_c_threads\": %.2f, \"surge_max_vs_redis\": %.1f},\n",
	        vs_redis, vs_redis_cd, ratio(R.max.rate, R.fsync1.rate),
	        ratio(R.closed.rate, R.fsyncc.rate), R.redis ? ratio(R.max.rate, R.redis_rps) : 0);
	fprintf(f,
	        "  \"targets\": {\"max_rate\": %s, \"open_p99\": %s, \"vs_redis\": %s, "
	        "\"vs_redis_delay\": %s, \"recovery_cold\": %s, \"recovery_warm\": %s}\n}\n",
	        R.max.rate >= TARGET_MAX_RATE ? "true" : "false",
	        R.open.records && R.open.p99 < TARGET_P99_NS ? "true" : "false",
	        vs_redis >= TARGET_VS_REDIS ? "true" : "false",
	        vs_redis_cd >= TARGET_VS_REDIS ? "true" : "false",
	        rec_rate(&R.cold) >= TARGET_RECOVERY_S ? "true" : "false",
	        rec_rate(&R.warm) >= TARGET_RECOVERY_S ? "true" : "false");
	return fclose(f) ? -1 : 0;
}

static void summary(void)
{
	double vs_redis = R.redis ? ratio(R.closed.rate, R.redis_rps) : 0;
	double vs_redis_cd = R.redis ? ratio(R.closed_cd.rate, R.redis_rps) : 0;

	printf("\nfigure                                         measured       target\n");
	if (g_phases & PH_MAX)
		printf("durable 200-byte records/s, 1 producer         %-14.0f >= 1000000 %s\n",
		       R.max.rate, R.max.rate >= TARGET_MAX_RATE ? "met" : "NOT met");
	if (g_phases & PH_OPEN)
		printf("ack p99 at %u records/s (us)               %-14.0f < 2000 %s\n", OPEN_RATE,
		       R.open.p99 / 1e3,
		       R.open.records && R.open.p99 < TARGET_P99_NS ? "met" : "NOT met");
	if ((g_phases & PH_CLOSED) && R.redis) {
		printf("surge / Redis always, %u clients (x)           %-14.2f >= 5 %s\n",
		       g_clients, vs_redis, vs_redis >= TARGET_VS_REDIS ? "met" : "NOT met");
		printf("  ... with commit delay %u us (x)             %-14.2f >= 5 %s\n",
		       g_commit_delay_us, vs_redis_cd,
		       vs_redis_cd >= TARGET_VS_REDIS ? "met" : "NOT met");
		printf("      (the median of %u alternated rounds:", PAIR_ROUNDS);
		for (unsigned r = 0; r < PAIR_ROUNDS; r++)
			if (g_pairs[r].ok_cd && g_pairs[r].ok_redis)
				printf(" %.2f", ratio(g_pairs[r].cd.rate, g_pairs[r].rps));
		printf(")\n");
	} else if (g_phases & PH_CLOSED)
		printf("surge / Redis: not measured (%s)\n", R.redis_why);
	if (g_phases & PH_RECOVERY) {
		printf("recovery records/s, cold cache                 %-14.0f >= 2000000 %s\n",
		       rec_rate(&R.cold),
		       rec_rate(&R.cold) >= TARGET_RECOVERY_S ? "met" : "NOT met");
		printf("recovery records/s, warm cache                 %-14.0f >= 2000000 %s\n",
		       rec_rate(&R.warm),
		       rec_rate(&R.warm) >= TARGET_RECOVERY_S ? "met" : "NOT met");
	}
	if ((g_phases & PH_MAX) && (g_phases & PH_FSYNC))
		printf("surge max / write+fdatasync per record (x)     %.1f\n",
		       ratio(R.max.rate, R.fsync1.rate));
	if ((g_phases & PH_CLOSED) && (g_phases & PH_FSYNC))
		printf("surge %u clients / %u threads write+fdatasync (x) %.2f\n", g_clients,
		       g_clients, ratio(R.closed.rate, R.fsyncc.rate));
}

int main(int argc, char **argv)
{
	const char *base = "/var/tmp", *json = NULL;
	const struct durations *d = &g_full;
	struct bench_hist *h;
	char dir[4096], sdir[4200];
	struct store_event ev;
	int rc = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			base = argv[++i];
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			json = argv[++i];
		} else if (!strcmp(argv[i], "--clients") && i + 1 < argc) {
			g_clients = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--commit-delay") && i + 1 < argc) {
			g_commit_delay_us = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--quick")) {
			d = &g_quick;
		} else if (!strcmp(argv[i], "--timeline")) {
			g_timeline = true;
		} else if (!strcmp(argv[i], "--phases") && i + 1 < argc) {
			static const char *const names[] = {"max",      "open",  "closed",
			                                    "recovery", "fsync", "redis"};
			char *list = argv[++i], *tok, *save = NULL;

			g_phases = 0;
			for (tok = strtok_r(list, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				unsigned k = 0;

				while (k < 6 && strcmp(tok, names[k]))
					k++;
				if (k == 6) {
					fprintf(stderr, "--phases: unknown %s\n", tok);
					return 2;
				}
				g_phases |= 1u << k;
			}
		} else {
			fprintf(stderr,
			        "usage: %s [--dir DIR (/var/tmp)] [--clients C (50)] [--quick] "
			        "[--json FILE]\n"
			        "       [--phases max,open,closed,recovery,fsync,redis (all)] "
			        "[--timeline]\n",
			        argv[0]);
			return 2;
		}
	}
	if (g_clients < 1 || g_clients > 1000) {
		fprintf(stderr, "--clients: 1..1000\n");
		return 2;
	}
	for (uint32_t i = 0; i < RECORD_BYTES; i++)
		g_text[i] = (char)('a' + i % 26);
	make_event(&ev, 1);
	g_disk_bytes = (uint32_t)store_rec_span((uint32_t)store_event_size(&ev));
	snprintf(dir, sizeof(dir), "%s/surge-bench-store-XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror(dir);
		return 2;
	}
	h = malloc(sizeof(*h));
	if (!h) {
		rm_rf(dir);
		return 2;
	}
	printf("bench_store: %u-byte records (%u bytes on disk), %u clients, in %s%s\n",
	       RECORD_BYTES, g_disk_bytes, g_clients, dir, d == &g_quick ? " (quick)" : "");
	snprintf(sdir, sizeof(sdir), "%s/store", dir);
	if ((g_phases & (PH_MAX | PH_OPEN | PH_CLOSED)) && run_surge(sdir, d, h) != 0)
		rc = 1;
	if ((g_phases & PH_RECOVERY) && run_recovery(sdir) != 0)
		rc = 1;
	rm_rf(sdir);
	if (g_phases & PH_FSYNC) {
		printf("== baseline: write + fdatasync per record (%u bytes), %.0f s each\n",
		       g_disk_bytes, d->fsync_s);
		settle();
		if (run_fsync(dir, 1, d->fsync_s, &R.fsync1, h) ||
		    run_fsync(dir, g_clients, d->fsync_s, &R.fsyncc, h))
			rc = 1;
	}
	if (run_pairs(dir, d, h) != 0)
		rc = 1;
	if (!(g_phases & PH_REDIS))
		snprintf(R.redis_why, sizeof(R.redis_why), "not in --phases");
	summary();
	if (json && write_json(json, dir, d == &g_quick) != 0)
		rc = 1;
	rm_rf(dir);
	free(h);
	return rc;
}
