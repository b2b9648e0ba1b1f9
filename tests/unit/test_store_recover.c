/* SPDX-License-Identifier: MIT */
/*
 * store_recover: logs written by hand (segment headers and records) and
 * read back: clean logs, torn tails, garbage, corrupt headers, checkpoints
 * complete and not, sealed records, erasure and scrubbing, transcripts,
 * scans. Each test works in its own directory under /tmp.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store_pvt.h"

#define SEG_BYTES (64u << 10)
#define MAX_RECS  4096

static struct store_str S(const char *s) {
	return (struct store_str){s, (uint32_t)strlen(s)};
}

/* ---- a hand-written log ------------------------------------------------------------ */

struct rec_pos {
	uint64_t seg_first;
	uint64_t off;
	uint32_t span;
};

struct tlog {
	char dir[64];
	int fd;
	uint64_t seg_first;
	uint64_t off;
	uint64_t lsn; /* the next one */
	uint64_t seg_bytes;
	uint32_t nonce;
	struct store_aead *aead;
	struct rec_pos pos[MAX_RECS];
	uint8_t buf[STORE_REC_HDR + STORE_EVENT_MAX + STORE_TAG_LEN + 8];
};

static void seg_path(const struct tlog *t, uint64_t first, char *out, size_t n)
{
	char name[32];

	store_seg_name(first, name);
	snprintf(out, n, "%s/%s", t->dir, name);
}

static void tl_close(struct tlog *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

static void tl_seg(struct tlog *t, uint32_t flags)
{
	uint8_t hdr[STORE_SEG_HDR];
	struct store_seg_hdr h = {.version = STORE_SEG_VERSION,
	                          .hdr_bytes = STORE_SEG_HDR,
	                          .segment_bytes = t->seg_bytes,
	                          .first_lsn = t->lsn,
	                          .created_ms = 1700000000000ull,
	                          .nonce_prefix = ++t->nonce * 0x01000193u,
	                          .flags = flags | (t->aead ? STORE_SF_SEALED : 0)};
	char path[128];

	tl_close(t);
	memcpy(h.magic, STORE_SEG_MAGIC, 8);
	seg_path(t, t->lsn, path, sizeof(path));
	t->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(t->fd >= 0);
	assert_int_equal(ftruncate(t->fd, (off_t)t->seg_bytes), 0);
	store_seg_hdr_encode(&h, hdr);
	assert_int_equal(pwrite(t->fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	t->seg_first = t->lsn;
	t->off = STORE_SEG_HDR;
}

static uint64_t tl_add(struct tlog *t, const struct store_event *ev)
{
	size_t n = store_event_encode(ev, t->buf + STORE_REC_HDR);
	uint16_t flags = 0;
	size_t span;

	assert_true(n > 0);
	assert_true(t->lsn < MAX_RECS);
	if (t->aead) {
		assert_int_equal(store_aead_seal(t->aead, t->nonce * 0x01000193u, t->lsn, ev->type,
		                                 t->buf + STORE_REC_HDR, (uint32_t)n),
		                 0);
		n += STORE_TAG_LEN;
		flags = STORE_RF_SEALED;
	}
	store_rec_finish(t->buf, ev->type, flags, t->lsn, (uint32_t)n);
	span = store_rec_span((uint32_t)n);
	assert_true(t->off + span <= t->seg_bytes);
	assert_int_equal(pwrite(t->fd, t->buf, span, (off_t)t->off), (ssize_t)span);
	t->pos[t->lsn] = (struct rec_pos){t->seg_first, t->off, (uint32_t)span};
	t->off += span;
	return t->lsn++;
}

static uint64_t tl_ev(struct tlog *t, struct store_event ev)
{
	return tl_add(t, &ev);
}

static int tl_ckpt_fn(void *ctx, const struct store_event *ev)
{
	tl_add(ctx, ev);
	return 0;
}

/* Overwrite bytes of the file holding record lsn, at offset delta into the record. */
static void tl_poke(struct tlog *t, uint64_t lsn, uint32_t delta, const void *p, size_t n)
{
	char path[128];
	int fd;

	seg_path(t, t->pos[lsn].seg_first, path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, p, n, (off_t)(t->pos[lsn].off + delta)), (ssize_t)n);
	close(fd);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat sb;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	assert_int_equal(fstat(fd, &sb), 0);
	b = malloc((size_t)sb.st_size + 1);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*len = (size_t)sb.st_size;
	return b;
}

static bool seg_exists(const struct tlog *t, uint64_t first)
{
	char path[128];

	seg_path(t, first, path, sizeof(path));
	return access(path, F_OK) == 0;
}

static bool seg_contains(const struct tlog *t, uint64_t first, const char *needle)
{
	char path[128];
	size_t len;
	uint8_t *b;
	bool found;

	seg_path(t, first, path, sizeof(path));
	b = slurp(path, &len);
	assert_non_null(b);
	found = memmem(b, len, needle, strlen(needle)) != NULL;
	free(b);
	return found;
}

static int setup(void **state)
{
	struct tlog *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	strcpy(t->dir, "/tmp/store_recover.XXXXXX");
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	t->fd = -1;
	t->lsn = 1;
	t->seg_bytes = SEG_BYTES;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tlog *t = *state;
	struct dirent *de;
	DIR *d;

	tl_close(t);
	d = opendir(t->dir);
	if (d) {
		while ((de = readdir(d)) != NULL) {
			char path[512];

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", t->dir, de->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(t->dir);
	store_aead_destroy(t->aead);
	free(t);
	return 0;
}

/* ---- events --------------------------------------------------------------------------- */

static struct store_event ev_opened(uint64_t sid, const char *cust, const char *question)
{
	return (struct store_event){.type = STORE_REC_OPENED,
	                            .session_id = sid,
	                            .ts_ms = 1000 + sid,
	                            .customer = S(cust),
	                            .skill = S("presale"),
	                            .text = S(question)};
}

static struct store_event ev_queued(uint64_t sid)
{
	return (struct store_event){.type = STORE_REC_QUEUED,
	                            .session_id = sid,
	                            .skill = S("presale"),
	                            .ref = 1000 + sid};
}

static struct store_event ev_msg(uint64_t sid, uint64_t msg_id, const char *text)
{
	return (struct store_event){.type = msg_id % 2 ? STORE_REC_MSG_IN : STORE_REC_MSG_OUT,
	                            .session_id = sid,
	                            .msg_id = msg_id,
	                            .ts_ms = 2000 + msg_id,
	                            .agent = msg_id % 2 ? S("") : S("agent-1"),
	                            .text = S(text)};
}

static struct store_event ev_ended(uint64_t sid, const char *cust, const char *notes)
{
	return (struct store_event){.type = STORE_REC_ENDED,
	                            .session_id = sid,
	                            .customer = S(cust),
	                            .skill = S("presale"),
	                            .text = S(notes)};
}

/* ---- looking at a recovered state ------------------------------------------------------- */

struct sess_info {
	uint32_t n;
	uint64_t sid[16];
	uint32_t nb_backlog[16];
	char last_text[16][64];
};

static void info_fn(void *ctx, const struct store_session *s, const struct store_msg *b,
                    uint32_t nb)
{
	struct sess_info *in = ctx;

	assert_true(in->n < 16);
	in->sid[in->n] = s->session_id;
	in->nb_backlog[in->n] = nb;
	in->last_text[in->n][0] = '\0';
	if (nb) {
		assert_true(b[nb - 1].text.len < 64);
		memcpy(in->last_text[in->n], b[nb - 1].text.ptr, b[nb - 1].text.len);
		in->last_text[in->n][b[nb - 1].text.len] = '\0';
	}
	in->n++;
}

static int find_sess(const struct sess_info *in, uint64_t sid)
{
	for (uint32_t i = 0; i < in->n; i++)
		if (in->sid[i] == sid)
			return (int)i;
	return -1;
}

static int recover(struct tlog *t, struct store_aead *aead, struct store_state **st,
                   struct store_recovery *rec, struct store_tail *tail)
{
	int ret;

	tl_close(t);
	*st = store_state_create(100, 16);
	assert_non_null(*st);
	ret = store_recover(t->dir, aead, *st, rec, tail);
	return ret;
}

/* A small log over two segments: session 1 ended, session 2 open. Returns the last LSN. */
static uint64_t write_basic(struct tlog *t)
{
	tl_seg(t, 0);
	tl_ev(t, ev_opened(1, "c1", "q1"));
	tl_ev(t, ev_queued(1));
	tl_ev(t, ev_msg(1, 1, "hello"));
	tl_ev(t, ev_msg(1, 2, "hi there"));
	tl_seg(t, 0);
	tl_ev(t, ev_opened(2, "c2", "q2"));
	tl_ev(t, ev_queued(2));
	tl_ev(t, ev_msg(2, 1, "second"));
	return tl_ev(t, ev_ended(1, "c1", "solved"));
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_empty_dir(void **state)
{
	struct tlog *t = *state;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;

	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, 1);
	assert_int_equal(tail.last_ckpt_lsn, 0);
	assert_int_equal(rec.records, 0);
	assert_int_equal(rec.segments, 0);
	store_state_destroy(st);
}

static void test_clean(void **state)
{
	struct tlog *t = *state;
	uint64_t last = write_basic(t);
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	struct sess_info in = {0};

	for (int round = 0; round < 2; round++) {
		assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
		assert_int_equal(rec.records, last);
		assert_int_equal(rec.first_lsn, 1);
		assert_int_equal(rec.last_lsn, last);
		assert_int_equal(rec.segments, 2);
		assert_int_equal(rec.torn_bytes, 0);
		assert_int_equal(rec.segments_dropped, 0);
		assert_int_equal(rec.sessions_open, 1);
		assert_int_equal(rec.customers, 1);
		assert_false(rec.from_checkpoint);
		assert_true(rec.bytes > 0);
		assert_int_equal(tail.next_lsn, last + 1);
		assert_true(tail.bytes_since_ckpt > 0);
		memset(&in, 0, sizeof(in));
		store_state_sessions(st, info_fn, &in);
		assert_int_equal(in.n, 1);
		assert_int_equal(in.sid[0], 2);
		assert_string_equal(in.last_text[0], "second");
		store_state_destroy(st);
	}
}

/* The last record of the log cut half-way: it goes, the log ends before it. */
static void test_torn_tail_cut(void **state)
{
	struct tlog *t = *state;
	uint64_t last = write_basic(t);
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	uint8_t zero[512] = {0};
	uint32_t span = t->pos[last].span;
	char path[128];
	size_t len;
	uint8_t *b;

	tl_poke(t, last, span / 2, zero, span - span / 2);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, last);
	assert_int_equal(rec.last_lsn, last - 1);
	assert_true(rec.torn_bytes > 0 && rec.torn_bytes <= span / 2);
	assert_int_equal(rec.segments_dropped, 0);
	assert_int_equal(rec.sessions_open, 2); /* session 1 did not end */
	store_state_destroy(st);
	/* the torn bytes are zero now */
	seg_path(t, t->pos[last].seg_first, path, sizeof(path));
	b = slurp(path, &len);
	assert_non_null(b);
	for (size_t i = t->pos[last].off; i < len; i++)
		assert_int_equal(b[i], 0);
	free(b);
	/* a second recovery finds a clean log */
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, last);
	assert_int_equal(rec.torn_bytes, 0);
	assert_int_equal(rec.records, last - 1);
	store_state_destroy(st);
}

/* A flipped byte in a segment's last record: the log ends there, later segments go. */
static void test_torn_flip_drops_later(void **state)
{
	struct tlog *t = *state;
	uint64_t last = write_basic(t), seg2 = t->seg_first, seg3, bad = seg2 - 1;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	uint8_t x = 0x5a;

	tl_seg(t, 0);
	seg3 = t->seg_first;
	tl_ev(t, ev_msg(2, 3, "third segment"));
	tl_poke(t, bad, STORE_REC_HDR + 3, &x, 1);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, bad);
	assert_int_equal(rec.records, bad - 1);
	assert_int_equal(rec.segments_dropped, 2);
	assert_true(rec.torn_bytes > 0);
	assert_false(seg_exists(t, seg2));
	assert_false(seg_exists(t, seg3));
	assert_true(seg_exists(t, 1));
	store_state_destroy(st);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, bad);
	assert_int_equal(rec.torn_bytes, 0);
	assert_int_equal(rec.segments_dropped, 0);
	store_state_destroy(st);
	(void)last;
}

/* Garbage in the middle of a segment ends the log there. */
static void test_garbage_middle(void **state)
{
	struct tlog *t = *state;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	uint8_t junk[40];
	char path[128];
	size_t len;
	uint8_t *b;

	tl_seg(t, 0);
	tl_ev(t, ev_opened(1, "c1", "q"));
	for (uint64_t m = 1; m <= 20; m++)
		tl_ev(t, ev_msg(1, m, "some message text"));
	memset(junk, 0xab, sizeof(junk));
	tl_poke(t, 10, 0, junk, sizeof(junk));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, 10);
	assert_int_equal(rec.records, 9);
	assert_true(rec.torn_bytes >= t->pos[21].off + t->pos[21].span - t->pos[10].off - 8);
	store_state_destroy(st);
	seg_path(t, 1, path, sizeof(path));
	b = slurp(path, &len);
	for (size_t i = t->pos[10].off; i < len; i++)
		assert_int_equal(b[i], 0);
	free(b);
}

/* Bytes after the zero header that ends the last segment: a hole left by a torn write. */
static void test_garbage_after_end(void **state)
{
	struct tlog *t = *state;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	uint8_t zero[4096] = {0}, junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};

	tl_seg(t, 0);
	tl_ev(t, ev_opened(1, "c1", "q"));
	for (uint64_t m = 1; m <= 5; m++)
		tl_ev(t, ev_msg(1, m, "text"));
	/* record 4 lost (zero), record 5 reached the disk */
	tl_poke(t, 4, 0, zero, t->pos[4].span);
	tl_poke(t, 6, t->pos[6].span, junk, sizeof(junk));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, 4);
	assert_true(rec.torn_bytes > 0);
	store_state_destroy(st);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, 4);
	assert_int_equal(rec.torn_bytes, 0);
	store_state_destroy(st);
}

/* A segment whose last record ends less than a record header before its end. */
static void test_short_zero_tail(void **state)
{
	struct tlog *t = *state;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	char *text = malloc(4096);
	struct store_event ev = ev_msg(1, 1, "");

	assert_non_null(text);
	memset(text, 'z', 4096);
	t->seg_bytes = 8192;
	tl_seg(t, 0);
	tl_ev(t, ev_opened(1, "c1", "q"));
	/* fill up to 16 bytes before the end */
	ev.text = (struct store_str){text, (uint32_t)(8192 - 16 - t->off - STORE_REC_HDR - 60)};
	tl_add(t, &ev);
	assert_int_equal(t->off, 8192 - 16);
	tl_seg(t, 0);
	tl_ev(t, ev_msg(1, 2, "next segment"));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(rec.records, 3);
	assert_int_equal(rec.torn_bytes, 0);
	assert_int_equal(rec.segments_dropped, 0);
	assert_int_equal(tail.next_lsn, 4);
	store_state_destroy(st);
	free(text);
}

static void test_corrupt_header(void **state)
{
	struct tlog *t = *state;
	uint64_t seg2;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	char p1[128], p2[128];
	size_t l1, l2, m1, m2;
	uint8_t *a1, *a2, *b1, *b2;
	uint8_t x = 0xff;
	int fd;

	write_basic(t);
	seg2 = t->seg_first;
	tl_close(t);
	seg_path(t, 1, p1, sizeof(p1));
	seg_path(t, seg2, p2, sizeof(p2));
	fd = open(p2, O_RDWR);
	assert_int_equal(pwrite(fd, &x, 1, 30), 1);
	close(fd);
	a1 = slurp(p1, &l1);
	a2 = slurp(p2, &l2);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), -EBADMSG);
	store_state_destroy(st);
	/* nothing touched */
	b1 = slurp(p1, &m1);
	b2 = slurp(p2, &m2);
	assert_int_equal(l1, m1);
	assert_int_equal(l2, m2);
	assert_memory_equal(a1, b1, l1);
	assert_memory_equal(a2, b2, l2);
	free(a1);
	free(a2);
	free(b1);
	free(b2);
	assert_int_equal(store_scan(t->dir, NULL, tl_ckpt_fn, t), -EBADMSG);
}

/* A segment file without a header, left by a crash while creating it. */
static void test_headerless_leftover(void **state)
{
	struct tlog *t = *state;
	uint64_t last = write_basic(t);
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	char path[128];
	int fd;

	seg_path(t, last + 1, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SEG_BYTES), 0); /* zero-filled, no header yet */
	close(fd);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, last + 1);
	assert_false(seg_exists(t, last + 1));
	store_state_destroy(st);
	/* not the newest: that is damage, not a leftover */
	seg_path(t, 2, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT, 0644);
	close(fd);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), -EBADMSG);
	store_state_destroy(st);
	unlink(path);
}

/* A checkpoint cut short by a crash: everything but its CKPT_END. */
static int tl_ckpt_cut_fn(void *ctx, const struct store_event *ev)
{
	if (ev->type != STORE_REC_CKPT_END)
		tl_add(ctx, ev);
	return 0;
}

/* Write st as a checkpoint into the log, complete or not. */
static void write_ckpt(struct tlog *t, const struct store_state *st, bool complete)
{
	assert_int_equal(
	        store_state_checkpoint(st, 5000, complete ? tl_ckpt_fn : tl_ckpt_cut_fn, t), 0);
}

static void apply_all(struct store_state *st, const struct store_event *evs, unsigned n,
                      uint64_t *lsn)
{
	for (unsigned i = 0; i < n; i++) {
		struct store_event e = evs[i];

		e.lsn = ++*lsn;
		assert_int_equal(store_state_apply(st, &e), 0);
	}
}

/* Write evs into the log and apply them to the live state st. */
static void tl_add_live(struct tlog *t, struct store_state *st, const struct store_event *evs,
                        unsigned n, uint64_t *lsn)
{
	for (unsigned i = 0; i < n; i++)
		tl_add(t, &evs[i]);
	apply_all(st, evs, n, lsn);
}

static void test_checkpoint_start(void **state)
{
	struct tlog *t = *state;
	struct store_state *live = store_state_create(100, 16), *st;
	struct store_recovery rec;
	struct store_tail tail;
	struct sess_info in = {0};
	uint64_t lsn = 0, ckpt;
	struct store_past p[STORE_HISTORY_DEPTH];
	const struct store_event evs[] = {
	        ev_opened(1, "c1", "q1"), ev_queued(1),
	        ev_msg(1, 1, "m1"),       ev_opened(3, "c3", "q3"),
	        ev_ended(3, "c3", "n3"),
	};

	assert_non_null(live);
	tl_seg(t, 0);
	for (unsigned i = 0; i < 5; i++)
		tl_add(t, &evs[i]);
	/* a session the checkpoint does not hold: proves the old segment is not replayed */
	tl_ev(t, ev_opened(99, "ghost", "boo"));
	apply_all(live, evs, 5, &lsn);
	tl_seg(t, STORE_SF_CKPT);
	ckpt = t->seg_first;
	write_ckpt(t, live, true);
	tl_ev(t, ev_msg(1, 2, "after checkpoint"));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_true(rec.from_checkpoint);
	assert_int_equal(rec.first_lsn, ckpt);
	assert_int_equal(rec.segments, 1);
	assert_int_equal(tail.last_ckpt_lsn, ckpt);
	assert_int_equal(tail.next_lsn, t->lsn);
	assert_true(tail.bytes_since_ckpt > 0 && tail.bytes_since_ckpt <= 256);
	store_state_sessions(st, info_fn, &in);
	assert_int_equal(in.n, 1);
	assert_int_equal(in.sid[0], 1);
	assert_int_equal(find_sess(&in, 99), -1);
	assert_int_equal(in.nb_backlog[0], 2);
	assert_string_equal(in.last_text[0], "after checkpoint");
	assert_int_equal(store_history_get(store_state_history(st), S("c3"), p), 1);
	assert_int_equal(p[0].opened_lsn, 4); /* the original OPENED, not the checkpoint's */
	assert_int_equal(store_state_max_session(st), 3);
	store_state_destroy(st);
	store_state_destroy(live);
}

/* The newest checkpoint is incomplete: recovery starts before it, and its copies count once. */
static void test_checkpoint_incomplete(void **state)
{
	struct tlog *t = *state;
	struct store_state *live = store_state_create(100, 16), *st;
	struct store_recovery rec;
	struct store_tail tail;
	struct sess_info in = {0};
	struct store_past p[STORE_HISTORY_DEPTH];
	uint64_t lsn = 0, first_ckpt;
	const struct store_event evs[] = {
	        ev_opened(1, "c1", "q1"), ev_queued(1),
	        ev_msg(1, 1, "m1"),       ev_msg(1, 2, "m2"),
	        ev_opened(3, "c3", "q3"), ev_ended(3, "c3", "n3"),
	};

	assert_non_null(live);
	/* 1: records; 2: a complete checkpoint and records; 3: a cut checkpoint;
	 * 4: records after a restart */
	tl_seg(t, 0);
	tl_add_live(t, live, evs, 4, &lsn);
	tl_seg(t, STORE_SF_CKPT);
	first_ckpt = t->seg_first;
	write_ckpt(t, live, true);
	tl_add_live(t, live, evs + 4, 2, &lsn);
	tl_seg(t, STORE_SF_CKPT);
	write_ckpt(t, live, false);
	tl_seg(t, 0);
	tl_ev(t, ev_msg(1, 3, "m3"));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_true(rec.from_checkpoint);
	assert_int_equal(rec.first_lsn, first_ckpt);
	assert_int_equal(tail.last_ckpt_lsn, first_ckpt);
	assert_int_equal(tail.next_lsn, t->lsn);
	store_state_sessions(st, info_fn, &in);
	assert_int_equal(in.n, 1);
	assert_int_equal(in.nb_backlog[0], 3); /* m1 m2 m3: the cut checkpoint's copies not again */
	assert_string_equal(in.last_text[0], "m3");
	assert_int_equal(store_history_get(store_state_history(st), S("c3"), p), 1);
	store_state_destroy(st);

	store_state_destroy(live);
}

/*
 * A checkpoint written while appends went on: live records between its
 * CKPT_BEGIN and CKPT_END (as the writer puts them) come after the state it
 * holds, so they are applied after it, even those about a session whose
 * checkpoint copy comes later, and a live GW_ACK is not undone by the
 * checkpoint's older copy.
 */
struct interleave {
	struct tlog *t;
	unsigned n;
};

static void gw_fn(void *ctx, uint32_t gw, uint64_t epoch, uint64_t ack)
{
	uint64_t *out = ctx;

	(void)epoch;
	if (gw == 1)
		*out = ack;
}

static int tl_interleave_fn(void *ctx, const struct store_event *ev)
{
	struct interleave *in = ctx;

	tl_add(in->t, ev);
	if (++in->n == 1) {
		/* right after CKPT_BEGIN: before the copies of sessions 1 and 3 */
		tl_ev(in->t, ev_msg(1, 2, "during the checkpoint"));
		tl_ev(in->t, (struct store_event){
		                     .type = STORE_REC_GW_ACK, .gw = 1, .ref = 1, .msg_id = 50});
		tl_ev(in->t, ev_opened(5, "c5", "q5"));
		tl_ev(in->t, ev_queued(5));
		tl_ev(in->t, ev_ended(1, "c1", "closed meanwhile"));
	}
	return 0;
}

static void test_checkpoint_interleaved(void **state)
{
	struct tlog *t = *state;
	struct store_state *live = store_state_create(100, 16), *st;
	struct interleave in = {.t = t};
	struct store_recovery rec;
	struct store_tail tail;
	struct sess_info si = {0};
	struct store_past p[STORE_HISTORY_DEPTH];
	uint64_t lsn = 0, ack = 0;
	const struct store_event evs[] = {
	        ev_opened(1, "c1", "q1"),
	        ev_queued(1),
	        ev_msg(1, 1, "m1"),
	        (struct store_event){.type = STORE_REC_GW_ACK, .gw = 1, .ref = 1, .msg_id = 10},
	        ev_opened(3, "c3", "q3"),
	        ev_queued(3),
	};

	assert_non_null(live);
	tl_seg(t, 0);
	tl_add_live(t, live, evs, 6, &lsn);
	tl_seg(t, STORE_SF_CKPT);
	assert_int_equal(store_state_checkpoint(live, 5000, tl_interleave_fn, &in), 0);
	tl_ev(t, ev_msg(3, 1, "after"));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_true(rec.from_checkpoint);
	store_state_sessions(st, info_fn, &si);
	assert_int_equal(si.n, 2); /* 1 ended meanwhile; 3 and 5 open */
	assert_int_equal(find_sess(&si, 1), -1);
	assert_true(find_sess(&si, 5) >= 0);
	assert_string_equal(si.last_text[find_sess(&si, 3)], "after");
	assert_int_equal(store_history_get(store_state_history(st), S("c1"), p), 1);
	assert_string_equal(p[0].notes, "closed meanwhile");
	store_state_gw_acks(st, gw_fn, &ack);
	assert_int_equal(ack, 50);
	assert_int_equal(store_state_max_session(st), 5);
	/* the live records count towards the next checkpoint */
	assert_true(tail.bytes_since_ckpt > 0);
	store_state_destroy(st);
	store_state_destroy(live);
}

static void test_checkpoint_none_complete(void **state)
{
	struct tlog *t = *state;
	struct store_state *live = store_state_create(100, 16), *st;
	struct store_recovery rec;
	struct store_tail tail;
	struct sess_info in = {0};
	uint64_t lsn = 0;
	const struct store_event evs[] = {
	        ev_opened(1, "c1", "q1"), ev_queued(1),
	        ev_msg(1, 1, "m1"),       ev_msg(1, 2, "m2"),
	        ev_opened(3, "c3", "q3"), ev_ended(3, "c3", "n3"),
	};

	assert_non_null(live);
	tl_seg(t, 0);
	tl_add_live(t, live, evs, 6, &lsn);
	tl_seg(t, STORE_SF_CKPT);
	write_ckpt(t, live, false);
	tl_seg(t, 0);
	tl_ev(t, ev_msg(1, 3, "m3"));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_false(rec.from_checkpoint);
	assert_int_equal(rec.first_lsn, 1);
	assert_int_equal(tail.last_ckpt_lsn, 0);
	assert_int_equal(rec.segments, 3);
	store_state_sessions(st, info_fn, &in);
	assert_int_equal(in.n, 1);
	assert_int_equal(in.nb_backlog[0], 3);
	assert_int_equal(rec.customers, 1);
	store_state_destroy(st);
	store_state_destroy(live);
}

static void test_sealed(void **state)
{
	struct tlog *t = *state;
	uint8_t key[32], other[32];
	struct store_aead *wrong;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	uint64_t last;
	char path[128];
	size_t l1, l2;
	uint8_t *a, *b;

	for (int i = 0; i < 32; i++) {
		key[i] = (uint8_t)(i * 3);
		other[i] = (uint8_t)(i * 5);
	}
	t->aead = store_aead_create(key);
	wrong = store_aead_create(other);
	assert_non_null(t->aead);
	assert_non_null(wrong);
	last = write_basic(t);
	assert_false(seg_contains(t, 1, "hello"));
	assert_int_equal(recover(t, t->aead, &st, &rec, &tail), 0);
	assert_int_equal(rec.records, last);
	assert_int_equal(rec.sessions_open, 1);
	assert_int_equal(rec.customers, 1);
	store_state_destroy(st);

	seg_path(t, 1, path, sizeof(path));
	a = slurp(path, &l1);
	assert_int_equal(recover(t, wrong, &st, &rec, &tail), -EBADMSG);
	store_state_destroy(st);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), -EBADMSG);
	store_state_destroy(st);
	b = slurp(path, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(a, b, l1); /* a key error is not a tear: nothing cut */
	free(a);
	free(b);
	assert_int_equal(recover(t, t->aead, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, last + 1);
	store_state_destroy(st);
	store_aead_destroy(wrong);
}

static void test_erase_tombstone(void **state)
{
	struct tlog *t = *state;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	struct store_past p[STORE_HISTORY_DEPTH];

	tl_seg(t, 0);
	tl_ev(t, ev_opened(1, "eve", "q"));
	tl_ev(t, ev_ended(1, "eve", "n"));
	tl_ev(t, ev_opened(2, "bob", "q"));
	tl_ev(t, ev_ended(2, "bob", "n"));
	tl_ev(t, (struct store_event){.type = STORE_REC_ERASE, .customer = S("eve")});
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(store_history_get(store_state_history(st), S("eve"), p), 0);
	assert_int_equal(store_history_get(store_state_history(st), S("bob"), p), 1);
	assert_true(store_state_is_erased(st, S("eve")));
	assert_int_equal(rec.customers, 1);
	store_state_destroy(st);
}

struct msgs {
	int n;
	uint64_t ids[32];
	char text[32][32];
	bool from_agent[32];
};

static void msg_fn(void *ctx, const struct store_msg *m)
{
	struct msgs *x = ctx;

	assert_true(x->n < 32 && m->text.len < 32);
	x->ids[x->n] = m->msg_id;
	x->from_agent[x->n] = m->from_agent;
	memcpy(x->text[x->n], m->text.ptr, m->text.len);
	x->text[x->n][m->text.len] = '\0';
	x->n++;
}

static void test_scrub(void **state)
{
	struct tlog *t = *state;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	struct store_str who = S("victim");
	struct msgs got = {0};
	uint64_t seg2, opened2;
	int n;

	tl_seg(t, 0);
	tl_ev(t, ev_opened(1, "victim", "SECRET-Q"));
	tl_ev(t, ev_queued(1));
	opened2 = tl_ev(t, ev_opened(2, "keeper", "KEEP-Q"));
	tl_ev(t, ev_msg(1, 1, "SECRET-M1"));
	tl_ev(t, ev_msg(2, 1, "KEEP-M1"));
	tl_ev(t, ev_msg(1, 2, "SECRET-M2"));
	tl_ev(t, (struct store_event){.type = STORE_REC_LEFT_MESSAGE,
	                              .customer = S("victim"),
	                              .text = S("SECRET-LEFT")});
	tl_seg(t, STORE_SF_CKPT);
	seg2 = t->seg_first;
	tl_ev(t, ev_ended(1, "victim", "SECRET-N"));
	tl_ev(t, (struct store_event){.type = STORE_REC_ERASE, .customer = S("victim")});
	tl_close(t);
	assert_true(seg_contains(t, 1, "SECRET"));
	n = store_scrub(t->dir, NULL, seg2, &who, 1);
	assert_int_equal(n, 5);
	assert_false(seg_contains(t, 1, "SECRET"));
	assert_false(seg_contains(t, 1, "victim"));
	assert_true(seg_contains(t, 1, "KEEP-M1"));
	assert_true(seg_contains(t, 1, "KEEP-Q"));
	/* the segment at below_lsn and after is not touched */
	assert_true(seg_contains(t, seg2, "SECRET-N"));
	/* again: nothing left to do */
	assert_int_equal(store_scrub(t->dir, NULL, seg2, &who, 1), 0);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(rec.records, t->lsn - 1);
	assert_int_equal(rec.torn_bytes, 0);
	assert_int_equal(rec.sessions_open, 1);
	store_state_destroy(st);
	assert_int_equal(store_read_transcript(t->dir, NULL, 1, 1, 0, msg_fn, &got), -ENOENT);
	assert_int_equal(store_read_transcript(t->dir, NULL, 1, 0, 0, msg_fn, &got), -ENOENT);
	assert_int_equal(store_read_transcript(t->dir, NULL, 2, opened2, 0, msg_fn, &got), 1);
	assert_string_equal(got.text[0], "KEEP-M1");
}

static void test_scrub_sealed(void **state)
{
	struct tlog *t = *state;
	uint8_t key[32] = {1, 2, 3};
	struct store_str who = S("victim");
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	uint64_t seg2;

	t->aead = store_aead_create(key);
	assert_non_null(t->aead);
	tl_seg(t, 0);
	tl_ev(t, ev_opened(1, "victim", "q"));
	tl_ev(t, ev_msg(1, 1, "a"));
	tl_ev(t, ev_opened(2, "other", "q"));
	tl_ev(t, ev_msg(2, 1, "b"));
	tl_seg(t, 0);
	seg2 = t->seg_first;
	tl_ev(t, ev_msg(1, 2, "c"));
	tl_close(t);
	assert_int_equal(store_scrub(t->dir, t->aead, seg2, &who, 1), 2);
	assert_int_equal(recover(t, t->aead, &st, &rec, &tail), 0);
	assert_int_equal(rec.records, 5);
	assert_int_equal(rec.sessions_open, 1);
	store_state_destroy(st);
}

static void test_transcript(void **state)
{
	struct tlog *t = *state;
	struct store_state *live = store_state_create(100, 16);
	struct msgs got = {0};
	uint64_t lsn = 0, opened1;
	const struct store_event evs[] = {
	        ev_opened(1, "c1", "q1"), ev_queued(1),          ev_opened(2, "c2", "q2"),
	        ev_msg(1, 1, "one-1"),    ev_msg(2, 1, "two-1"), ev_msg(1, 2, "one-2"),
	};

	assert_non_null(live);
	tl_seg(t, 0);
	opened1 = t->lsn;
	tl_add_live(t, live, evs, 6, &lsn);
	/* a checkpoint in between repeats the backlogs: not given twice */
	tl_seg(t, STORE_SF_CKPT);
	write_ckpt(t, live, true);
	tl_ev(t, ev_msg(1, 3, "one-3"));
	tl_ev(t, ev_msg(2, 2, "two-2"));
	tl_ev(t, ev_ended(1, "c1", "done"));
	tl_ev(t, ev_msg(1, 4, "after end"));
	tl_close(t);

	assert_int_equal(store_read_transcript(t->dir, NULL, 1, opened1, 0, msg_fn, &got), 3);
	assert_string_equal(got.text[0], "one-1");
	assert_string_equal(got.text[1], "one-2");
	assert_string_equal(got.text[2], "one-3");
	assert_int_equal(got.ids[2], 3);
	assert_false(got.from_agent[0]);
	assert_true(got.from_agent[1]);
	memset(&got, 0, sizeof(got));
	assert_int_equal(store_read_transcript(t->dir, NULL, 1, 0, 0, msg_fn, &got), 3);
	/* not ended: to the end of the log */
	memset(&got, 0, sizeof(got));
	assert_int_equal(store_read_transcript(t->dir, NULL, 2, 3, 0, msg_fn, &got), 2);
	assert_string_equal(got.text[1], "two-2");
	assert_int_equal(store_read_transcript(t->dir, NULL, 555, 0, 0, msg_fn, &got), -ENOENT);
	assert_int_equal(store_read_transcript(t->dir, NULL, 1, 4, 0, msg_fn, &got), -ENOENT);
	assert_int_equal(store_read_transcript(t->dir, NULL, 2, opened1, 0, msg_fn, &got), -ENOENT);
	assert_int_equal(store_read_transcript(t->dir, NULL, 1, 100000, 0, msg_fn, &got), -ENOENT);
	store_state_destroy(live);
}

struct scan_ctx {
	uint64_t n, last;
};

static int scan_fn(void *ctx, const struct store_event *ev)
{
	struct scan_ctx *c = ctx;

	assert_int_equal(ev->lsn, c->last + 1);
	c->last = ev->lsn;
	c->n++;
	return 0;
}

static void count_fn(void *ctx, const struct store_msg *m)
{
	struct scan_ctx *c = ctx;

	assert_int_equal(m->msg_id, c->n + 1);
	c->n++;
}

static int scan_stop(void *ctx, const struct store_event *ev)
{
	(void)ctx;
	return ev->lsn == 3 ? 42 : 0;
}

static void test_scan(void **state)
{
	struct tlog *t = *state;
	uint64_t last = write_basic(t);
	struct scan_ctx c = {0};
	uint8_t x = 1;

	tl_close(t);
	assert_int_equal(store_scan(t->dir, NULL, scan_fn, &c), 0);
	assert_int_equal(c.n, last);
	assert_int_equal(store_scan(t->dir, NULL, scan_stop, NULL), 42);
	/* stops at a tear, changes nothing */
	tl_poke(t, 6, STORE_REC_HDR, &x, 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_scan(t->dir, NULL, scan_fn, &c), 0);
	assert_int_equal(c.n, 5);
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_scan(t->dir, NULL, scan_fn, &c), 0);
	assert_int_equal(c.n, 5);
}

/* Records of all sizes across many read chunks (recovery 4 MiB, transcripts 1 MiB). */
static void test_large_segment(void **state)
{
	struct tlog *t = *state;
	char *text = malloc(STORE_STR_MAX);
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;
	struct scan_ctx c = {0};
	uint64_t opened, n = 0;
	int got;

	assert_non_null(text);
	memset(text, 'q', STORE_STR_MAX);
	t->seg_bytes = 12u << 20;
	tl_seg(t, 0);
	opened = tl_ev(t, ev_opened(1, "c1", "q"));
	for (uint32_t k = 0; t->off + STORE_STR_MAX + 200 < t->seg_bytes; k++) {
		struct store_event ev = ev_msg(1, k + 1, "");

		ev.text = (struct store_str){text, (k * 7919u) % STORE_STR_MAX};
		tl_add(t, &ev);
		n++;
	}
	tl_close(t);
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(rec.records, n + 1);
	assert_int_equal(tail.next_lsn, n + 2);
	assert_true(rec.bytes > (8u << 20));
	store_state_destroy(st);
	got = store_read_transcript(t->dir, NULL, 1, opened, 0, count_fn, &c);
	assert_int_equal(got, (int)n);
	assert_int_equal(c.n, n);
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_scan(t->dir, NULL, scan_fn, &c), 0);
	assert_int_equal(c.n, n + 1);
	free(text);
}

/* Non-contiguous segments: the log ends where the LSNs stop following on. */
static void test_gap(void **state)
{
	struct tlog *t = *state;
	uint64_t last = write_basic(t), seg3;
	struct store_state *st;
	struct store_recovery rec;
	struct store_tail tail;

	t->lsn += 5;
	tl_seg(t, 0);
	seg3 = t->seg_first;
	tl_ev(t, ev_msg(2, 9, "after a gap"));
	assert_int_equal(recover(t, NULL, &st, &rec, &tail), 0);
	assert_int_equal(tail.next_lsn, last + 1);
	assert_int_equal(rec.segments_dropped, 1);
	assert_false(seg_exists(t, seg3));
	store_state_destroy(st);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_empty_dir),
	        T(test_clean),
	        T(test_torn_tail_cut),
	        T(test_torn_flip_drops_later),
	        T(test_garbage_middle),
	        T(test_garbage_after_end),
	        T(test_short_zero_tail),
	        T(test_corrupt_header),
	        T(test_headerless_leftover),
	        T(test_checkpoint_start),
	        T(test_checkpoint_incomplete),
	        T(test_checkpoint_none_complete),
	        T(test_checkpoint_interleaved),
	        T(test_sealed),
	        T(test_erase_tombstone),
	        T(test_scrub),
	        T(test_scrub_sealed),
	        T(test_transcript),
	        T(test_scan),
	        T(test_large_segment),
	        T(test_gap),
	};

	return cmocka_run_group_tests_name("store_recover", tests, NULL, NULL);
}
