/* SPDX-License-Identifier: MIT */
/*
 * The writer: producer rings, the store thread (io_uring, group commit,
 * durability policies), segments, checkpoints, retention, erasure.
 *
 * Producer rings. One single-producer / single-consumer byte ring per
 * worker. An entry is {u32 len, u16 type, u16 flags} followed by the event
 * encoded by store_event_encode, padded to 8 bytes; an entry that does not
 * fit before the end of the ring is preceded by a wrap marker (flags
 * RING_WRAP) that sends the reader back to offset 0. head (bytes published)
 * and tail (bytes consumed) count up forever and live on separate cache
 * lines, like the durable ticket the store thread publishes back. The
 * acquire/release pairs are named R1/A2 (head), R2/A1 (tail), R3/A3 (durable
 * ticket) and F1/F2 (the sleeping flag) at each end; W1/W2 (a producer
 * waiting for its durable ticket, store_wait_durable) work like F1/F2 the
 * other way round: the waiter sets `waiting`, fences and looks at `durable`
 * once more before it sleeps on the futex word `woken`; publish stores
 * `durable`, fences and bumps `woken` (one futex wake) only when a waiter is
 * there, so a producer that polls costs the store thread nothing.
 *
 * Wake-up. The store thread only sleeps when no batch is being written
 * (otherwise it waits for the completion, polling the rings every
 * INFLIGHT_POLL_NS to overlap copying with the I/O). Before sleeping it
 * sets `sleeping`, issues a full fence (F1) and looks at the rings once
 * more; a producer publishes its head, issues a full fence (F2) and reads
 * `sleeping`: one of the two sees the other's store, so no wake-up is lost.
 * The producer that swaps `sleeping` from 1 to 0 writes the eventfd (one
 * system call per sleep); an IORING_OP_READ on that eventfd is always
 * armed in the ring, so the same io_uring wait sees appends, completions
 * and the policy's timer.
 *
 * io_uring user_data layout (64 bits):
 *   bits  0..7   operation: UD_WAKE (eventfd read), UD_WRITE (a batch),
 *                UD_SYNC (the fdatasync linked to a batch written through
 *                the page cache), UD_TICK (the periodic fdatasync of the
 *                INTERVAL policy)
 *   bits  8..15  batch index (0 or 1) for UD_WRITE / UD_SYNC
 *   bits 16..63  low 48 bits of the batch's sequence number (a check)
 *
 * One batch write is in flight at a time: batch n + 1 is submitted only
 * when batch n completed, so acknowledging a batch acknowledges everything
 * before it. While it is in flight, records gather in the other buffer
 * (group commit).
 *
 * Segments are zero-filled ahead of need by a second thread ("surge-prep")
 * as PREP_NAME, then given their header and renamed at rotation
 * (docs/store.md says why zero-filled and not fallocated).
 *
 * Direct I/O. Segments are opened with O_DIRECT where the filesystem allows
 * it (where open refuses it, the same writes go through the page cache): the
 * records then reach the disk without a copy into the page cache, by the
 * store thread's own submission rather than an io_uring worker's, and the
 * zero-fill costs no CPU. Every batch write therefore starts and ends on an
 * IO_ALIGN boundary: a batch that begins inside a block already partly
 * written starts with a copy of that block's written bytes (tail_blk) and
 * writes the whole block again, and its end is padded with zeros, which is
 * what the zero-filled segment holds there anyway. Writing the same bytes
 * again over acknowledged records is safe even if the power fails during
 * the write: every sector of the block then holds either its old or its new
 * content, and both begin with the same acknowledged bytes.
 *
 * A batch that must be durable is, on a direct segment, one write with
 * RWF_DSYNC: the kernel runs the fdatasync of that range itself when the
 * data is written (on a disk with a volatile cache, a cache flush, which
 * covers every write completed before it), in the write's completion
 * work, instead of a linked fdatasync making another trip through the ring
 * and an io_uring worker. Measured side by side (docs/store.md): 12-27%
 * more records/s in the closed loop, 21-24% at the maximum, open-loop ack
 * p50 7-26% lower.
 * Through the page cache the range sync would miss pages earlier batches
 * left dirty (INTERVAL, NONE), so there the linked fdatasync of the whole
 * file stays.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>
#include <linux/futex.h>

#include "store_pvt.h"

#define unlikely(x) __builtin_expect(!!(x), 0)

#define CACHE_LINE 64
#define IO_ALIGN   4096u

/* Defaults and limits of struct store_conf (store.h and docs/store.md). */
#define DEF_INTERVAL_MS       10u
#define MAX_INTERVAL_MS       60000u
#define DEF_SEGMENT_BYTES     (64ull << 20)
#define MIN_SEGMENT_BYTES     (64ull << 10)
#define MAX_SEGMENT_BYTES     (1ull << 40)
#define MAX_PRODUCERS         64u
#define DEF_RING_BYTES        (16u << 20)
#define MIN_RING_BYTES        (64u << 10)
#define MAX_RING_BYTES        (1u << 30)
#define DEF_BATCH_BYTES       (4u << 20)
#define MIN_BATCH_BYTES       (64u << 10)
#define MAX_BATCH_BYTES       (256u << 20)
#define DEF_CHECKPOINT_BYTES  (256ull << 20)
#define MAX_COMMIT_DELAY_US   10000u
#define DEF_HISTORY_CUSTOMERS 1000000u
#define BACKLOG_MAX           64u

#define RING_HDR  8u      /* {u32 len, u16 type, u16 flags} */
#define RING_WRAP 0x8000u /* entry flag: skip to the start of the ring */

#define QUEUE_DEPTH         16u
#define INFLIGHT_POLL_NS    200000ull    /* look at the rings while a big batch is written */
#define INFLIGHT_POLL_SHARE 16u          /* big: 1/16 of batch_bytes or more */
#define IDLE_MAX_NS         100000000ull /* longest sleep without a reason to wake */
#define PREP_NAME           "prep.tmp"   /* the next segment, zero-filled ahead of need */
#define QUICK_NAME          "quick.tmp"  /* a segment wanted before prep.tmp was ready */
#define ZERO_CHUNK          (256u << 10)
#define DEFER_MAX           (256u << 20) /* records taken during a checkpoint, applied after it */
#define ZERO_PAUSE_MAX_NS   20000000ull  /* 64 MiB in about 5 s when the log is idle */

enum ud_op { UD_WAKE = 1, UD_WRITE = 2, UD_SYNC = 3, UD_TICK = 4 };

static inline uint64_t ud_make(enum ud_op op, unsigned idx, uint64_t seq)
{
	return (uint64_t)op | (uint64_t)(idx & 0xffu) << 8 | (seq & 0xffffffffffffull) << 16;
}

struct store_producer {
	/* Written by the appending thread only. */
	alignas(CACHE_LINE) _Atomic uint64_t head; /* bytes published (R1) */
	uint64_t tail_seen;                        /* the consumer's tail as last loaded (A1) */
	uint64_t tickets;                          /* appends made */
	_Atomic uint64_t ring_full;                /* appends refused: ring full */
	uint8_t *ring;                             /* read-only after open */
	uint64_t mask;
	struct store *s;
	/* Written by the store thread only. */
	alignas(CACHE_LINE) _Atomic uint64_t tail; /* bytes consumed (R2) */
	uint64_t taken;                            /* tickets taken into batches */
	uint32_t idx;
	/* Written by the store thread, read by the producer. */
	alignas(CACHE_LINE) _Atomic uint64_t durable; /* highest durable ticket (R3) */
	_Atomic uint32_t woken;                       /* futex word: bumped to wake a waiter */
	/* Written by the producer, read by the store thread. */
	alignas(CACHE_LINE) _Atomic uint32_t waiting; /* in store_wait_durable (W2) */
};

struct batch {
	uint8_t *buf;        /* IO_ALIGN-aligned, batch_bytes */
	uint32_t len;        /* bytes filled, lead included */
	uint32_t lead;       /* bytes at buf[0] rewriting the written part of a block */
	uint32_t wlen;       /* bytes written: len rounded up to IO_ALIGN */
	uint32_t nrec;       /* records */
	uint64_t seq;        /* batch number, in user_data */
	uint64_t off;        /* file offset of buf[0] */
	int fd;              /* the segment it goes to */
	uint64_t last_lsn;   /* of its last record */
	uint64_t *tickets;   /* per producer: last ticket in this batch, 0 none */
	uint64_t ckpt_begin; /* nonzero: it ends the checkpoint that begins there */
	bool closed;         /* takes no more records */
	bool seg_end;        /* the last batch of its segment */
	bool sync;           /* must be durable when it completes */
	bool sync_sent;      /* ... and its sync was submitted (RWF_DSYNC or linked) */
	bool direct;         /* its segment is O_DIRECT: the sync is the write's RWF_DSYNC */
	bool inflight;
	int pending; /* completions still expected */
	int wres;    /* write result */
	int sres;    /* sync result */
};

struct seg_info {
	uint64_t first_lsn;
	uint64_t created_ms;
};

/* Counters: written by the store thread (relaxed), read by anyone. */
struct store_counters {
	_Atomic uint64_t appended, written_bytes, writes, syncs, durable_lsn, batches, max_batch,
	        segments_created, segments_deleted, checkpoints, erased, transcripts, write_errors,
	        sync_errors;
};

struct policy_ops;

/* Padded on purpose: what the producers and the store thread write sits on lines of its own. */
struct store { /* NOLINT(clang-analyzer-optin.performance.Padding) */
	/* Configuration, read-only after store_open. */
	char *dir;
	int dirfd;
	enum store_policy policy;
	const struct policy_ops *ops;
	uint64_t interval_ns;
	uint64_t commit_delay_ns;
	uint64_t segment_bytes;
	uint32_t nb_producers;
	uint32_t ring_bytes;
	uint32_t batch_bytes;
	uint32_t fill_limit; /* batch_bytes, or less while a checkpoint drains the rings */
	uint64_t retention_ms;
	uint64_t checkpoint_bytes;
	bool keyed;
	uint8_t key[32];
	const struct store_fault *fault;
	void (*log)(void *ctx, int level, const char *msg);
	void *log_ctx;

	struct store_producer *prod;
	struct store_state *state;
	struct store_aead *aead;
	int efd;          /* eventfd: producers wake the store thread */
	uint64_t efd_buf; /* the armed eventfd read lands here */

	alignas(CACHE_LINE) _Atomic int sleeping; /* F1/F2 */
	alignas(CACHE_LINE) _Atomic bool stop;
	_Atomic bool ro;   /* read-only: a write or sync failed */
	_Atomic int error; /* positive errno that made it read-only */
	/* Apart from what every append reads (ro): written at every drain. */
	alignas(CACHE_LINE) struct store_counters cnt;

	/* Owned by the store thread once started. */
	alignas(CACHE_LINE) pthread_t thread;
	bool started;
	bool ring_ok;
	struct io_uring ring;
	bool wake_armed;
	struct batch b[2];
	unsigned fill; /* index of the batch being filled */
	uint64_t batch_seq;
	uint64_t next_lsn;
	uint32_t rr; /* producer to drain first */
	uint8_t *scratch;

	int cur_fd;      /* current segment, -1 none */
	bool cur_direct; /* ... opened with O_DIRECT */
	uint64_t seg_first_lsn;
	uint64_t seg_off;
	uint8_t *tail_blk; /* the current segment's last partly written block, as written */
	uint8_t *hdr_blk;  /* IO_ALIGN-aligned: a segment header being written */
	uint32_t nonce_prefix;
	bool rotate_pending;
	bool seg_synced; /* the current segment's last batch carried a sync */

	uint32_t retired_nrec; /* records of the last batch retired (commit delay) */
	uint64_t retired_ns;   /* ... and when */

	uint64_t written_lsn; /* every record up to it written */
	uint64_t synced_lsn;  /* ... and synced */
	bool tick_inflight;
	int tick_fd;
	uint64_t tick_lsn;
	uint64_t unsynced_since; /* INTERVAL: when written_lsn first passed the last sync */

	uint64_t bytes_since_ckpt;
	uint64_t last_ckpt_bytes;
	uint64_t durable_ckpt_lsn; /* CKPT_BEGIN of the last durable checkpoint */
	uint64_t ckpt_lsn;         /* CKPT_BEGIN of the one being written */
	uint64_t ckpt_bytes;
	bool ckpt_running;
	bool ckpt_wanted; /* the next record needs a new segment, with a checkpoint */
	/* Records taken from the rings while a checkpoint is written: in the log
	 * already, applied to the state once the checkpoint is complete. Entries
	 * {u64 lsn, u32 len, u16 type, u16 0, payload}, each 8-aligned. */
	struct store_held defer;
	bool defer_full;    /* DEFER_MAX reached: the rings wait for the checkpoint */
	bool ckpt_unsynced; /* a checkpoint is written but not yet durable */
	bool ckpt_done;     /* a checkpoint became durable: scrub and retention to run */
	bool state_broken;

	struct seg_info *segs;
	uint32_t nb_segs, cap_segs;

	struct store_str *erased; /* customers erased, strings owned */
	uint32_t nb_erased, cap_erased;
	uint32_t nb_scrub; /* the first nb_scrub precede the checkpoint being written */

	/* Scrubbing reads the whole retained log: on a thread of its own
	 * ("surge-scrub"), so that appends go on meanwhile. */
	pthread_t scrub_thread;
	bool scrub_running;           /* started and not yet reaped (store thread) */
	_Atomic bool scrub_finished;  /* set by the scrub thread when done */
	int scrub_result;             /* records scrubbed or a negative errno */
	struct store_str *scrub_list; /* erased[0..nb_scrub) as it was: the array may move */
	uint64_t scrub_below;

	/* Segment preparation thread (zero-fills the next file). */
	pthread_t prep_thread;
	bool prep_started;
	pthread_mutex_t prep_mu;
	pthread_cond_t prep_cv;
	bool prep_want;
	bool prep_stop;
	uint8_t *zero_buf; /* ZERO_CHUNK zeros, IO_ALIGN-aligned, for the zero-fill */
	int prep_fd;
	int prep_err;
	_Atomic bool prep_hurry;       /* a rotation waits for it: no more pauses */
	_Atomic uint64_t seg_used;     /* bytes of records in the current segment */
	_Atomic uint64_t seg_start_ns; /* when it was started */
};

/* ---- small helpers ------------------------------------------------------------ */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t align8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* Single writer (the store thread): a plain relaxed read-modify-write. */
static inline void cnt_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

static inline void cnt_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t cnt_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

__attribute__((format(printf, 3, 4))) static void slog(const struct store *s, int level,
                                                       const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above */
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s->log)
		s->log(s->log_ctx, level, msg);
	else if (level <= 1)
		fprintf(stderr, "surge store: %s\n", msg);
}

static bool is_ro(const struct store *s)
{
	return atomic_load_explicit(&s->ro, memory_order_relaxed);
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *abs)
{
	/* FUTEX_WAIT_BITSET: the timeout is an absolute CLOCK_MONOTONIC time. */
	return syscall(SYS_futex, (uint32_t *)word, op | FUTEX_PRIVATE_FLAG, val, abs, NULL,
	               FUTEX_BITSET_MATCH_ANY);
}

/* After W1 (a full fence following the stores the waiter waits for). */
static void wake_waiter(struct store_producer *p)
{
	if (!atomic_load_explicit(&p->waiting, memory_order_relaxed))
		return;
	atomic_fetch_add_explicit(&p->woken, 1, memory_order_relaxed);
	futex(&p->woken, FUTEX_WAKE_BITSET, INT32_MAX, NULL);
}

/* The first failure makes the store read-only for good; later ones are only counted. */
static void store_fail(struct store *s, int err, bool sync, const char *what)
{
	struct batch *b = &s->b[s->fill];

	if (err >= 0)
		err = -EIO;
	cnt_add(sync ? &s->cnt.sync_errors : &s->cnt.write_errors, 1);
	if (is_ro(s))
		return;
	atomic_store_explicit(&s->error, -err, memory_order_relaxed);
	atomic_store_explicit(&s->ro, true, memory_order_release);
	slog(s, 0,
	     "%s failed: %s; the store is read-only: nothing more is acknowledged until a restart",
	     what, strerror(-err));
	/* W1: pairs with W2 in store_wait_durable: it sees `ro` or we see `waiting`. */
	atomic_thread_fence(memory_order_seq_cst);
	for (uint32_t i = 0; i < s->nb_producers; i++)
		wake_waiter(&s->prod[i]);
	/* Nothing of the batch being filled will ever be written. */
	b->len = 0;
	b->nrec = 0;
	b->closed = true;
}

static void wake(struct store *s)
{
	/* Fails only when the counter is saturated: a wake-up is pending then. */
	if (eventfd_write(s->efd, 1) < 0)
		return;
}

/* ---- policies ----------------------------------------------------------------- */

static void publish(struct store *s, const struct batch *b)
{
	for (uint32_t i = 0; i < s->nb_producers; i++)
		if (b->tickets[i])
			/* R3: pairs with A3 in store_durable. */
			atomic_store_explicit(&s->prod[i].durable, b->tickets[i],
			                      memory_order_release);
	/* W1: pairs with W2 in store_wait_durable: it sees `durable` or we see `waiting`. */
	atomic_thread_fence(memory_order_seq_cst);
	for (uint32_t i = 0; i < s->nb_producers; i++)
		if (b->tickets[i])
			wake_waiter(&s->prod[i]);
	if (b->last_lsn > cnt_get(&s->cnt.durable_lsn))
		cnt_set(&s->cnt.durable_lsn, b->last_lsn);
}

struct policy_ops {
	const char *name;
	bool sync_each_batch; /* every batch write carries a linked fdatasync */
	/* Records were copied into the batch being filled (NONE acks here). */
	void (*copied)(struct store *s, struct batch *b);
	/* A batch's write (and linked sync) succeeded (SYNC and INTERVAL ack here). */
	void (*done)(struct store *s, struct batch *b);
	/* Periodic work; returns when it wants to run next (mono ns, UINT64_MAX never). */
	uint64_t (*tick)(struct store *s, uint64_t now_ns);
};

static void ack_now(struct store *s, struct batch *b)
{
	publish(s, b);
}

static void ack_none(struct store *s, struct batch *b)
{
	(void)s;
	(void)b;
}

static uint64_t tick_none(struct store *s, uint64_t now_ns)
{
	(void)s;
	(void)now_ns;
	return UINT64_MAX;
}

static struct io_uring_sqe *get_sqe(struct store *s);
static bool fault_sync(struct store *s, int *res);

/*
 * INTERVAL: an fdatasync of the current segment interval_ms after the first
 * write it has not covered yet; nothing (no timer) while everything is synced.
 */
static uint64_t tick_interval(struct store *s, uint64_t now_ns)
{
	uint64_t covered = s->tick_inflight ? s->tick_lsn : s->synced_lsn, deadline;
	struct io_uring_sqe *sqe;
	int res;

	if (is_ro(s) || s->cur_fd < 0 || s->written_lsn <= covered) {
		s->unsynced_since = 0;
		return UINT64_MAX;
	}
	if (!s->unsynced_since)
		s->unsynced_since = now_ns;
	/* Its completion wakes the thread; then the next one is scheduled. */
	if (s->tick_inflight)
		return UINT64_MAX;
	deadline = s->unsynced_since + s->interval_ns;
	if (now_ns < deadline)
		return deadline;
	if (fault_sync(s, &res)) {
		store_fail(s, res, true, "fdatasync");
		return UINT64_MAX;
	}
	sqe = get_sqe(s);
	if (!sqe) {
		store_fail(s, -EBUSY, true, "fdatasync submission");
		return UINT64_MAX;
	}
	io_uring_prep_fsync(sqe, s->cur_fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(sqe, ud_make(UD_TICK, 0, 0));
	s->tick_inflight = true;
	s->tick_fd = s->cur_fd;
	s->tick_lsn = s->written_lsn;
	s->unsynced_since = 0;
	return UINT64_MAX;
}

static const struct policy_ops policies[] = {
        [STORE_POLICY_SYNC] = {.name = "sync",
                               .sync_each_batch = true,
                               .copied = ack_none,
                               .done = ack_now,
                               .tick = tick_none},
        [STORE_POLICY_INTERVAL] = {.name = "interval",
                                   .sync_each_batch = false,
                                   .copied = ack_none,
                                   .done = ack_now,
                                   .tick = tick_interval},
        [STORE_POLICY_NONE] = {.name = "none",
                               .sync_each_batch = false,
                               .copied = ack_now,
                               .done = ack_none,
                               .tick = tick_none},
};

/* ---- producer side -------------------------------------------------------------- */

struct store_producer *store_producer(struct store *s, uint32_t idx)
{
	if (!s || idx >= s->nb_producers)
		return NULL;
	return &s->prod[idx];
}

static int event_check(const struct store_event *ev, size_t *size)
{
	const struct store_str *strs[] = {&ev->customer, &ev->skill, &ev->agent, &ev->text,
	                                  &ev->extra};

	/* Checkpoint records and scrubbed placeholders are the writer's own. */
	if (ev->type == STORE_REC_NONE || ev->type >= STORE_REC_MAX ||
	    ev->type == STORE_REC_CKPT_BEGIN || ev->type == STORE_REC_CKPT_END ||
	    ev->type == STORE_REC_HISTORY || ev->type == STORE_REC_SCRUBBED)
		return -EINVAL;
	for (unsigned i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (strs[i]->len > STORE_STR_MAX)
			return -EMSGSIZE;
		if (strs[i]->len && !strs[i]->ptr)
			return -EINVAL;
	}
	*size = store_event_size(ev);
	return *size > STORE_EVENT_MAX ? -EMSGSIZE : 0;
}

int store_append(struct store_producer *p, const struct store_event *ev, uint64_t *ticket)
{
	struct store *s;
	uint64_t head, off, to_end, need, total, size64;
	uint32_t hdr32;
	uint16_t hdr16[2];
	size_t size;
	int ret;

	if (!p || !ev)
		return -EINVAL;
	s = p->s;
	if (unlikely(is_ro(s)))
		return -EROFS;
	ret = event_check(ev, &size);
	if (ret)
		return ret;
	size64 = size;
	need = align8(RING_HDR + size64);
	head = atomic_load_explicit(&p->head, memory_order_relaxed);
	off = head & p->mask;
	to_end = (uint64_t)s->ring_bytes - off;
	total = need <= to_end ? need : to_end + need;
	if (head + total - p->tail_seen > s->ring_bytes) {
		/* A1: pairs with R2 in ring_take: the store thread is done with those bytes. */
		p->tail_seen = atomic_load_explicit(&p->tail, memory_order_acquire);
		if (head + total - p->tail_seen > s->ring_bytes) {
			atomic_store_explicit(
			        &p->ring_full,
			        atomic_load_explicit(&p->ring_full, memory_order_relaxed) + 1,
			        memory_order_relaxed);
			return -ENOBUFS;
		}
	}
	if (need > to_end) {
		hdr32 = 0;
		hdr16[0] = STORE_REC_NONE;
		hdr16[1] = RING_WRAP;
		memcpy(p->ring + off, &hdr32, 4);
		memcpy(p->ring + off + 4, hdr16, 4);
		head += to_end;
		off = 0;
	}
	hdr32 = (uint32_t)size;
	hdr16[0] = ev->type;
	hdr16[1] = 0;
	memcpy(p->ring + off, &hdr32, 4);
	memcpy(p->ring + off + 4, hdr16, 4);
	store_event_encode(ev, p->ring + off + RING_HDR);
	p->tickets++;
	if (ticket)
		*ticket = p->tickets;
	/* R1: pairs with A2 in ring_take: the entry's bytes are visible before the head. */
	atomic_store_explicit(&p->head, head + need, memory_order_release);
	/* F2: pairs with F1 in store_wait: we see `sleeping` or it sees our head. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&s->sleeping, memory_order_relaxed) &&
	    atomic_exchange_explicit(&s->sleeping, 0, memory_order_relaxed))
		wake(s);
	return 0;
}

uint64_t store_durable(const struct store_producer *p)
{
	if (!p)
		return 0;
	/* A3: pairs with R3 in publish. */
	return atomic_load_explicit(&p->durable, memory_order_acquire);
}

int store_wait_durable(struct store_producer *p, uint64_t ticket, uint64_t deadline_ns)
{
	struct timespec abs = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
	                       .tv_nsec = (long)(deadline_ns % 1000000000u)};
	int ret = 0;

	if (!p)
		return -EINVAL;
	for (;;) {
		if (store_durable(p) >= ticket)
			break;
		if (is_ro(p->s)) {
			ret = -EROFS;
			break;
		}
		uint32_t seen = atomic_load_explicit(&p->woken, memory_order_relaxed);

		atomic_store_explicit(&p->waiting, 1, memory_order_relaxed);
		/* W2: pairs with W1 in wake_waiter. */
		atomic_thread_fence(memory_order_seq_cst);
		if (store_durable(p) >= ticket || is_ro(p->s))
			continue;
		if (futex(&p->woken, FUTEX_WAIT_BITSET, seen, &abs) < 0 && errno == ETIMEDOUT) {
			ret = store_durable(p) >= ticket ? 0 : -ETIMEDOUT;
			break;
		}
	}
	atomic_store_explicit(&p->waiting, 0, memory_order_relaxed);
	return ret;
}

bool store_healthy(const struct store *s)
{
	return s && !is_ro(s);
}

void store_stats_get(const struct store *s, struct store_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (!s)
		return;
	out->appended = cnt_get(&s->cnt.appended);
	out->written_bytes = cnt_get(&s->cnt.written_bytes);
	out->writes = cnt_get(&s->cnt.writes);
	out->syncs = cnt_get(&s->cnt.syncs);
	out->durable_lsn = cnt_get(&s->cnt.durable_lsn);
	out->batches = cnt_get(&s->cnt.batches);
	out->max_batch = cnt_get(&s->cnt.max_batch);
	for (uint32_t i = 0; i < s->nb_producers; i++)
		out->ring_full += atomic_load_explicit(&s->prod[i].ring_full, memory_order_relaxed);
	out->segments_created = cnt_get(&s->cnt.segments_created);
	out->segments_deleted = cnt_get(&s->cnt.segments_deleted);
	out->checkpoints = cnt_get(&s->cnt.checkpoints);
	out->erased = cnt_get(&s->cnt.erased);
	out->transcripts = cnt_get(&s->cnt.transcripts);
	out->write_errors = cnt_get(&s->cnt.write_errors);
	out->sync_errors = cnt_get(&s->cnt.sync_errors);
	out->error = atomic_load_explicit(&s->error, memory_order_relaxed);
}

/* ---- io_uring plumbing ------------------------------------------------------------ */

static int submit_all(struct store *s);

static struct io_uring_sqe *get_sqe(struct store *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe && submit_all(s) == 0)
		sqe = io_uring_get_sqe(&s->ring);
	return sqe;
}

static void arm_wake(struct store *s)
{
	struct io_uring_sqe *sqe = get_sqe(s);

	/* Without it, store_wait falls back to short timeouts. */
	s->wake_armed = sqe != NULL;
	if (!sqe)
		return;
	io_uring_prep_read(sqe, s->efd, &s->efd_buf, sizeof(s->efd_buf), 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_WAKE, 0, 0));
}

static void reap(struct store *s);

/* Submit everything queued. 0, or a negative errno the ring cannot get past. */
static int submit_all(struct store *s)
{
	while (io_uring_sq_ready(&s->ring) > 0) {
		int ret = io_uring_submit(&s->ring);

		if (ret >= 0 || ret == -EINTR)
			continue;
		if (ret == -EAGAIN || ret == -EBUSY) {
			/* Out of kernel memory or completions not reaped: make room, retry. */
			reap(s);
			sched_yield();
			continue;
		}
		return ret;
	}
	return 0;
}

static void flush_sq(struct store *s)
{
	int ret = submit_all(s);

	if (ret < 0)
		store_fail(s, ret, false, "io_uring submission");
}

/* Wait for at least one completion or timeout_ns. */
static void wait_cqe(struct store *s, uint64_t timeout_ns)
{
	struct __kernel_timespec ts = {.tv_sec = (long long)(timeout_ns / 1000000000u),
	                               .tv_nsec = (long long)(timeout_ns % 1000000000u)};
	struct io_uring_cqe *cqe;
	int ret;

	flush_sq(s);
	ret = io_uring_wait_cqe_timeout(&s->ring, &cqe, &ts);
	/* -ETIME: timed out; -EINTR: a signal; both just return to the loop. */
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN)
		slog(s, 1, "io_uring wait: %s", strerror(-ret));
}

/* ---- segments ------------------------------------------------------------------------ */

static int seg_list_add(struct store *s, uint64_t first_lsn, uint64_t created_ms)
{
	uint32_t i;

	for (i = 0; i < s->nb_segs; i++)
		if (s->segs[i].first_lsn == first_lsn) {
			s->segs[i].created_ms = created_ms;
			return 0;
		}
	if (s->nb_segs == s->cap_segs) {
		uint32_t cap = s->cap_segs ? 2 * s->cap_segs : 64;
		struct seg_info *n = realloc(s->segs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->segs = n;
		s->cap_segs = cap;
	}
	for (i = s->nb_segs; i > 0 && s->segs[i - 1].first_lsn > first_lsn; i--)
		s->segs[i] = s->segs[i - 1];
	s->segs[i] = (struct seg_info){.first_lsn = first_lsn, .created_ms = created_ms};
	s->nb_segs++;
	return 0;
}

static bool seg_name_parse(const char *name, uint64_t *lsn)
{
	uint64_t v = 0;

	if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0)
		return false;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*lsn = v;
	return true;
}

/* The segments recovery left, for retention. Unreadable ones are left alone. */
static int seg_list_load(struct store *s)
{
	uint8_t *block;
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	block = malloc(STORE_SEG_HDR);
	if (!block)
		return -ENOMEM;
	fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		goto out_free_block;
	}
	while ((de = readdir(d)) != NULL) {
		struct store_seg_hdr h;
		uint64_t lsn;
		int sfd;
		ssize_t n;

		if (!seg_name_parse(de->d_name, &lsn))
			continue;
		sfd = openat(s->dirfd, de->d_name, O_RDONLY | O_CLOEXEC);
		if (sfd < 0)
			continue;
		n = pread(sfd, block, STORE_SEG_HDR, 0);
		close(sfd);
		if (n != (ssize_t)STORE_SEG_HDR || store_seg_hdr_decode(block, &h) < 0 ||
		    h.first_lsn != lsn)
			continue;
		ret = seg_list_add(s, lsn, h.created_ms);
		if (ret)
			break;
	}
	closedir(d);
out_free_block:
	free(block);
	return ret;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * How long the preparation thread pauses between chunks: the zero-fill is
 * spread over half the time the current segment will take to fill at the
 * rate it has been filling, so its writes delay the log's fdatasyncs as
 * little as possible (and not at all when the log is idle).
 */
static uint64_t prep_pause_ns(const struct store *s, uint64_t chunks_left)
{
	uint64_t used = atomic_load_explicit(&s->seg_used, memory_order_relaxed);
	uint64_t t0 = atomic_load_explicit(&s->seg_start_ns, memory_order_relaxed);
	uint64_t room = s->segment_bytes - STORE_SEG_HDR, now = mono_ns();
	double eta, pause;

	if (!chunks_left || used >= room)
		return 0;
	if (!used || !t0 || now <= t0)
		return ZERO_PAUSE_MAX_NS;
	eta = (double)(room - used) * (double)(now - t0) / (double)used;
	pause = eta / 2 / (double)chunks_left;
	return pause > ZERO_PAUSE_MAX_NS ? ZERO_PAUSE_MAX_NS : (uint64_t)pause;
}

/*
 * Zero-filled, not fallocated: on ext4 an fdatasync after writing into
 * unwritten (fallocated) extents also commits the extent conversion, which
 * measured 1.5-4x slower than over blocks already written (docs/store.md).
 * Written back a chunk at a time (sync_file_range: no journal commit per
 * chunk), paced by prep_pause_ns when paced, then one fdatasync.
 */
static int prep_file(struct store *s, int *out, bool paced)
{
	const int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
	uint64_t chunks = (s->segment_bytes + ZERO_CHUNK - 1) / ZERO_CHUNK, i = 0;
	bool direct = !(s->fault && s->fault->buffered);
	int fd, ret = 0;

	fd = direct ? openat(s->dirfd, PREP_NAME, flags | O_DIRECT, 0644) : -1;
	if (!direct || (fd < 0 && errno == EINVAL)) {
		direct = false;
		fd = openat(s->dirfd, PREP_NAME, flags, 0644);
	}
	if (fd < 0)
		return -errno;
	for (uint64_t off = 0; off < s->segment_bytes && !ret; off += ZERO_CHUNK, i++) {
		uint64_t n =
		        s->segment_bytes - off < ZERO_CHUNK ? s->segment_bytes - off : ZERO_CHUNK;

		ret = write_full(fd, s->zero_buf, (size_t)n, off);
		/* Through the page cache: written back a chunk at a time. */
		if (!ret && !direct &&
		    sync_file_range(fd, (off_t)off, (off_t)n,
		                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
		                            SYNC_FILE_RANGE_WAIT_AFTER) < 0)
			ret = -errno;
		if (paced && !ret) {
			uint64_t ns = prep_pause_ns(s, chunks - i - 1);
			struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			                      .tv_nsec = (long)(ns % 1000000000u)};

			if (ns && !atomic_load_explicit(&s->prep_hurry, memory_order_relaxed))
				nanosleep(&ts, NULL);
		}
	}
	if (!ret && fdatasync(fd) < 0)
		ret = -errno;
	if (ret) {
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

static void *prep_main(void *arg)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->prep_mu);
	for (;;) {
		int fd = -1, ret;

		while (!s->prep_stop && !(s->prep_want && s->prep_fd < 0 && s->prep_err == 0))
			pthread_cond_wait(&s->prep_cv, &s->prep_mu);
		if (s->prep_stop)
			break;
		pthread_mutex_unlock(&s->prep_mu);
		ret = prep_file(s, &fd, true);
		pthread_mutex_lock(&s->prep_mu);
		s->prep_want = false;
		if (ret)
			s->prep_err = ret;
		else
			s->prep_fd = fd;
		pthread_cond_broadcast(&s->prep_cv);
	}
	pthread_mutex_unlock(&s->prep_mu);
	return NULL;
}

static void prep_request(struct store *s)
{
	pthread_mutex_lock(&s->prep_mu);
	s->prep_want = true;
	pthread_cond_broadcast(&s->prep_cv);
	pthread_mutex_unlock(&s->prep_mu);
}

/* The prepared file (waiting for it if it is not ready yet); fd or a negative errno. */
static int prep_take(struct store *s)
{
	int fd;

	pthread_mutex_lock(&s->prep_mu);
	if (s->prep_fd < 0 && s->prep_err == 0) {
		atomic_store_explicit(&s->prep_hurry, true, memory_order_relaxed);
		s->prep_want = true;
		pthread_cond_broadcast(&s->prep_cv);
		while (s->prep_fd < 0 && s->prep_err == 0)
			pthread_cond_wait(&s->prep_cv, &s->prep_mu);
	}
	fd = s->prep_fd >= 0 ? s->prep_fd : s->prep_err;
	atomic_store_explicit(&s->prep_hurry, false, memory_order_relaxed);
	s->prep_fd = -1;
	s->prep_err = 0;
	/* Not before the taker has renamed it: a new one would truncate it (PREP_NAME). */
	s->prep_want = false;
	pthread_mutex_unlock(&s->prep_mu);
	return fd;
}

/*
 * The prepared file if it is ready (*fd), 0 if it is not yet, or a negative
 * errno from preparing it.
 */
static int prep_take_ready(struct store *s, int *fd)
{
	int ret = 0;

	pthread_mutex_lock(&s->prep_mu);
	if (s->prep_fd >= 0 || s->prep_err) {
		ret = s->prep_fd >= 0 ? 1 : s->prep_err;
		*fd = s->prep_fd;
		s->prep_fd = -1;
		s->prep_err = 0;
		/* Not before we have renamed it: a new one would truncate it (PREP_NAME). */
		s->prep_want = false;
	}
	pthread_mutex_unlock(&s->prep_mu);
	return ret;
}

/*
 * A segment at once, allocated (fallocate) rather than zero-filled, for a
 * rotation that comes before the zero-fill is done: while a large checkpoint
 * writes at the disk's full speed the zero-fill cannot keep up, and waiting
 * for it (80-120 ms a segment measured) held every append up. Its fdatasyncs
 * also commit the conversion of the extents written (slower, docs/store.md),
 * only for this one segment. fd, or -EOPNOTSUPP where fallocate is not
 * available (then the zero-fill is waited for), or another negative errno.
 */
static int quick_file(struct store *s)
{
	const int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
	bool direct = !(s->fault && s->fault->buffered);
	int fd, ret;

	fd = direct ? openat(s->dirfd, QUICK_NAME, flags | O_DIRECT, 0644) : -1;
	if (!direct || (fd < 0 && errno == EINVAL))
		fd = openat(s->dirfd, QUICK_NAME, flags, 0644);
	if (fd < 0)
		return -errno;
	if (fallocate(fd, 0, 0, (off_t)s->segment_bytes) < 0) {
		ret = -errno;
		close(fd);
		unlinkat(s->dirfd, QUICK_NAME, 0);
		return ret;
	}
	return fd;
}

static bool fd_busy(const struct store *s, int fd)
{
	const struct batch *o = &s->b[s->fill ^ 1];

	return (o->inflight && o->fd == fd) || (s->tick_inflight && s->tick_fd == fd);
}

/* Close a segment no longer current once no operation uses it. */
static void maybe_close(struct store *s, int fd)
{
	if (fd >= 0 && fd != s->cur_fd && !fd_busy(s, fd))
		close(fd);
}

static void wait_batch(struct store *s);
static int sync_now(struct store *s, int fd);

/* Retention: segments ending before the last durable checkpoint and older than retention_ms. */
static void retention(struct store *s)
{
	uint64_t now = wall_ms(), b = s->durable_ckpt_lsn;
	uint32_t i = 0, deleted = 0;

	/* A scrub is reading the segments retention would delete. */
	if (!b || s->state_broken || s->scrub_running)
		return;
	while (i + 1 < s->nb_segs) {
		struct seg_info *g = &s->segs[i];
		char name[32];

		if (s->segs[i + 1].first_lsn > b || g->first_lsn == s->seg_first_lsn ||
		    g->created_ms + s->retention_ms > now) {
			i++;
			continue;
		}
		store_seg_name(g->first_lsn, name);
		if (unlinkat(s->dirfd, name, 0) < 0 && errno != ENOENT) {
			slog(s, 1, "cannot delete segment %s: %s", name, strerror(errno));
			i++;
			continue;
		}
		memmove(g, g + 1, (s->nb_segs - i - 1) * sizeof(*g));
		s->nb_segs--;
		deleted++;
	}
	if (deleted) {
		cnt_add(&s->cnt.segments_deleted, deleted);
		if (fsync(s->dirfd) < 0)
			slog(s, 1, "cannot sync %s after deleting segments: %s", s->dir,
			     strerror(errno));
		slog(s, 2, "deleted %u segments before lsn %" PRIu64, deleted, b);
	}
}

/*
 * Start a new segment at next_lsn: the prepared file gets its header, is
 * synced and renamed, and the directory synced, before any record goes in.
 */
static int rotate(struct store *s, bool ckpt)
{
	uint8_t *hdr = s->hdr_blk;
	struct store_seg_hdr h;
	char name[32];
	const char *tmp = PREP_NAME;
	bool quick = false;
	int fd = -1, old = s->cur_fd, ret, fl;
	uint64_t t0 = mono_ns();

	if (old >= 0 && !s->seg_synced) {
		/* INTERVAL / NONE: the old segment must be synced before it is left. */
		wait_batch(s);
		if (is_ro(s))
			return -EROFS;
		ret = sync_now(s, old);
		if (ret)
			return ret;
	}
	ret = prep_take_ready(s, &fd);
	if (ret == 0) {
		fd = quick_file(s);
		quick = fd >= 0;
		if (quick)
			tmp = QUICK_NAME;
		else if (fd == -EOPNOTSUPP)
			fd = prep_take(s);
	} else if (ret < 0) {
		fd = ret;
	}
	if (fd < 0) {
		store_fail(s, fd, false, "preparing a segment");
		return fd;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, STORE_SEG_MAGIC, 8);
	h.version = STORE_SEG_VERSION;
	h.hdr_bytes = STORE_SEG_HDR;
	h.segment_bytes = s->segment_bytes;
	h.first_lsn = s->next_lsn;
	h.created_ms = wall_ms();
	if (getrandom(&h.nonce_prefix, sizeof(h.nonce_prefix), 0) != sizeof(h.nonce_prefix)) {
		ret = -EIO;
		store_fail(s, ret, false, "getrandom");
		goto out_close;
	}
	h.flags = (s->keyed ? STORE_SF_SEALED : 0) | (ckpt ? STORE_SF_CKPT : 0);
	store_seg_hdr_encode(&h, hdr);
	store_seg_name(h.first_lsn, name);
	ret = write_full(fd, hdr, STORE_SEG_HDR, 0);
	if (ret) {
		store_fail(s, ret, false, "writing a segment header");
		goto out_close;
	}
	if (fdatasync(fd) < 0 || renameat(s->dirfd, tmp, s->dirfd, name) < 0 ||
	    fsync(s->dirfd) < 0) {
		ret = -errno;
		store_fail(s, ret, true, "creating a segment");
		goto out_close;
	}
	s->cur_fd = fd;
	fl = fcntl(fd, F_GETFL);
	/* Unknown counts as buffered: the linked fdatasync is right for both. */
	s->cur_direct = fl >= 0 && (fl & O_DIRECT);
	s->seg_first_lsn = h.first_lsn;
	s->seg_off = STORE_SEG_HDR;
	s->nonce_prefix = h.nonce_prefix;
	s->seg_synced = true;
	s->rotate_pending = false;
	atomic_store_explicit(&s->seg_used, 0, memory_order_relaxed);
	atomic_store_explicit(&s->seg_start_ns, mono_ns(), memory_order_relaxed);
	maybe_close(s, old);
	if (seg_list_add(s, h.first_lsn, h.created_ms) < 0)
		slog(s, 1, "out of memory: segment %s escapes retention", name);
	cnt_add(&s->cnt.segments_created, 1);
	prep_request(s);
	retention(s);
	slog(s, 3, "segment %s started%s%s in %.2f ms", name, ckpt ? " with a checkpoint" : "",
	     quick ? " (allocated: the zero-fill was behind)" : "", (double)(mono_ns() - t0) / 1e6);
	return 0;

out_close:
	close(fd);
	unlinkat(s->dirfd, tmp, 0);
	return ret;
}

/* ---- batches ----------------------------------------------------------------------- */

static bool fault_write(struct store *s, uint64_t off, uint32_t *len, int *res)
{
	int r;

	if (!s->fault || !s->fault->before_write)
		return false;
	r = s->fault->before_write(s->fault->ctx, off, *len);
	if (r < 0) {
		*res = r;
		return true;
	}
	if (r > 0 && (uint32_t)r < *len)
		*len = (uint32_t)r;
	return false;
}

static bool fault_sync(struct store *s, int *res)
{
	int r;

	if (!s->fault || !s->fault->before_sync)
		return false;
	r = s->fault->before_sync(s->fault->ctx);
	if (r < 0) {
		*res = r;
		return true;
	}
	return false;
}

/* A synchronous fdatasync (leaving a segment under INTERVAL / NONE). */
static int sync_now(struct store *s, int fd)
{
	int ret = 0;

	if (fault_sync(s, &ret) || fdatasync(fd) < 0) {
		if (!ret)
			ret = -errno;
		store_fail(s, ret, true, "fdatasync");
		return ret;
	}
	cnt_add(&s->cnt.syncs, 1);
	if (s->written_lsn > s->synced_lsn)
		s->synced_lsn = s->written_lsn;
	return 0;
}

static void batch_reset(struct store *s, struct batch *b)
{
	b->len = 0;
	b->lead = 0;
	b->nrec = 0;
	b->last_lsn = 0;
	b->ckpt_begin = 0;
	b->closed = false;
	b->seg_end = false;
	b->sync = false;
	b->fd = -1;
	memset(b->tickets, 0, s->nb_producers * sizeof(*b->tickets));
}

static void batch_done(struct store *s, struct batch *b)
{
	b->inflight = false;
	if (b->wres >= 0)
		cnt_add(&s->cnt.writes, 1);
	if (b->sync_sent && b->sres != -ECANCELED)
		cnt_add(&s->cnt.syncs, 1);
	if (b->wres != (int)b->wlen) {
		store_fail(s, b->wres < 0 ? b->wres : -EIO, false,
		           b->wres < 0 ? "write" : "write (short)");
	} else if (b->sync && b->sres != 0) {
		store_fail(s, b->sres, true, "fdatasync");
	} else if (!is_ro(s)) {
		cnt_add(&s->cnt.written_bytes, b->len - b->lead);
		cnt_add(&s->cnt.batches, 1);
		if (b->nrec > cnt_get(&s->cnt.max_batch))
			cnt_set(&s->cnt.max_batch, b->nrec);
		s->written_lsn = b->last_lsn;
		s->retired_nrec = b->nrec;
		s->retired_ns = mono_ns();
		if (b->sync)
			s->synced_lsn = b->last_lsn;
		s->ops->done(s, b);
		if (b->ckpt_begin) {
			s->ckpt_unsynced = false;
			s->durable_ckpt_lsn = b->ckpt_begin;
			s->ckpt_done = true;
			cnt_add(&s->cnt.checkpoints, 1);
		}
	}
	maybe_close(s, b->fd);
}

/* Submit the batch being filled (nothing may be in flight) and switch buffers. */
static void submit_batch(struct store *s)
{
	struct batch *b = &s->b[s->fill];
	struct io_uring_sqe *w, *y = NULL;
	uint32_t idx = s->fill, wlen, tail;
	int res;

	if (b->nrec == 0 || is_ro(s))
		return;
	/* Whole blocks (Direct I/O, top of file); the zeros are what the segment holds there. */
	b->wlen = (b->len + IO_ALIGN - 1) & ~(IO_ALIGN - 1);
	memset(b->buf + b->len, 0, b->wlen - b->len);
	wlen = b->wlen;
	tail = (uint32_t)((b->off + b->len) & (IO_ALIGN - 1));
	if (tail)
		memcpy(s->tail_blk, b->buf + b->wlen - IO_ALIGN, tail);
	b->seq = ++s->batch_seq;
	atomic_store_explicit(&s->seg_used, s->seg_off - STORE_SEG_HDR, memory_order_relaxed);
	b->sync = s->ops->sync_each_batch || b->seg_end || b->ckpt_begin;
	b->wres = 0;
	b->sres = 0;
	b->sync_sent = false;
	b->inflight = true;
	s->seg_synced = b->sync;
	/* NONE: acknowledged when copied, even if a checkpoint submits it mid-drain. */
	s->ops->copied(s, b);
	s->fill ^= 1;
	batch_reset(s, &s->b[s->fill]);
	if (fault_write(s, b->off, &wlen, &res)) {
		/* The write is not performed; its linked sync would be cancelled. */
		b->wres = res;
		b->sres = -ECANCELED;
		batch_done(s, b);
		return;
	}
	w = get_sqe(s);
	if (!w) {
		b->wres = -EBUSY;
		b->sres = -ECANCELED;
		batch_done(s, b);
		return;
	}
	io_uring_prep_write(w, b->fd, b->buf, wlen, b->off);
	io_uring_sqe_set_data64(w, ud_make(UD_WRITE, idx, b->seq));
	b->pending = 1;
	if (b->sync) {
		if (fault_sync(s, &res)) {
			b->sres = res;
		} else if (b->direct) {
			w->rw_flags |= RWF_DSYNC;
			b->sync_sent = true;
		} else {
			y = get_sqe(s);
			if (!y) {
				b->sres = -EBUSY;
			} else {
				w->flags |= IOSQE_IO_LINK;
				io_uring_prep_fsync(y, b->fd, IORING_FSYNC_DATASYNC);
				io_uring_sqe_set_data64(y, ud_make(UD_SYNC, idx, b->seq));
				b->pending = 2;
				b->sync_sent = true;
			}
		}
	}
	flush_sq(s);
}

static bool batch_inflight(const struct store *s)
{
	return s->b[s->fill ^ 1].inflight;
}

/* The batch in flight is big (the producers outrun the disk): copy the next one meanwhile. */
static bool big_batch_inflight(const struct store *s)
{
	const struct batch *b = &s->b[s->fill ^ 1];

	return b->inflight && b->len >= s->batch_bytes / INFLIGHT_POLL_SHARE;
}

static void handle_cqe(struct store *s, uint64_t ud, int res)
{
	unsigned op = ud & 0xffu, idx = (ud >> 8) & 1u;
	struct batch *b = &s->b[idx];

	switch (op) {
	case UD_WAKE:
		s->wake_armed = false;
		/* Once stopping, it is let go so the thread can end with nothing armed. */
		if (!atomic_load_explicit(&s->stop, memory_order_acquire))
			arm_wake(s);
		break;
	case UD_WRITE:
	case UD_SYNC:
		if (!b->inflight || (b->seq & 0xffffffffffffull) != ud >> 16) {
			slog(s, 1, "stray completion %#" PRIx64, ud);
			break;
		}
		if (op == UD_WRITE) {
			b->wres = res;
			/* RWF_DSYNC: the error may be the flush's; counted as the write's. */
			if (b->direct && b->sync_sent)
				b->sres = res < 0 ? -ECANCELED : 0;
		} else {
			b->sres = res;
		}
		if (--b->pending == 0)
			batch_done(s, b);
		break;
	case UD_TICK:
		s->tick_inflight = false;
		if (res < 0) {
			store_fail(s, res, true, "fdatasync");
		} else {
			cnt_add(&s->cnt.syncs, 1);
			if (s->tick_lsn > s->synced_lsn)
				s->synced_lsn = s->tick_lsn;
		}
		maybe_close(s, s->tick_fd);
		break;
	default:
		/* LIBURING_UDATA_TIMEOUT of an old-kernel wait: nothing to do. */
		break;
	}
}

/*
 * Completions are copied out and the queue advanced before any is handled:
 * a handler may queue requests, and queueing may reap again.
 */
static void reap(struct store *s)
{
	struct io_uring_cqe *cqes[QUEUE_DEPTH];
	uint64_t ud[QUEUE_DEPTH];
	int res[QUEUE_DEPTH];
	unsigned n;

	do {
		n = io_uring_peek_batch_cqe(&s->ring, cqes, QUEUE_DEPTH);
		for (unsigned i = 0; i < n; i++) {
			ud[i] = cqes[i]->user_data;
			res[i] = cqes[i]->res;
		}
		io_uring_cq_advance(&s->ring, n);
		for (unsigned i = 0; i < n; i++)
			handle_cqe(s, ud[i], res[i]);
	} while (n == QUEUE_DEPTH);
}

/* Block until no batch is in flight. */
static void wait_batch(struct store *s)
{
	while (batch_inflight(s)) {
		wait_cqe(s, IDLE_MAX_NS);
		reap(s);
	}
}

/* ---- filling a batch ---------------------------------------------------------------- */

static void remember_erased(void *ctx, struct store_str c)
{
	struct store *s = ctx;
	char *copy;

	if (s->nb_erased == s->cap_erased) {
		uint32_t cap = s->cap_erased ? 2 * s->cap_erased : 16;
		struct store_str *n = realloc(s->erased, cap * sizeof(*n));

		if (!n)
			goto out_nomem;
		s->erased = n;
		s->cap_erased = cap;
	}
	copy = malloc(c.len ? c.len : 1);
	if (!copy)
		goto out_nomem;
	if (c.len)
		memcpy(copy, c.ptr, c.len);
	s->erased[s->nb_erased++] = (struct store_str){.ptr = copy, .len = c.len};
	return;
out_nomem:
	slog(s, 0, "out of memory: an erased customer's old records will not be scrubbed");
}

static void checkpoint(struct store *s);

static bool ckpt_due(const struct store *s)
{
	/* One at a time: the erasures a checkpoint scrubs are those before it. */
	if (s->state_broken || s->ckpt_running || s->ckpt_unsynced)
		return false;
	if (s->nb_erased > s->nb_scrub && !s->scrub_running)
		return true;
	return s->bytes_since_ckpt > s->checkpoint_bytes &&
	       s->bytes_since_ckpt > 2 * s->last_ckpt_bytes;
}

static void apply_event(struct store *s, uint16_t type, uint64_t lsn, const uint8_t *payload,
                        uint32_t len);

static int apply_held(void *ctx, uint64_t lsn, uint16_t type, const uint8_t *payload, uint32_t len)
{
	apply_event(ctx, type, lsn, payload, len);
	return 0;
}

/* The checkpoint is written: apply what was taken meanwhile, in LSN order. */
static void defer_apply(struct store *s)
{
	/* A burst's worth is kept; what a long checkpoint needed is given back. */
	store_held_drain(&s->defer, (size_t)8 * s->batch_bytes, apply_held, s);
	s->defer_full = false;
}

/*
 * Add one record (payload: len plaintext bytes) to the batch being filled,
 * starting a segment first if needed. prod < 0: a checkpoint record, not
 * applied to the state. Returns false when it does not fit (the batch is
 * closed) or the store failed.
 */
static bool add_record(struct store *s, uint16_t type, const uint8_t *payload, uint32_t len,
                       int prod)
{
	struct batch *b = &s->b[s->fill];
	uint32_t plen = len + (s->keyed ? STORE_TAG_LEN : 0);
	uint64_t span = store_rec_span(plen), lsn;
	uint8_t *rec;
	uint16_t flags = 0;

	if (is_ro(s) || b->closed)
		return false;
	if (s->rotate_pending || s->cur_fd < 0) {
		if (b->nrec) {
			b->closed = true;
			return false;
		}
		/*
		 * A new segment that starts with a checkpoint is left to the
		 * thread's loop (rotate_checkpoint): we may be inside ring_take,
		 * and the checkpoint drains the rings itself.
		 */
		if (ckpt_due(s)) {
			s->ckpt_wanted = true;
			return false;
		}
		if (rotate(s, false) < 0)
			return false;
	}
	if ((b->nrec ? b->len : s->seg_off & (IO_ALIGN - 1)) + span > s->fill_limit) {
		b->closed = true;
		return false;
	}
	if (s->seg_off + span > s->segment_bytes) {
		s->rotate_pending = true;
		if (b->nrec) {
			b->closed = true;
			b->seg_end = true;
			return false;
		}
		/* The segment ended with the batch before: start the next one now. */
		return add_record(s, type, payload, len, prod);
	}
	if (b->nrec == 0) {
		b->lead = (uint32_t)(s->seg_off & (IO_ALIGN - 1));
		b->off = s->seg_off - b->lead;
		b->fd = s->cur_fd;
		b->direct = s->cur_direct;
		memcpy(b->buf, s->tail_blk, b->lead);
		b->len = b->lead;
	}
	rec = b->buf + b->len;
	lsn = s->next_lsn;
	memcpy(rec + STORE_REC_HDR, payload, len);
	if (prod >= 0 && s->ckpt_running) {
		store_held_push(&s->defer, lsn, type, payload, len);
		s->bytes_since_ckpt += span;
	} else if (prod >= 0) {
		apply_event(s, type, lsn, rec + STORE_REC_HDR, len);
		s->bytes_since_ckpt += span;
	} else {
		s->ckpt_bytes += span;
	}
	if (s->keyed) {
		if (store_aead_seal(s->aead, s->nonce_prefix, lsn, type, rec + STORE_REC_HDR, len) <
		    0) {
			store_fail(s, -EIO, false, "sealing a record");
			return false;
		}
		flags = STORE_RF_SEALED;
	}
	store_rec_finish(rec, type, flags, lsn, plen);
	b->len += (uint32_t)span;
	b->nrec++;
	b->last_lsn = lsn;
	s->seg_off += span;
	s->next_lsn++;
	return true;
}

/* Apply a record to the state the checkpoints are written from. */
static void apply_event(struct store *s, uint16_t type, uint64_t lsn, const uint8_t *payload,
                        uint32_t len)
{
	struct store_event ev;

	if (store_event_decode(payload, len, type, &ev) != 0)
		return;
	ev.lsn = lsn;
	if (!s->state_broken && store_state_apply(s->state, &ev) < 0) {
		/* The log stays complete; only checkpoints would be wrong. */
		s->state_broken = true;
		slog(s, 0,
		     "out of memory applying lsn %" PRIu64 ": no more checkpoints until a restart",
		     lsn);
	}
	if (type == STORE_REC_ERASE)
		store_state_take_erased(s->state, remember_erased, s);
}

/* Take what producer p published into the batch being filled; returns records taken. */
static uint32_t ring_take(struct store *s, struct store_producer *p)
{
	/* A2: pairs with R1 in store_append: the entries up to head are complete. */
	uint64_t head = atomic_load_explicit(&p->head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&p->tail, memory_order_relaxed);
	uint32_t n = 0;

	while (tail != head) {
		uint64_t off = tail & p->mask;
		const uint8_t *e = p->ring + off;
		uint32_t len;
		uint16_t th[2];

		memcpy(&len, e, 4);
		memcpy(th, e + 4, 4);
		if (th[1] & RING_WRAP) {
			tail += s->ring_bytes - off;
			continue;
		}
		if (!add_record(s, th[0], e + RING_HDR, len, (int)p->idx))
			break;
		tail += align8(RING_HDR + (uint64_t)len);
		s->b[s->fill].tickets[p->idx] = ++p->taken;
		n++;
	}
	/* R2: pairs with A1 in store_append: the bytes before tail may be reused. */
	atomic_store_explicit(&p->tail, tail, memory_order_release);
	return n;
}

/* One round over the producers. */
static uint32_t drain(struct store *s)
{
	uint32_t n = 0;

	for (uint32_t k = 0; k < s->nb_producers && !is_ro(s); k++) {
		n += ring_take(s, &s->prod[s->rr]);
		if (s->b[s->fill].closed || s->ckpt_wanted)
			break;
		s->rr = s->rr + 1 == s->nb_producers ? 0 : s->rr + 1;
	}
	if (n) {
		cnt_add(&s->cnt.appended, n);
		s->ops->copied(s, &s->b[s->fill]);
	}
	return n;
}

/* Read-only: what the producers appended before they saw it is dropped, never written. */
static void discard(struct store *s)
{
	for (uint32_t i = 0; i < s->nb_producers; i++) {
		struct store_producer *p = &s->prod[i];
		/* A2 (as in ring_take) and R2: the space is free again. */
		uint64_t head = atomic_load_explicit(&p->head, memory_order_acquire);

		atomic_store_explicit(&p->tail, head, memory_order_release);
	}
}

static bool rings_pending(const struct store *s)
{
	for (uint32_t i = 0; i < s->nb_producers; i++)
		if (atomic_load_explicit(&s->prod[i].head, memory_order_acquire) !=
		    atomic_load_explicit(&s->prod[i].tail, memory_order_relaxed))
			return true;
	return false;
}

/* ---- checkpoints and erasure ---------------------------------------------------------- */

static int ckpt_event(void *ctx, const struct store_event *ev)
{
	struct store *s = ctx;
	size_t len = store_event_encode(ev, s->scratch);

	if (!len)
		return -EINVAL;
	for (;;) {
		uint64_t lsn = s->next_lsn;

		if (is_ro(s))
			return -EROFS;
		if (add_record(s, ev->type, s->scratch, (uint32_t)len, -1)) {
			if (ev->type == STORE_REC_CKPT_BEGIN) {
				s->ckpt_lsn = lsn;
				s->bytes_since_ckpt = 0;
			} else if (ev->type == STORE_REC_CKPT_END) {
				s->b[s->fill].ckpt_begin = s->ckpt_lsn;
				s->ckpt_unsynced = true;
			}
			return 0;
		}
		if (s->b[s->fill].nrec == 0)
			return -EIO; /* cannot happen: a record always fits an empty batch */
		/* Batch or segment full: write it out and go on in the other buffer. */
		wait_batch(s);
		submit_batch(s);
		/*
		 * The appenders go on meanwhile: what they appended goes into the
		 * log now, between checkpoint records, and is acknowledged as
		 * usual; its effect on the state waits for the checkpoint's end
		 * (defer_apply), so the checkpoint stays the state as of
		 * CKPT_BEGIN. Recovery does the same (store_recover.c).
		 */
		if (!s->defer_full && !is_ro(s)) {
			/* Room for a drain's worth (half a batch) beforehand: a push cannot fail.
			 */
			if (store_held_reserve(&s->defer, s->batch_bytes) == 0) {
				/* Half a batch at most: the checkpoint must get on too. */
				s->fill_limit = s->batch_bytes / 2;
				drain(s);
				s->fill_limit = s->batch_bytes;
				s->b[s->fill].closed = false;
			} else {
				s->defer_full = true;
			}
		}
	}
}

/*
 * Write the state as a checkpoint at the start of the new segment: the state
 * as of the record before CKPT_BEGIN. Records appended meanwhile are written
 * between its batches but applied to the state only after it (up to
 * DEFER_MAX of them; beyond that the rings wait). Its last batch carries a
 * sync; when that completes, the checkpoint is durable (ckpt_done).
 */
static void checkpoint(struct store *s)
{
	uint64_t t0 = mono_ns();
	int ret;

	s->ckpt_running = true;
	s->ckpt_bytes = 0;
	s->ckpt_lsn = 0;
	/* While a scrub runs, erasures since wait for the checkpoint after this one. */
	if (!s->scrub_running)
		s->nb_scrub = s->nb_erased;
	ret = store_state_checkpoint(s->state, wall_ms(), ckpt_event, s);
	s->ckpt_running = false;
	defer_apply(s);
	if (ret < 0) {
		if (!is_ro(s))
			slog(s, 1, "checkpoint at lsn %" PRIu64 " failed: %s", s->ckpt_lsn,
			     strerror(-ret));
		if (!s->scrub_running)
			s->nb_scrub = 0;
		return;
	}
	s->last_ckpt_bytes = s->ckpt_bytes;
	slog(s, 2, "checkpoint at lsn %" PRIu64 ": %" PRIu64 " bytes in %.1f ms", s->ckpt_lsn,
	     s->ckpt_bytes, (double)(mono_ns() - t0) / 1e6);
}

/* Start a segment with a checkpoint (asked for by add_record). */
static void rotate_checkpoint(struct store *s)
{
	s->ckpt_wanted = false;
	if (s->b[s->fill].nrec || is_ro(s))
		return; /* cannot be: the batch ended with the segment; asked again if need be */
	if (rotate(s, true) == 0)
		checkpoint(s);
}

static void *scrub_main(void *arg)
{
	struct store *s = arg;
	struct store_aead *a = NULL;
	int n = -ENOMEM;

	/* The store thread's cipher context is not shareable. */
	if (!s->keyed || (a = store_aead_create(s->key)) != NULL)
		n = store_scrub(s->dir, a, s->scrub_below, s->scrub_list, s->nb_scrub);
	store_aead_destroy(a);
	s->scrub_result = n;
	atomic_store_explicit(&s->scrub_finished, true, memory_order_release);
	wake(s);
	return NULL;
}

/* The scrub of erased[0..nb_scrub) ended with n (records, or a negative errno). */
static void scrub_done(struct store *s, int n)
{
	if (n < 0) {
		/* Kept for the next checkpoint: scrubbing again is harmless. */
		slog(s, 0, "scrubbing %u erased customers failed: %s", s->nb_scrub, strerror(-n));
	} else {
		cnt_add(&s->cnt.erased, s->nb_scrub);
		for (uint32_t i = 0; i < s->nb_scrub; i++)
			free((char *)s->erased[i].ptr);
		memmove(s->erased, s->erased + s->nb_scrub,
		        (s->nb_erased - s->nb_scrub) * sizeof(*s->erased));
		s->nb_erased -= s->nb_scrub;
		slog(s, 2, "scrubbed %d records of %u erased customers", n, s->nb_scrub);
	}
	s->nb_scrub = 0;
}

/* A scrub thread that has finished: account for it, then apply retention. */
static void scrub_reap(struct store *s)
{
	if (!s->scrub_running || !atomic_load_explicit(&s->scrub_finished, memory_order_acquire))
		return;
	pthread_join(s->scrub_thread, NULL);
	s->scrub_running = false;
	free(s->scrub_list);
	s->scrub_list = NULL;
	scrub_done(s, s->scrub_result);
	retention(s);
}

/* A checkpoint is durable: scrub the customers erased before it, apply retention. */
static void after_checkpoint(struct store *s)
{
	s->ckpt_done = false;
	if (s->nb_scrub && !s->scrub_running) {
		s->scrub_list = malloc(s->nb_scrub * sizeof(*s->scrub_list));
		if (s->scrub_list) {
			memcpy(s->scrub_list, s->erased, s->nb_scrub * sizeof(*s->scrub_list));
			s->scrub_below = s->durable_ckpt_lsn;
			atomic_store_explicit(&s->scrub_finished, false, memory_order_relaxed);
			s->scrub_running = true;
			if (pthread_create(&s->scrub_thread, NULL, scrub_main, s) == 0) {
				pthread_setname_np(s->scrub_thread, "surge-scrub");
				return; /* retention once it is done */
			}
			s->scrub_running = false;
			free(s->scrub_list);
			s->scrub_list = NULL;
		}
		/* No thread: here, then, holding up the appends meanwhile. */
		scrub_done(s, store_scrub(s->dir, s->aead, s->durable_ckpt_lsn, s->erased,
		                          s->nb_scrub));
	}
	retention(s);
}

/* ---- the store thread ------------------------------------------------------------------ */

/*
 * Commit delay (SYNC, commit_delay_us > 0): when a batch has just been
 * retired and the next one holds fewer records than it did, hold the next
 * one until it has as many or the delay has passed since the retirement.
 * Writers that each wait for their ack (a closed loop) answer within
 * microseconds of it: without the delay their records miss the batch that
 * is submitted at once with what arrived during the sync, so the clients
 * split into two cohorts that take turns, each waiting for two syncs. At
 * low load the batch being filled is rarely smaller than a single-record
 * one before it, so nothing is held. Returns the mono ns until which to
 * hold, 0 to submit now.
 */
static uint64_t commit_hold(const struct store *s)
{
	const struct batch *b = &s->b[s->fill];
	uint64_t until;

	if (!s->commit_delay_ns || b->closed || b->nrec >= s->retired_nrec)
		return 0;
	until = s->retired_ns + s->commit_delay_ns;
	return mono_ns() < until ? until : 0;
}

static void store_wait(struct store *s, uint64_t next_tick)
{
	uint64_t now = mono_ns(), timeout = IDLE_MAX_NS;
	bool sleep = !batch_inflight(s);

	if (next_tick != UINT64_MAX)
		timeout = next_tick > now ? next_tick - now : 0;
	if (timeout > IDLE_MAX_NS)
		timeout = IDLE_MAX_NS;
	if (big_batch_inflight(s) && !s->b[s->fill].closed && timeout > INFLIGHT_POLL_NS)
		timeout = INFLIGHT_POLL_NS;
	if (!s->wake_armed && timeout > 1000000u)
		timeout = 1000000u;
	if (sleep) {
		atomic_store_explicit(&s->sleeping, 1, memory_order_relaxed);
		/* F1: pairs with F2 in store_append. */
		atomic_thread_fence(memory_order_seq_cst);
		if (rings_pending(s) || atomic_load_explicit(&s->stop, memory_order_acquire)) {
			atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
			return;
		}
	}
	if (timeout)
		wait_cqe(s, timeout);
	if (sleep)
		atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
}

/* Everything taken, written and synced (or the store failed): the thread may end. */
static bool finished(struct store *s)
{
	if (batch_inflight(s) || s->tick_inflight || s->scrub_running)
		return false;
	if (is_ro(s))
		return true;
	if (rings_pending(s) || s->b[s->fill].nrec)
		return false;
	if (s->written_lsn > s->synced_lsn && s->cur_fd >= 0) {
		/* INTERVAL / NONE: the last sync, now. */
		sync_now(s, s->cur_fd);
	}
	return true;
}

static void *store_main(void *arg)
{
	struct store *s = arg;
	uint64_t next_tick = UINT64_MAX;

	arm_wake(s);
	if (s->durable_ckpt_lsn)
		retention(s);
	for (;;) {
		bool did = false;

		reap(s);
		scrub_reap(s);
		if (s->ckpt_done)
			after_checkpoint(s);
		if (!is_ro(s)) {
			did = drain(s) > 0;
			uint64_t hold = 0;

			if (s->ckpt_wanted) {
				rotate_checkpoint(s);
				did = true;
			}
			if (!batch_inflight(s) && s->b[s->fill].nrec) {
				/*
				 * Held: sleep until an append wakes us or the delay
				 * ends (store_wait). Polling here instead costs a core
				 * that, on a VM, the host may take back with interest
				 * (docs/development.md, "VM stops").
				 */
				hold = commit_hold(s);
				if (!hold) {
					submit_batch(s);
					did = true;
				}
			}
			next_tick = s->ops->tick(s, mono_ns());
			if (hold && hold < next_tick)
				next_tick = hold;
		} else {
			discard(s);
			next_tick = UINT64_MAX;
		}
		if (atomic_load_explicit(&s->stop, memory_order_acquire) && finished(s))
			break;
		if (!did)
			store_wait(s, next_tick);
	}
	/* Let the armed eventfd read complete so nothing points at s afterwards. */
	while (s->wake_armed) {
		wake(s);
		wait_cqe(s, IDLE_MAX_NS);
		reap(s);
	}
	return NULL;
}

/* ---- open, start, close ------------------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	char *buf = strdup(dir);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
			ret = -errno;
			goto out_free;
		}
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0) {
		if (errno != EEXIST)
			ret = -errno;
	} else {
		/* Make the new directory's own entry durable. */
		char *slash = strrchr(buf, '/');
		int pfd;

		if (slash == buf)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		pfd = open(slash ? buf : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd >= 0) {
			if (fsync(pfd) < 0)
				ret = -errno;
			close(pfd);
		}
	}
out_free:
	free(buf);
	return ret;
}

static int conf_load(struct store *s, const struct store_conf *c)
{
	if (!c || !c->dir || !c->dir[0] || (unsigned)c->policy > STORE_POLICY_NONE)
		return -EINVAL;
	s->policy = c->policy;
	s->ops = &policies[c->policy];
	s->interval_ns = (uint64_t)(c->interval_ms ? c->interval_ms : DEF_INTERVAL_MS) * 1000000u;
	if (c->interval_ms > MAX_INTERVAL_MS || c->commit_delay_us > MAX_COMMIT_DELAY_US)
		return -EINVAL;
	/* Only SYNC acknowledges after a sync: holding a batch is of no use to the others. */
	if (c->policy == STORE_POLICY_SYNC)
		s->commit_delay_ns = (uint64_t)c->commit_delay_us * 1000u;
	s->segment_bytes = c->segment_bytes ? c->segment_bytes : DEF_SEGMENT_BYTES;
	if (s->segment_bytes % STORE_SEG_HDR || s->segment_bytes < MIN_SEGMENT_BYTES ||
	    s->segment_bytes > MAX_SEGMENT_BYTES)
		return -EINVAL;
	s->nb_producers = c->nb_producers ? c->nb_producers : 1;
	if (s->nb_producers > MAX_PRODUCERS)
		return -EINVAL;
	s->ring_bytes = c->ring_bytes ? c->ring_bytes : DEF_RING_BYTES;
	if (s->ring_bytes & (s->ring_bytes - 1) || s->ring_bytes < MIN_RING_BYTES ||
	    s->ring_bytes > MAX_RING_BYTES)
		return -EINVAL;
	s->batch_bytes = c->batch_bytes ? c->batch_bytes : DEF_BATCH_BYTES;
	if (s->batch_bytes < MIN_BATCH_BYTES || s->batch_bytes > MAX_BATCH_BYTES)
		return -EINVAL;
	/* A batch never spans segments: no use for more than one segment's room. */
	if (s->batch_bytes > s->segment_bytes - STORE_SEG_HDR)
		s->batch_bytes = (uint32_t)(s->segment_bytes - STORE_SEG_HDR);
	s->fill_limit = s->batch_bytes;
	s->defer.max = DEFER_MAX;
	/* 0 is a real value here: segments go as soon as a checkpoint covers them. */
	s->retention_ms = c->retention_ms;
	s->checkpoint_bytes = c->checkpoint_bytes ? c->checkpoint_bytes : DEF_CHECKPOINT_BYTES;
	s->keyed = c->key != NULL;
	if (c->key)
		memcpy(s->key, c->key, sizeof(s->key));
	s->fault = c->fault;
	s->log = c->log;
	s->log_ctx = c->log_ctx;
	return 0;
}

static void store_free(struct store *s)
{
	if (s->prod) {
		for (uint32_t i = 0; i < s->nb_producers; i++)
			free(s->prod[i].ring);
		free(s->prod);
	}
	for (int i = 0; i < 2; i++) {
		free(s->b[i].buf);
		free(s->b[i].tickets);
	}
	free(s->defer.buf);
	free(s->tail_blk);
	free(s->hdr_blk);
	free(s->zero_buf);
	for (uint32_t i = 0; i < s->nb_erased; i++)
		free((char *)s->erased[i].ptr);
	free(s->erased);
	free(s->segs);
	free(s->scratch);
	if (s->efd >= 0)
		close(s->efd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	store_aead_destroy(s->aead);
	store_state_destroy(s->state);
	pthread_cond_destroy(&s->prep_cv);
	pthread_mutex_destroy(&s->prep_mu);
	explicit_bzero(s->key, sizeof(s->key));
	free(s->dir);
	free(s);
}

static int alloc_io(struct store *s)
{
	size_t bb = ((size_t)s->batch_bytes + IO_ALIGN - 1) & ~(size_t)(IO_ALIGN - 1);

	s->prod = aligned_alloc(CACHE_LINE, s->nb_producers * sizeof(*s->prod));
	if (!s->prod)
		return -ENOMEM;
	memset(s->prod, 0, s->nb_producers * sizeof(*s->prod));
	for (uint32_t i = 0; i < s->nb_producers; i++) {
		struct store_producer *p = &s->prod[i];

		p->s = s;
		p->idx = i;
		p->mask = s->ring_bytes - 1;
		p->ring = aligned_alloc(CACHE_LINE, s->ring_bytes);
		if (!p->ring)
			return -ENOMEM;
		/* Touch it now rather than fault pages in on the data path. */
		memset(p->ring, 0, s->ring_bytes);
	}
	for (int i = 0; i < 2; i++) {
		s->b[i].buf = aligned_alloc(IO_ALIGN, bb);
		s->b[i].tickets = calloc(s->nb_producers, sizeof(*s->b[i].tickets));
		if (!s->b[i].buf || !s->b[i].tickets)
			return -ENOMEM;
		memset(s->b[i].buf, 0, bb);
		s->b[i].fd = -1;
	}
	s->tail_blk = aligned_alloc(IO_ALIGN, IO_ALIGN);
	s->hdr_blk = aligned_alloc(IO_ALIGN, STORE_SEG_HDR);
	s->zero_buf = aligned_alloc(IO_ALIGN, ZERO_CHUNK);
	if (!s->tail_blk || !s->hdr_blk || !s->zero_buf)
		return -ENOMEM;
	memset(s->zero_buf, 0, ZERO_CHUNK);
	s->scratch = malloc(STORE_EVENT_MAX);
	return s->scratch ? 0 : -ENOMEM;
}

struct store *store_open(const struct store_conf *conf, struct store_recovery *rec)
{
	struct store_recovery local;
	struct store_tail tail = {0};
	struct store *s;
	int ret;

	s = aligned_alloc(CACHE_LINE, (sizeof(*s) + CACHE_LINE - 1) & ~(size_t)(CACHE_LINE - 1));
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	memset(s, 0, sizeof(*s));
	s->dirfd = -1;
	s->efd = -1;
	s->cur_fd = -1;
	s->tick_fd = -1;
	s->prep_fd = -1;
	pthread_mutex_init(&s->prep_mu, NULL);
	pthread_cond_init(&s->prep_cv, NULL);
	ret = conf_load(s, conf);
	if (ret)
		goto out_free;
	s->dir = strdup(conf->dir);
	if (!s->dir) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = mkdir_p(s->dir);
	if (ret)
		goto out_free;
	s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		ret = -errno;
		goto out_free;
	}
	/* One writer per log: a second process on the same directory would interleave. */
	if (flock(s->dirfd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		slog(s, 0, "%s is in use by another process", s->dir);
		goto out_free;
	}
	s->state = store_state_create(conf->history_customers ? conf->history_customers
	                                                      : DEF_HISTORY_CUSTOMERS,
	                              BACKLOG_MAX);
	if (!s->state) {
		ret = errno ? -errno : -ENOMEM;
		goto out_free;
	}
	if (s->keyed) {
		s->aead = store_aead_create(s->key);
		if (!s->aead) {
			ret = errno ? -errno : -ENOMEM;
			goto out_free;
		}
	}
	if (!rec)
		rec = &local;
	memset(rec, 0, sizeof(*rec));
	ret = store_recover(s->dir, s->aead, s->state, rec, &tail);
	if (ret)
		goto out_free;
	s->next_lsn = tail.next_lsn ? tail.next_lsn : 1;
	s->written_lsn = s->synced_lsn = s->next_lsn - 1;
	cnt_set(&s->cnt.durable_lsn, s->next_lsn - 1);
	s->durable_ckpt_lsn = tail.last_ckpt_lsn;
	s->bytes_since_ckpt = tail.bytes_since_ckpt;
	/* Writing always continues in a new segment. */
	s->rotate_pending = true;
	s->seg_synced = true;
	ret = seg_list_load(s);
	if (ret)
		goto out_free;
	if ((unlinkat(s->dirfd, PREP_NAME, 0) < 0 && errno != ENOENT) ||
	    (unlinkat(s->dirfd, QUICK_NAME, 0) < 0 && errno != ENOENT)) {
		ret = -errno;
		goto out_free;
	}
	ret = alloc_io(s);
	if (ret)
		goto out_free;
	/* Blocking: io_uring would fail a read of a non-blocking one with -EAGAIN. */
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0) {
		ret = -errno;
		goto out_free;
	}
	if (s->policy == STORE_POLICY_NONE)
		slog(s, 1,
		     "durability policy NONE: appends are acknowledged before they are "
		     "written; a crash loses them (for benchmarks only)");
	return s;

out_free:
	store_free(s);
	errno = -ret;
	return NULL;
}

const struct store_state *store_recovered(const struct store *s)
{
	return s && !s->started ? s->state : NULL;
}

int store_start(struct store *s)
{
	int ret;

	if (!s)
		return -EINVAL;
	if (s->started)
		return -EALREADY;
	/* The first segment is prepared here, at full speed, so the first append does not wait. */
	if (s->prep_fd < 0) {
		ret = prep_file(s, &s->prep_fd, false);
		if (ret)
			return ret;
	}
	ret = io_uring_queue_init(QUEUE_DEPTH, &s->ring, 0);
	if (ret < 0)
		return ret;
	s->ring_ok = true;
	ret = -pthread_create(&s->prep_thread, NULL, prep_main, s);
	if (ret)
		goto out_exit_ring;
	pthread_setname_np(s->prep_thread, "surge-prep");
	s->prep_started = true;
	ret = -pthread_create(&s->thread, NULL, store_main, s);
	if (ret)
		goto out_stop_prep;
	pthread_setname_np(s->thread, "surge-store");
	s->started = true;
	return 0;

out_stop_prep:
	pthread_mutex_lock(&s->prep_mu);
	s->prep_stop = true;
	pthread_cond_broadcast(&s->prep_cv);
	pthread_mutex_unlock(&s->prep_mu);
	pthread_join(s->prep_thread, NULL);
	s->prep_started = false;
	if (s->prep_fd >= 0) {
		close(s->prep_fd);
		s->prep_fd = -1;
	}
out_exit_ring:
	io_uring_queue_exit(&s->ring);
	s->ring_ok = false;
	return ret;
}

int store_transcript(struct store *s, uint64_t session_id, uint64_t opened_lsn, uint64_t opened_ms,
                     store_msg_fn *fn, void *ctx)
{
	struct store_aead *a = NULL;
	int ret;

	if (!s || !fn)
		return -EINVAL;
	if (s->keyed) {
		/* The store thread's context is not shareable. */
		a = store_aead_create(s->key);
		if (!a)
			return -ENOMEM;
	}
	ret = store_read_transcript(s->dir, a, session_id, opened_lsn, opened_ms, fn, ctx);
	store_aead_destroy(a);
	if (ret >= 0)
		atomic_fetch_add_explicit(&s->cnt.transcripts, 1, memory_order_relaxed);
	return ret;
}

int store_close(struct store *s)
{
	int ret;

	if (!s)
		return 0;
	/* Appended before a start that never came: still written. */
	if (!s->started && rings_pending(s) && !is_ro(s))
		store_start(s);
	if (s->started) {
		atomic_store_explicit(&s->stop, true, memory_order_release);
		wake(s);
		pthread_join(s->thread, NULL);
	}
	if (s->prep_started) {
		pthread_mutex_lock(&s->prep_mu);
		s->prep_stop = true;
		pthread_cond_broadcast(&s->prep_cv);
		pthread_mutex_unlock(&s->prep_mu);
		pthread_join(s->prep_thread, NULL);
	}
	if (s->prep_fd >= 0)
		close(s->prep_fd);
	unlinkat(s->dirfd, PREP_NAME, 0);
	if (s->cur_fd >= 0)
		close(s->cur_fd);
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	ret = -atomic_load_explicit(&s->error, memory_order_relaxed);
	store_free(s);
	return ret;
}
