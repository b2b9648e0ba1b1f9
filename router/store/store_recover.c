/* SPDX-License-Identifier: MIT */
/*
 * Reading the log back: recovery (replay into a state, cut a torn tail),
 * read-only scans, transcripts, and scrubbing erased customers in place.
 *
 * Every reader walks the same way: the segments sorted by first LSN, each
 * read sequentially with io_uring into two buffers in turn (the next one is
 * read while this one is parsed; pread where io_uring is not available),
 * records checked with the LSN they must carry.
 * The log ends at the first record that is not valid, at the zero header
 * after the last record of a segment that no contiguous segment follows, or
 * at a segment whose first LSN does not continue the one before.
 *
 * Checkpoints. Recovery starts at the newest segment flagged STORE_SF_CKPT
 * whose checkpoint reaches its CKPT_END. The content of any other
 * checkpoint met on the way (one cut short by a crash, or by a store that
 * failed) repeats what the records before it already built, so it is not
 * applied again: HISTORY, CKPT_BEGIN/END and records flagged STORE_EF_CKPT.
 * The writer goes on taking appends while it writes a checkpoint: those
 * records sit between CKPT_BEGIN and CKPT_END but come after the state the
 * checkpoint holds, so recovery, like the writer, applies them only once
 * the checkpoint it starts from is complete (at its CKPT_END).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "store_pvt.h"

#define RECOVER_BUF    (4u << 20) /* recovery, scans, scrubs: bytes per read */
#define TRANSCRIPT_BUF (1u << 20) /* transcripts: bytes per read */
#define IO_ALIGN       4096u
#define RING_DEPTH     4u
#define DEFER_LIMIT    (1ull << 30) /* records inside a checkpoint held until its end */

/* The longest record: a full event sealed. */
#define MAX_SPAN store_rec_span(STORE_EVENT_MAX + STORE_TAG_LEN)
/* Room before each buffer's data for the unparsed end of the other one. */
#define HEADROOM ((MAX_SPAN + IO_ALIGN - 1) & ~(size_t)(IO_ALIGN - 1))

struct seg {
	uint64_t first_lsn;
	uint64_t size; /* file bytes */
	struct store_seg_hdr h;
	char name[32];
};

struct seglist {
	int dirfd;
	struct seg *v;
	uint32_t n;
	bool removed; /* a leftover file was removed: the directory needs a sync */
};

/*
 * A segment read in chunks of cap bytes into mem[0] and mem[1] in turn,
 * each HEADROOM + cap bytes: a chunk lands at mem[i] + HEADROOM, and the
 * record cut by its start is completed by copying the previous chunk's
 * unparsed end just before it.
 */
struct reader {
	int fd;
	struct io_uring *ring; /* NULL: synchronous pread */
	uint8_t *mem[2];
	unsigned cur;      /* mem[cur] holds buf */
	size_t cap;        /* bytes per read */
	uint8_t *buf;      /* the bytes being parsed */
	size_t pos;        /* next record in buf */
	size_t end;        /* valid bytes in buf */
	uint64_t base;     /* file offset of buf[0] */
	uint64_t size;     /* file bytes */
	uint64_t next_off; /* file offset of the next chunk */
	size_t ahead_len;  /* bytes asked of the read in flight into mem[!cur] */
	bool ahead;        /* a read is in flight */
	uint64_t read;     /* bytes read so far (all files) */
};

/* Where and why a walk ended. */
struct walk_end {
	uint32_t seg;       /* segment of the tear; drop_from when none */
	uint64_t off;       /* offset of the tear in it */
	bool torn;          /* an invalid record (or garbage after the end) at seg/off */
	uint32_t drop_from; /* first segment not part of the log (n: none) */
};

struct walk;
typedef int walk_fn(void *ctx, struct walk *w, uint8_t *rec, const struct store_rec_hdr *h,
                    uint64_t off);

struct walk {
	struct seglist *sl;
	struct reader rd;
	uint32_t seg;  /* segment being read */
	uint64_t want; /* LSN of the next record */
	struct walk_end end;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	/* Word at a time where aligned: this runs over megabytes of a fresh segment. */
	while (n && ((uintptr_t)p & 7)) {
		if (*p++)
			return false;
		n--;
	}
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		if (w)
			return false;
	}
	while (n--)
		if (*p++)
			return false;
	return true;
}

/* ---- the segment list ---------------------------------------------------------------- */

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
	return v != 0;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;

	return x->first_lsn < y->first_lsn ? -1 : x->first_lsn > y->first_lsn;
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static void seglist_free(struct seglist *sl)
{
	if (sl->dirfd >= 0)
		close(sl->dirfd);
	free(sl->v);
	sl->v = NULL;
	sl->n = 0;
	sl->dirfd = -1;
}

/*
 * List and check the segments of dir. The last file, when it has no header
 * and nothing after it (a crash while creating it), is removed when fix is
 * set and ignored otherwise. Any other bad header: -EBADMSG.
 */
static int seglist_load(struct seglist *sl, const char *dir, bool fix)
{
	uint8_t *block = NULL;
	uint32_t cap = 0;
	struct dirent *de;
	DIR *d;
	int ret = 0, fd;

	memset(sl, 0, sizeof(*sl));
	sl->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sl->dirfd < 0)
		return -errno;
	fd = dup(sl->dirfd);
	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		goto out_free;
	}
	while ((de = readdir(d)) != NULL) {
		uint64_t lsn;

		if (!seg_name_parse(de->d_name, &lsn))
			continue;
		if (sl->n == cap) {
			struct seg *v;

			cap = cap ? 2 * cap : 64;
			v = realloc(sl->v, cap * sizeof(*v));
			if (!v) {
				ret = -ENOMEM;
				break;
			}
			sl->v = v;
		}
		memset(&sl->v[sl->n], 0, sizeof(sl->v[0]));
		sl->v[sl->n].first_lsn = lsn;
		memcpy(sl->v[sl->n].name, de->d_name, 25);
		sl->n++;
	}
	closedir(d);
	if (ret)
		goto out_free;
	if (sl->n)
		qsort(sl->v, sl->n, sizeof(sl->v[0]), seg_cmp);
	block = malloc(STORE_SEG_HDR + STORE_REC_HDR);
	if (!block) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (uint32_t i = 0; i < sl->n; i++) {
		struct seg *g = &sl->v[i];
		struct stat sb;
		ssize_t n;

		fd = openat(sl->dirfd, g->name, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			goto out_free;
		}
		if (fstat(fd, &sb) < 0) {
			ret = -errno;
			close(fd);
			goto out_free;
		}
		g->size = (uint64_t)sb.st_size;
		n = pread_full(fd, block, STORE_SEG_HDR + STORE_REC_HDR, 0);
		close(fd);
		if (n < 0) {
			ret = -EIO;
			goto out_free;
		}
		if (n >= (ssize_t)STORE_SEG_HDR && store_seg_hdr_decode(block, &g->h) == 0) {
			if (g->h.first_lsn != g->first_lsn) {
				ret = -EBADMSG;
				goto out_free;
			}
			continue;
		}
		/* No header: a leftover of a crash only if it is the newest and empty. */
		if (i + 1 != sl->n || !all_zero(block, (size_t)n)) {
			ret = -EBADMSG;
			goto out_free;
		}
		if (fix) {
			if (unlinkat(sl->dirfd, g->name, 0) < 0) {
				ret = -errno;
				goto out_free;
			}
			sl->removed = true;
		}
		sl->n--;
	}
	free(block);
	return 0;

out_free:
	free(block);
	seglist_free(sl);
	return ret;
}

/* ---- reading ----------------------------------------------------------------------- */

/* Start reading the next chunk into the buffer not being parsed. */
static void rd_ahead(struct reader *r)
{
	struct io_uring_sqe *sqe;
	uint64_t left = r->size - r->next_off;

	if (r->ahead || r->next_off >= r->size || !r->ring)
		return;
	r->ahead_len = left < r->cap ? (size_t)left : r->cap;
	sqe = io_uring_get_sqe(r->ring);
	if (!sqe)
		return; /* read synchronously when needed */
	io_uring_prep_read(sqe, r->fd, r->mem[r->cur ^ 1] + HEADROOM, (unsigned)r->ahead_len,
	                   r->next_off);
	if (io_uring_submit(r->ring) == 1)
		r->ahead = true;
}

/* The next chunk, in mem[!cur] + HEADROOM: bytes read (0 at the end) or -EIO. */
static ssize_t rd_chunk(struct reader *r)
{
	uint8_t *dst = r->mem[r->cur ^ 1] + HEADROOM;
	uint64_t left = r->size - r->next_off;
	struct io_uring_cqe *cqe;
	int res;

	if (!r->ahead) {
		size_t want = left < r->cap ? (size_t)left : r->cap;
		ssize_t n = want ? pread_full(r->fd, dst, want, r->next_off) : 0;

		return n < 0 ? -EIO : n;
	}
	for (;;) {
		res = io_uring_wait_cqe(r->ring, &cqe);
		if (res == -EINTR)
			continue;
		if (res < 0)
			return -EIO;
		res = cqe->res;
		io_uring_cqe_seen(r->ring, cqe);
		break;
	}
	r->ahead = false;
	if (res == -EAGAIN || res == -EINTR) {
		ssize_t n = pread_full(r->fd, dst, r->ahead_len, r->next_off);

		return n < 0 ? -EIO : n;
	}
	return res < 0 ? -EIO : res; /* a short read is fine: the rest comes next */
}

/* Keep at least a whole record's worth in buf, or what is left of the file. */
static int rd_fill(struct reader *r)
{
	while (r->end - r->pos < MAX_SPAN && r->base + r->end < r->size) {
		size_t keep = r->end - r->pos;
		ssize_t n = rd_chunk(r);
		uint8_t *nb;

		if (n < 0)
			return -EIO;
		if (n == 0) {
			r->size = r->base + r->end; /* shrank under us */
			break;
		}
		nb = r->mem[r->cur ^ 1] + HEADROOM - keep;
		memcpy(nb, r->buf + r->pos, keep);
		r->base += r->pos;
		r->buf = nb;
		r->pos = 0;
		r->end = keep + (size_t)n;
		r->cur ^= 1;
		r->next_off += (uint64_t)n;
		r->read += (uint64_t)n;
		rd_ahead(r);
	}
	return 0;
}

static int rd_open(struct reader *r, const struct seglist *sl, const struct seg *g)
{
	r->fd = openat(sl->dirfd, g->name, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		return -errno;
	posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	r->buf = r->mem[r->cur] + HEADROOM;
	r->base = r->next_off = STORE_SEG_HDR;
	r->pos = r->end = 0;
	r->size = g->size;
	rd_ahead(r);
	return 0;
}

static void rd_close(struct reader *r)
{
	struct io_uring_cqe *cqe;

	/* The read in flight lands in our buffer: wait for it before anything reuses it. */
	while (r->ahead) {
		int res = io_uring_wait_cqe(r->ring, &cqe);

		if (res == -EINTR)
			continue;
		if (res == 0)
			io_uring_cqe_seen(r->ring, cqe);
		r->ahead = false;
	}
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* 0 (a record at *rec, at file offset *off), -ENODATA, -EBADMSG or -EIO. */
static int rd_next(struct reader *r, uint64_t want, uint8_t **rec, struct store_rec_hdr *h,
                   uint64_t *off)
{
	int ret = rd_fill(r);

	if (ret)
		return ret;
	ret = store_rec_check(r->buf + r->pos, r->end - r->pos, want, h);
	if (ret)
		return ret;
	*rec = r->buf + r->pos;
	*off = r->base + r->pos;
	r->pos += store_rec_span(h->len);
	return 0;
}

/* Buffers for reads of cap bytes, with their own io_uring when it can be had. */
static int rd_init(struct reader *r, struct io_uring *ring, size_t cap)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->cap = cap;
	for (int i = 0; i < 2; i++) {
		r->mem[i] = aligned_alloc(IO_ALIGN, HEADROOM + cap);
		if (!r->mem[i])
			return -ENOMEM;
	}
	if (io_uring_queue_init(RING_DEPTH, ring, 0) == 0)
		r->ring = ring;
	return 0;
}

static void rd_fini(struct reader *r)
{
	rd_close(r);
	if (r->ring)
		io_uring_queue_exit(r->ring);
	r->ring = NULL;
	free(r->mem[0]);
	free(r->mem[1]);
	r->mem[0] = r->mem[1] = NULL;
}

/*
 * Walk the log from segment `from` on, calling fn per valid record. fn
 * returns 0 to go on, anything else to stop (returned). Returns 0 at the end
 * of the log (w->end says where and why), -ENOENT (a segment vanished) or
 * -EIO.
 */
static int walk_log(struct walk *w, uint32_t from, walk_fn *fn, void *ctx)
{
	struct seglist *sl = w->sl;
	int ret = 0;

	w->end = (struct walk_end){.seg = sl->n, .drop_from = sl->n};
	if (from >= sl->n)
		return 0;
	w->want = sl->v[from].first_lsn;
	for (w->seg = from; w->seg < sl->n; w->seg++) {
		struct store_rec_hdr h;
		uint8_t *rec;
		uint64_t off;

		if (sl->v[w->seg].first_lsn != w->want) {
			/* Not contiguous: the log ended with the segment before. */
			w->end.drop_from = w->seg;
			return 0;
		}
		ret = rd_open(&w->rd, sl, &sl->v[w->seg]);
		if (ret)
			return ret == -ENOENT ? -ENOENT : -EIO; /* ENOENT: retention removed it */
		for (;;) {
			ret = rd_next(&w->rd, w->want, &rec, &h, &off);
			if (ret)
				break;
			ret = fn(ctx, w, rec, &h, off);
			if (ret) {
				rd_close(&w->rd);
				return ret;
			}
			w->want++;
		}
		if (ret == -EIO) {
			rd_close(&w->rd);
			return -EIO;
		}
		if (ret == -ENODATA) {
			bool next_ok = w->seg + 1 < sl->n && sl->v[w->seg + 1].first_lsn == w->want;

			/* Bytes after the zero header of the last segment: a torn write that
			 * left a hole. Looked for in what was read anyway (a batch's worth). */
			if (next_ok || all_zero(w->rd.buf + w->rd.pos, w->rd.end - w->rd.pos)) {
				rd_close(&w->rd);
				continue;
			}
		}
		w->end.torn = true;
		w->end.seg = w->seg;
		w->end.off = w->rd.base + w->rd.pos;
		w->end.drop_from = w->seg + 1;
		rd_close(&w->rd);
		return 0;
	}
	return 0;
}

/*
 * The plaintext event of a valid record (opened in place when sealed).
 * 0, -EKEYREJECTED (cannot be opened: no key or the wrong one) or
 * -EBADMSG (an intact record that does not decode).
 */
static int rec_event(const struct walk *w, struct store_aead *aead, uint8_t *rec,
                     const struct store_rec_hdr *h, struct store_event *ev)
{
	uint8_t *p = rec + STORE_REC_HDR;
	uint32_t len = h->len;
	int ret;

	if (h->type == STORE_REC_SCRUBBED) {
		memset(ev, 0, sizeof(*ev));
		ev->type = STORE_REC_SCRUBBED;
		ev->lsn = h->lsn;
		return 0;
	}
	if (h->flags & STORE_RF_SEALED) {
		if (!aead || store_aead_open(aead, w->sl->v[w->seg].h.nonce_prefix, h->lsn, h->type,
		                             p, len) < 0)
			return -EKEYREJECTED;
		len -= STORE_TAG_LEN;
	}
	ret = store_event_decode(p, len, h->type, ev);
	if (ret)
		return ret;
	ev->lsn = h->lsn;
	return 0;
}

/* Part of a checkpoint: repeats what the records before it built. */
static bool ckpt_content(const struct store_rec_hdr *h, const struct store_event *ev)
{
	switch (h->type) {
	case STORE_REC_CKPT_BEGIN:
	case STORE_REC_CKPT_END:
	case STORE_REC_HISTORY:
		return true;
	case STORE_REC_OPENED:
	case STORE_REC_QUEUED:
	case STORE_REC_ASSIGNED:
	case STORE_REC_MSG_IN:
	case STORE_REC_MSG_OUT:
	case STORE_REC_ERASE:
	case STORE_REC_GW_ACK:
	case STORE_REC_AGENT_FIGS:
		return (ev->flags & STORE_EF_CKPT) != 0;
	default:
		return false;
	}
}

/* ---- recovery --------------------------------------------------------------------------- */

struct ckpt_probe {
	uint64_t begin_lsn;
	bool complete;
};

static int probe_rec(void *ctx, struct walk *w, uint8_t *rec, const struct store_rec_hdr *h,
                     uint64_t off)
{
	struct ckpt_probe *p = ctx;

	(void)w;
	(void)rec;
	(void)off;
	if (!p->begin_lsn) {
		if (h->type != STORE_REC_CKPT_BEGIN)
			return 1;
		p->begin_lsn = h->lsn;
		return 0;
	}
	if (h->type == STORE_REC_CKPT_BEGIN)
		return 1;
	if (h->type == STORE_REC_CKPT_END) {
		p->complete = true;
		return 1;
	}
	return 0;
}

/* The newest segment starting a complete checkpoint, or n. */
static int find_start(struct walk *w, uint32_t *start)
{
	for (uint32_t i = w->sl->n; i-- > 0;) {
		struct ckpt_probe p = {0};
		int ret;

		if (!(w->sl->v[i].h.flags & STORE_SF_CKPT))
			continue;
		ret = walk_log(w, i, probe_rec, &p);
		if (ret < 0)
			return -EIO;
		if (p.complete) {
			*start = i;
			return 0;
		}
	}
	*start = w->sl->n;
	return 0;
}

struct replay {
	struct store_state *st;
	struct store_aead *aead;
	struct store_recovery *rec;
	struct store_tail *tail;
	bool in_ckpt;           /* inside the checkpoint recovery started from */
	uint64_t begin;         /* its CKPT_BEGIN */
	struct store_held held; /* records appended while that checkpoint was written */
	uint8_t enc[STORE_EVENT_MAX];
	int err;
};

/* Hold ev (inside the starting checkpoint, not part of it) until its end. */
static int replay_defer(struct replay *r, const struct store_event *ev, uint64_t lsn)
{
	size_t n = store_event_encode(ev, r->enc);
	int ret;

	if (!n)
		return -EINVAL;
	ret = store_held_reserve(&r->held, store_held_span((uint32_t)n));
	if (!ret)
		store_held_push(&r->held, lsn, ev->type, r->enc, (uint32_t)n);
	return ret;
}

static int replay_held(void *ctx, uint64_t lsn, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct replay *r = ctx;
	struct store_event ev;

	if (store_event_decode(payload, len, type, &ev) != 0)
		return -EINVAL;
	ev.lsn = lsn;
	r->tail->bytes_since_ckpt += store_rec_span(len);
	return store_state_apply(r->st, &ev);
}

/* The starting checkpoint is complete: apply what was held, in LSN order. */
static int replay_deferred(struct replay *r)
{
	return store_held_drain(&r->held, 0, replay_held, r);
}

static int replay_rec(void *ctx, struct walk *w, uint8_t *rec, const struct store_rec_hdr *h,
                      uint64_t off)
{
	struct replay *r = ctx;
	struct store_event ev;
	int ret;

	(void)off;
	ret = rec_event(w, r->aead, rec, h, &ev);
	if (ret == -EKEYREJECTED) {
		/* Wrong key (or none): a configuration error, not a torn tail. */
		r->err = -EBADMSG;
		return 1;
	}
	if (!r->rec->first_lsn)
		r->rec->first_lsn = h->lsn;
	r->rec->last_lsn = h->lsn;
	r->rec->records++;
	if (ret)
		return 0; /* intact but not decodable: skipped, the log goes on */
	if (r->in_ckpt) {
		if (h->type == STORE_REC_CKPT_BEGIN)
			r->begin = h->lsn;
		if (r->begin && h->type != STORE_REC_CKPT_END && !ckpt_content(h, &ev)) {
			ret = replay_defer(r, &ev, h->lsn);
			return ret ? (r->err = ret, 1) : 0;
		}
		if (h->type == STORE_REC_CKPT_END) {
			r->in_ckpt = false;
			r->tail->last_ckpt_lsn = r->begin;
			r->tail->bytes_since_ckpt = 0;
			ret = store_state_apply(r->st, &ev);
			if (!ret)
				ret = replay_deferred(r);
			return ret ? (r->err = ret, 1) : 0;
		}
	} else if (ckpt_content(h, &ev)) {
		if (h->type == STORE_REC_CKPT_BEGIN && ev.session_id)
			ret = store_state_apply(r->st, &ev); /* only its highest session id */
		return ret ? (r->err = ret, 1) : 0;
	} else {
		r->tail->bytes_since_ckpt += store_rec_span(h->len);
	}
	ret = store_state_apply(r->st, &ev);
	if (ret) {
		r->err = ret;
		return 1;
	}
	return 0;
}

/* Zero a segment from off to its last nonzero byte; returns the bytes cut or -EIO. */
static int64_t cut_tail(struct seglist *sl, const struct seg *g, uint64_t off, struct reader *rd)
{
	uint8_t *b = rd->mem[0]; /* free: the walk is over */
	uint64_t nz_end = off, pos = off;
	int fd = openat(sl->dirfd, g->name, O_RDWR | O_CLOEXEC);
	int64_t ret;

	if (fd < 0)
		return -EIO;
	/* Find how far the garbage goes (a tear is rare: reading the rest is fine). */
	while (pos < g->size) {
		size_t want = g->size - pos < rd->cap ? (size_t)(g->size - pos) : rd->cap;
		ssize_t n = pread_full(fd, b, want, pos);

		if (n <= 0)
			break;
		for (ssize_t k = n; k > 0; k--)
			if (b[k - 1]) {
				nz_end = pos + (uint64_t)k;
				break;
			}
		pos += (uint64_t)n;
	}
	ret = (int64_t)(nz_end - off);
	if (nz_end > off &&
	    fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
	              (off_t)(nz_end - off)) < 0 &&
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
	              (off_t)(nz_end - off)) < 0) {
		memset(b, 0, rd->cap);
		for (pos = off; pos < nz_end;) {
			size_t n = nz_end - pos < rd->cap ? (size_t)(nz_end - pos) : rd->cap;
			ssize_t w = pwrite(fd, b, n, (off_t)pos);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				ret = -EIO;
				break;
			}
			pos += (uint64_t)w;
		}
	}
	if (ret >= 0 && fdatasync(fd) < 0)
		ret = -EIO;
	close(fd);
	return ret;
}

static void count_session(void *ctx, const struct store_session *s, const struct store_msg *b,
                          uint32_t nb)
{
	(void)s;
	(void)b;
	(void)nb;
	(*(uint32_t *)ctx)++;
}

int store_recover(const char *dir, struct store_aead *aead, struct store_state *st,
                  struct store_recovery *rec, struct store_tail *tail)
{
	struct store_recovery lrec = {0};
	struct store_tail ltail = {0};
	struct seglist sl;
	struct walk w = {.sl = &sl, .rd.fd = -1};
	struct replay r = {.st = st, .aead = aead, .held.max = DEFER_LIMIT};
	struct io_uring ring;
	uint64_t t0 = mono_ns();
	uint32_t start;
	int ret;

	if (!dir || !st)
		return -EINVAL;
	rec = rec ? rec : &lrec;
	tail = tail ? tail : &ltail;
	memset(rec, 0, sizeof(*rec));
	memset(tail, 0, sizeof(*tail));
	tail->next_lsn = 1;
	ret = seglist_load(&sl, dir, true);
	if (ret)
		return ret;
	ret = rd_init(&w.rd, &ring, RECOVER_BUF);
	if (ret)
		goto out_free_buf;
	ret = find_start(&w, &start);
	if (ret)
		goto out_free_buf;
	rec->from_checkpoint = start < sl.n;
	if (start == sl.n)
		start = 0;
	r.rec = rec;
	r.tail = tail;
	r.in_ckpt = rec->from_checkpoint;
	w.rd.read = 0;
	ret = walk_log(&w, start, replay_rec, &r);
	if (ret > 0)
		ret = r.err;
	else if (ret == -ENOENT)
		ret = -EIO;
	if (ret)
		goto out_free_buf;
	rec->segments = (w.end.torn ? w.end.seg + 1 : w.end.drop_from) - start;
	rec->bytes = w.rd.read;
	tail->next_lsn = sl.n ? w.want : 1;
	if (w.end.torn) {
		int64_t cut = cut_tail(&sl, &sl.v[w.end.seg], w.end.off, &w.rd);

		if (cut < 0) {
			ret = (int)cut;
			goto out_free_buf;
		}
		rec->torn_bytes = (uint64_t)cut;
	}
	for (uint32_t i = w.end.drop_from; i < sl.n; i++) {
		if (unlinkat(sl.dirfd, sl.v[i].name, 0) < 0 && errno != ENOENT) {
			ret = -EIO;
			goto out_free_buf;
		}
		rec->segments_dropped++;
		sl.removed = true;
	}
	if (sl.removed && fsync(sl.dirfd) < 0) {
		ret = -EIO;
		goto out_free_buf;
	}
	store_state_sessions(st, count_session, &rec->sessions_open);
	rec->customers = store_history_count(store_state_history(st));
	rec->elapsed_ns = mono_ns() - t0;

out_free_buf:
	free(r.held.buf);
	rd_fini(&w.rd);
	seglist_free(&sl);
	return ret;
}

/* ---- scan ------------------------------------------------------------------------------- */

struct scan {
	struct store_aead *aead;
	store_event_fn *fn;
	void *ctx;
	int ret;
};

static int scan_rec(void *ctx, struct walk *w, uint8_t *rec, const struct store_rec_hdr *h,
                    uint64_t off)
{
	struct scan *s = ctx;
	struct store_event ev;
	int ret;

	(void)off;
	ret = rec_event(w, s->aead, rec, h, &ev);
	if (ret == -EKEYREJECTED) {
		s->ret = -EBADMSG;
		return 1;
	}
	if (ret)
		return 0;
	s->ret = s->fn(s->ctx, &ev);
	return s->ret ? 1 : 0;
}

int store_scan(const char *dir, struct store_aead *aead, store_event_fn *fn, void *ctx)
{
	struct scan s = {.aead = aead, .fn = fn, .ctx = ctx};
	struct seglist sl;
	struct walk w = {.sl = &sl, .rd.fd = -1};
	struct io_uring ring;
	int ret;

	if (!dir || !fn)
		return -EINVAL;
	ret = seglist_load(&sl, dir, false);
	if (ret)
		return ret;
	ret = rd_init(&w.rd, &ring, RECOVER_BUF);
	if (!ret) {
		ret = walk_log(&w, 0, scan_rec, &s);
		if (ret > 0)
			ret = s.ret;
		else if (ret == -ENOENT)
			ret = -EIO;
	}
	rd_fini(&w.rd);
	seglist_free(&sl);
	return ret;
}

/* ---- transcripts -------------------------------------------------------------------------- */

struct transcript {
	struct store_aead *aead;
	uint64_t sid;
	uint64_t opened_lsn; /* 0: look for the session's OPENED */
	bool found;          /* its OPENED was seen */
	int count;
	int err;
	store_msg_fn *fn;
	void *ctx;
};

static int transcript_rec(void *ctx, struct walk *w, uint8_t *rec, const struct store_rec_hdr *h,
                          uint64_t off)
{
	struct transcript *t = ctx;
	struct store_event ev;
	struct store_msg m;
	int ret;

	(void)off;
	if (!t->found) {
		if (t->opened_lsn && h->lsn < t->opened_lsn)
			return 0;
		if (h->type != STORE_REC_OPENED) {
			if (!t->opened_lsn)
				return 0;
			t->err = -ENOENT; /* scrubbed, or not this session's start */
			return 1;
		}
		ret = rec_event(w, t->aead, rec, h, &ev);
		if (ret == -EKEYREJECTED) {
			t->err = -EIO;
			return 1;
		}
		if (ret == 0 && ev.session_id == t->sid && !(ev.flags & STORE_EF_CKPT)) {
			t->found = true;
			return 0;
		}
		if (!t->opened_lsn)
			return 0;
		t->err = -ENOENT;
		return 1;
	}
	if (h->type != STORE_REC_MSG_IN && h->type != STORE_REC_MSG_OUT &&
	    h->type != STORE_REC_ENDED)
		return 0;
	ret = rec_event(w, t->aead, rec, h, &ev);
	if (ret == -EKEYREJECTED) {
		t->err = -EIO;
		return 1;
	}
	if (ret || ev.session_id != t->sid)
		return 0;
	if (h->type == STORE_REC_ENDED)
		return 1;
	if (ev.flags & STORE_EF_CKPT)
		return 0; /* a checkpoint's copy of a message already given */
	m = (struct store_msg){.msg_id = ev.msg_id,
	                       .sent_ms = ev.ts_ms,
	                       .from_agent = h->type == STORE_REC_MSG_OUT,
	                       .agent = ev.agent,
	                       .text = ev.text,
	                       .attachment = ev.extra};
	t->fn(t->ctx, &m);
	t->count++;
	return 0;
}

int store_read_transcript(const char *dir, struct store_aead *aead, uint64_t session_id,
                          uint64_t opened_lsn, uint64_t opened_ms, store_msg_fn *fn, void *ctx)
{
	struct transcript t = {
	        .aead = aead, .sid = session_id, .opened_lsn = opened_lsn, .fn = fn, .ctx = ctx};
	struct io_uring ring;
	struct seglist sl;
	struct walk w = {.sl = &sl, .rd.fd = -1};
	uint32_t from = 0;
	int ret;

	if (!dir || !fn || !session_id)
		return -EINVAL;
	ret = seglist_load(&sl, dir, false);
	if (ret)
		return ret == -ENOMEM ? ret : (ret == -EBADMSG ? -EIO : ret);
	if (opened_lsn) {
		/* The last segment starting at or before it. */
		while (from + 1 < sl.n && sl.v[from + 1].first_lsn <= opened_lsn)
			from++;
		if (!sl.n || sl.v[from].first_lsn > opened_lsn) {
			ret = -ENOENT;
			goto out_free_list;
		}
	} else if (opened_ms) {
		/*
		 * No LSN (a session that ended since the start): from the
		 * segment before the last one created by then, since a segment
		 * is created a little before records go into it.
		 */
		while (from + 1 < sl.n && sl.v[from + 1].h.created_ms <= opened_ms)
			from++;
		if (from > 0)
			from--;
	}
	ret = rd_init(&w.rd, &ring, TRANSCRIPT_BUF);
	if (!ret) {
		ret = walk_log(&w, from, transcript_rec, &t);
		if (ret >= 0)
			ret = t.err ? t.err : (t.found ? t.count : -ENOENT);
	}
	rd_fini(&w.rd);
out_free_list:
	seglist_free(&sl);
	return ret;
}

/* ---- scrubbing ----------------------------------------------------------------------------- */

struct sidset {
	uint64_t *v; /* 0 empty */
	uint32_t mask, n;
};

static bool sidset_has(const struct sidset *s, uint64_t sid)
{
	if (!sid || !s->v)
		return false;
	for (uint32_t i = (uint32_t)(sid * UINT64_C(0x9e3779b97f4a7c15) >> 32) & s->mask;;
	     i = (i + 1) & s->mask) {
		if (s->v[i] == sid)
			return true;
		if (!s->v[i])
			return false;
	}
}

static int sidset_add(struct sidset *s, uint64_t sid)
{
	if (!sid || sidset_has(s, sid))
		return 0;
	if (!s->v || (s->n + 1) * 2 > s->mask + 1) {
		uint32_t cap = s->v ? (s->mask + 1) * 2 : 256;
		uint64_t *v = calloc(cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		for (uint32_t i = 0; s->v && i <= s->mask; i++) {
			uint32_t k = (uint32_t)(s->v[i] * UINT64_C(0x9e3779b97f4a7c15) >> 32) &
			             (cap - 1);

			if (!s->v[i])
				continue;
			while (v[k])
				k = (k + 1) & (cap - 1);
			v[k] = s->v[i];
		}
		free(s->v);
		s->v = v;
		s->mask = cap - 1;
	}
	for (uint32_t i = (uint32_t)(sid * UINT64_C(0x9e3779b97f4a7c15) >> 32) & s->mask;;
	     i = (i + 1) & s->mask)
		if (!s->v[i]) {
			s->v[i] = sid;
			break;
		}
	s->n++;
	return 0;
}

struct scrub {
	struct store_aead *aead;
	const struct store_str *cust;
	uint32_t nb_cust;
	struct sidset sids;
	uint32_t eligible; /* segments [0, eligible) may be rewritten */
	int *fds;          /* read-write descriptors of the touched ones, -1 none */
	int scrubbed;
	int err;
};

static bool cust_match(const struct scrub *s, struct store_str c)
{
	for (uint32_t i = 0; i < s->nb_cust; i++)
		if (c.len && s->cust[i].len == c.len && memcmp(s->cust[i].ptr, c.ptr, c.len) == 0)
			return true;
	return false;
}

/* Types that name the customer, and types that belong to a session. */
static bool names_customer(uint16_t type)
{
	return type == STORE_REC_OPENED || type == STORE_REC_ENDED || type == STORE_REC_HISTORY ||
	       type == STORE_REC_LEFT_MESSAGE || type == STORE_REC_NOTES;
}

static bool of_session(uint16_t type)
{
	return type != STORE_REC_ERASE && type != STORE_REC_AGENT_STATE &&
	       type != STORE_REC_CKPT_BEGIN && type != STORE_REC_CKPT_END &&
	       type != STORE_REC_GW_ACK && type != STORE_REC_SCRUBBED &&
	       type != STORE_REC_AGENT_FIGS;
}

static int scrub_collect(void *ctx, struct walk *w, uint8_t *rec, const struct store_rec_hdr *h,
                         uint64_t off)
{
	struct scrub *s = ctx;
	struct store_event ev;

	(void)off;
	if (!names_customer(h->type) || rec_event(w, s->aead, rec, h, &ev))
		return 0;
	if (cust_match(s, ev.customer) && sidset_add(&s->sids, ev.session_id) < 0) {
		s->err = -ENOMEM;
		return 1;
	}
	return 0;
}

static int scrub_rec(void *ctx, struct walk *w, uint8_t *rec, const struct store_rec_hdr *h,
                     uint64_t off)
{
	struct scrub *s = ctx;
	struct store_event ev;
	size_t span = store_rec_span(h->len);
	int *fd;

	if (w->seg >= s->eligible)
		return 1;
	if (!of_session(h->type) || rec_event(w, s->aead, rec, h, &ev))
		return 0;
	if (!sidset_has(&s->sids, ev.session_id) &&
	    !(names_customer(h->type) && cust_match(s, ev.customer)))
		return 0;
	fd = &s->fds[w->seg];
	if (*fd < 0) {
		*fd = openat(w->sl->dirfd, w->sl->v[w->seg].name, O_RDWR | O_CLOEXEC);
		if (*fd < 0) {
			s->err = -EIO;
			return 1;
		}
	}
	memset(rec + STORE_REC_HDR, 0, h->len);
	store_rec_finish(rec, STORE_REC_SCRUBBED, 0, h->lsn, h->len);
	for (size_t done = 0; done < span;) {
		ssize_t n = pwrite(*fd, rec + done, span - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			s->err = -EIO;
			return 1;
		}
		done += (size_t)n;
	}
	s->scrubbed++;
	return 0;
}

int store_scrub(const char *dir, struct store_aead *aead, uint64_t below_lsn,
                const struct store_str *customers, uint32_t nb_customers)
{
	struct scrub s = {.aead = aead, .cust = customers, .nb_cust = nb_customers};
	struct seglist sl;
	struct walk w = {.sl = &sl, .rd.fd = -1};
	struct io_uring ring;
	int ret;

	if (!dir || (nb_customers && !customers))
		return -EINVAL;
	if (!nb_customers)
		return 0;
	ret = seglist_load(&sl, dir, false);
	if (ret)
		return ret == -ENOMEM ? ret : -EIO;
	while (s.eligible + 1 < sl.n && sl.v[s.eligible + 1].first_lsn <= below_lsn)
		s.eligible++;
	if (!s.eligible)
		goto out_free_list;
	s.fds = malloc(s.eligible * sizeof(*s.fds));
	ret = s.fds ? rd_init(&w.rd, &ring, RECOVER_BUF) : -ENOMEM;
	if (ret)
		goto out_free;
	for (uint32_t i = 0; i < s.eligible; i++)
		s.fds[i] = -1;
	/* Sessions are found in the whole log: an ENDED may follow its messages by segments. */
	ret = walk_log(&w, 0, scrub_collect, &s);
	if (ret >= 0 && !s.err)
		ret = walk_log(&w, 0, scrub_rec, &s);
	if (ret > 0)
		ret = 0;
	if (!ret && s.err)
		ret = s.err;
	for (uint32_t i = 0; i < s.eligible; i++) {
		if (s.fds[i] < 0)
			continue;
		if (fdatasync(s.fds[i]) < 0 && !ret)
			ret = -EIO;
		close(s.fds[i]);
	}
	if (!ret)
		ret = s.scrubbed;
	else if (ret != -ENOMEM)
		ret = -EIO;
out_free:
	rd_fini(&w.rd);
	free(s.fds);
	free(s.sids.v);
out_free_list:
	seglist_free(&sl);
	return ret;
}
