/* SPDX-License-Identifier: MIT */
/*
 * The state the log describes: open sessions (in queue order, each with its
 * backlog of recent messages), the history index, erased customers, the
 * last ack of each gateway and the highest session id. Recovery rebuilds it
 * and the store thread keeps it current by applying every record it writes
 * (up to millions a second), then writes it out as a checkpoint.
 *
 * Cost of apply: sessions sit in an array (grown by doubling, addressed by
 * index) found through an open-addressing table by id; a session's backlog
 * is a ring of backlog_max slots, and each message's strings are copied
 * into one block of a size-class pool (free lists over chunks that are
 * never returned), so the steady state allocates nothing.
 *
 * Checkpoint records carry what live records leave implicit, flagged
 * STORE_EF_CKPT: OPENED.msg_id is the session's original opened_lsn (where
 * its transcript starts), QUEUED.msg_id its queued_lsn and QUEUED.code its
 * transfers, ASSIGNED.code whether the agent replied; MSG_OUT of a
 * checkpoint does not set replied; ERASE of a checkpoint only restores the
 * tombstone. Replaying a checkpoint into an empty state gives an equal state.
 *
 * An ERASE of a customer with an open session forgets the customer's
 * history but keeps the session: the router closes nothing on an erasure
 * (the conversation goes on; its records are scrubbed from old segments).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_pvt.h"

#define NIL        UINT32_MAX
#define TAB_MIN    1024u
#define SESS_MIN   256u
#define CLS_SHIFT  5u  /* smallest pool block: 32 bytes */
#define NB_CLS     12u /* up to 64 KiB; larger blocks come from malloc */
#define CHUNK_MIN  (64u << 10)
#define CHUNK_MAX  (4u << 20)
#define ERASED_MIN 16u

/* ---- pool of variable-size blocks ---------------------------------------------- */

struct pool {
	void *free[NB_CLS];        /* free blocks of each class, linked through their first word */
	uint8_t *bump[NB_CLS];     /* the rest of the newest chunk of each class */
	uint8_t *bump_end[NB_CLS]; /* ... and its end */
	uint32_t grow[NB_CLS];     /* bytes of the next chunk of each class */
	void **chunks;             /* every chunk, freed at destroy */
	uint32_t nb_chunks, cap_chunks;
};

static int pool_cls(size_t n)
{
	unsigned c = 0;

	while (c < NB_CLS && ((size_t)1 << (c + CLS_SHIFT)) < n)
		c++;
	return c < NB_CLS ? (int)c : -1;
}

static void *pool_get(struct pool *p, size_t n)
{
	int c = pool_cls(n);
	size_t bs;
	void *b;

	if (c < 0)
		return malloc(n);
	b = p->free[c];
	if (b) {
		memcpy(&p->free[c], b, sizeof(void *));
		return b;
	}
	bs = (size_t)1 << (c + CLS_SHIFT);
	if (!p->bump[c] || (size_t)(p->bump_end[c] - p->bump[c]) < bs) {
		size_t sz = p->grow[c] ? p->grow[c] : CHUNK_MIN;
		uint8_t *chunk;

		if (sz < bs * 8)
			sz = bs * 8;
		if (p->nb_chunks == p->cap_chunks) {
			uint32_t cap = p->cap_chunks ? 2 * p->cap_chunks : 64;
			void **nc = realloc(p->chunks, cap * sizeof(*nc));

			if (!nc)
				return NULL;
			p->chunks = nc;
			p->cap_chunks = cap;
		}
		chunk = malloc(sz);
		if (!chunk)
			return NULL;
		p->chunks[p->nb_chunks++] = chunk;
		p->bump[c] = chunk;
		p->bump_end[c] = chunk + sz;
		/* Chunks double up to CHUNK_MAX: few mallocs while a state grows. */
		p->grow[c] = (uint32_t)(sz >= CHUNK_MAX ? sz : sz * 2);
	}
	b = p->bump[c];
	p->bump[c] += bs;
	return b;
}

static void pool_put(struct pool *p, void *b, size_t n)
{
	int c = pool_cls(n);

	if (!b)
		return;
	if (c < 0) {
		free(b);
		return;
	}
	memcpy(b, &p->free[c], sizeof(void *));
	p->free[c] = b;
}

static void pool_destroy(struct pool *p)
{
	for (uint32_t i = 0; i < p->nb_chunks; i++)
		free(p->chunks[i]);
	free(p->chunks);
}

/* ---- the state ------------------------------------------------------------------ */

struct st_msg {
	uint64_t msg_id;
	uint64_t sent_ms;
	char *buf; /* agent, text, attachment back to back (pooled; NULL when all empty) */
	uint32_t agent_len;
	uint32_t text_len;
	uint32_t att_len;
	bool from_agent;
};

struct st_sess {
	struct store_session s;
	uint32_t prev;       /* queue order (last QUEUED last) */
	uint32_t next;       /* ... or the free list */
	uint32_t head;       /* backlog: oldest slot */
	uint32_t nb;         /* backlog: messages */
	struct st_msg *ring; /* backlog_max slots (pooled), NULL until the first message */
};

struct sid_slot {
	uint64_t sid; /* 0: empty */
	uint32_t idx;
};

struct gw_ack {
	uint32_t gw;
	uint64_t epoch;
	uint64_t ack;
};

struct erased {
	char *p;
	uint32_t len;
	uint32_t hash;
	bool pending; /* not handed to take_erased yet */
};

/* The last figures of one agent: id then figures, in one pooled block. */
struct st_agent {
	uint8_t *buf;
	uint64_t ts_ms;
	uint32_t id_len, fig_len;
};

struct store_state {
	uint32_t backlog_max;
	uint64_t max_session;
	struct store_history *hist;
	struct pool pool;
	struct st_sess *sess; /* by index */
	uint32_t cap_sess;
	uint32_t used;      /* indices handed out */
	uint32_t free_head; /* closed sessions' slots */
	uint32_t nb_open;
	uint32_t q_head, q_tail;
	struct sid_slot *tab; /* session id -> index */
	uint32_t mask;
	struct gw_ack *gws;
	uint32_t nb_gws, cap_gws;
	struct st_agent *agents; /* sorted by id: binary search; a new agent is rare */
	uint32_t nb_agents, cap_agents;
	struct erased *er;
	uint32_t nb_er, cap_er, nb_pending;
	uint32_t *etab; /* erased customers: index + 1, 0 empty */
	uint32_t emask;
	struct store_msg *scratch; /* backlog_max: a session's backlog for store_state_sessions */
};

static inline uint32_t sid_hash(uint64_t sid)
{
	return (uint32_t)((sid * UINT64_C(0x9e3779b97f4a7c15)) >> 32);
}

static void copy_utf8(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((uint8_t)src[n] & 0xc0) == 0x80)
			n--;
	}
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

#define COPY(dst, str) copy_utf8((dst), sizeof(dst), (str).ptr, (str).len)

static struct store_str cstr(const char *s)
{
	return (struct store_str){s, (uint32_t)strlen(s)};
}

/* ---- session table ---------------------------------------------------------------- */

static uint32_t tab_find(const struct store_state *st, uint64_t sid)
{
	for (uint32_t i = sid_hash(sid) & st->mask;; i = (i + 1) & st->mask) {
		if (st->tab[i].sid == sid)
			return st->tab[i].idx;
		if (!st->tab[i].sid)
			return NIL;
	}
}

static void tab_put(struct sid_slot *tab, uint32_t mask, uint64_t sid, uint32_t idx)
{
	uint32_t i = sid_hash(sid) & mask;

	while (tab[i].sid)
		i = (i + 1) & mask;
	tab[i].sid = sid;
	tab[i].idx = idx;
}

static int tab_add(struct store_state *st, uint64_t sid, uint32_t idx)
{
	if ((st->nb_open + 1) * 2 > st->mask + 1) {
		uint32_t cap = (st->mask + 1) * 2;
		struct sid_slot *tab = calloc(cap, sizeof(*tab));

		if (!tab)
			return -ENOMEM;
		for (uint32_t i = 0; i <= st->mask; i++)
			if (st->tab[i].sid)
				tab_put(tab, cap - 1, st->tab[i].sid, st->tab[i].idx);
		free(st->tab);
		st->tab = tab;
		st->mask = cap - 1;
	}
	tab_put(st->tab, st->mask, sid, idx);
	return 0;
}

static void tab_del(struct store_state *st, uint64_t sid)
{
	uint32_t i = sid_hash(sid) & st->mask;

	while (st->tab[i].sid != sid) {
		if (!st->tab[i].sid)
			return;
		i = (i + 1) & st->mask;
	}
	for (uint32_t j = (i + 1) & st->mask; st->tab[j].sid; j = (j + 1) & st->mask) {
		uint32_t home = sid_hash(st->tab[j].sid) & st->mask;

		/* j may move into the hole at i unless its home lies cyclically in (i, j]. */
		if (((j - home) & st->mask) >= ((j - i) & st->mask)) {
			st->tab[i] = st->tab[j];
			i = j;
		}
	}
	st->tab[i].sid = 0;
}

/* ---- sessions ----------------------------------------------------------------------- */

static void q_unlink(struct store_state *st, uint32_t i)
{
	struct st_sess *x = &st->sess[i];

	if (x->prev != NIL)
		st->sess[x->prev].next = x->next;
	else
		st->q_head = x->next;
	if (x->next != NIL)
		st->sess[x->next].prev = x->prev;
	else
		st->q_tail = x->prev;
}

static void q_append(struct store_state *st, uint32_t i)
{
	struct st_sess *x = &st->sess[i];

	x->next = NIL;
	x->prev = st->q_tail;
	if (st->q_tail != NIL)
		st->sess[st->q_tail].next = i;
	else
		st->q_head = i;
	st->q_tail = i;
}

static size_t msg_bytes(const struct st_msg *m)
{
	return (size_t)m->agent_len + m->text_len + m->att_len;
}

static void backlog_free(struct store_state *st, struct st_sess *x)
{
	if (!x->ring)
		return;
	for (uint32_t k = 0; k < x->nb; k++) {
		struct st_msg *m = &x->ring[(x->head + k) % st->backlog_max];

		pool_put(&st->pool, m->buf, msg_bytes(m));
	}
	pool_put(&st->pool, x->ring, st->backlog_max * sizeof(*x->ring));
	x->ring = NULL;
	x->nb = x->head = 0;
}

static void sess_close(struct store_state *st, uint32_t i)
{
	struct st_sess *x = &st->sess[i];

	backlog_free(st, x);
	tab_del(st, x->s.session_id);
	q_unlink(st, i);
	x->s.session_id = 0;
	x->next = st->free_head;
	st->free_head = i;
	st->nb_open--;
}

static struct st_sess *sess_find(const struct store_state *st, uint64_t sid)
{
	uint32_t i = sid ? tab_find(st, sid) : NIL;

	return i == NIL ? NULL : &st->sess[i];
}

static int sess_opened(struct store_state *st, const struct store_event *ev)
{
	struct st_sess *x;
	uint32_t i;
	int ret;

	if (!ev->session_id)
		return 0;
	i = tab_find(st, ev->session_id);
	if (i != NIL) {
		/* Opened again (a checkpoint's copy replayed twice): start afresh. */
		x = &st->sess[i];
		backlog_free(st, x);
		q_unlink(st, i);
	} else {
		if (st->free_head != NIL) {
			i = st->free_head;
			st->free_head = st->sess[i].next;
		} else {
			if (st->used == st->cap_sess) {
				uint32_t cap = st->cap_sess * 2;
				struct st_sess *n = realloc(st->sess, cap * sizeof(*n));

				if (!n)
					return -ENOMEM;
				st->sess = n;
				st->cap_sess = cap;
			}
			i = st->used++;
		}
		ret = tab_add(st, ev->session_id, i);
		if (ret) {
			st->sess[i].next = st->free_head;
			st->free_head = i;
			return ret;
		}
		st->nb_open++;
		x = &st->sess[i];
	}
	memset(x, 0, sizeof(*x));
	x->s.session_id = ev->session_id;
	x->s.opened_ms = ev->ts_ms;
	x->s.waiting_since_ms = ev->ts_ms;
	x->s.opened_lsn = (ev->flags & STORE_EF_CKPT) && ev->msg_id ? ev->msg_id : ev->lsn;
	x->s.customer_gw = ev->gw;
	x->s.channel = ev->code;
	x->s.priority = ev->value;
	x->s.open_ref = ev->ref;
	COPY(x->s.customer, ev->customer);
	COPY(x->s.tenant, ev->extra);
	COPY(x->s.skill, ev->skill);
	COPY(x->s.question, ev->text);
	q_append(st, i);
	return 0;
}

static int backlog_add(struct store_state *st, struct st_sess *x, const struct store_event *ev)
{
	struct st_msg *m;
	size_t n = (size_t)ev->agent.len + ev->text.len + ev->extra.len;
	char *buf = NULL;

	if (!st->backlog_max)
		return 0;
	if (!x->ring) {
		x->ring = pool_get(&st->pool, st->backlog_max * sizeof(*x->ring));
		if (!x->ring)
			return -ENOMEM;
		x->head = x->nb = 0;
	}
	if (n) {
		buf = pool_get(&st->pool, n);
		if (!buf)
			return -ENOMEM;
	}
	if (x->nb == st->backlog_max) {
		m = &x->ring[x->head];
		pool_put(&st->pool, m->buf, msg_bytes(m));
		x->head = (x->head + 1) % st->backlog_max;
	} else {
		m = &x->ring[(x->head + x->nb) % st->backlog_max];
		x->nb++;
	}
	m->msg_id = ev->msg_id;
	m->sent_ms = ev->ts_ms;
	m->from_agent = ev->type == STORE_REC_MSG_OUT;
	m->buf = buf;
	m->agent_len = m->from_agent ? ev->agent.len : 0;
	m->text_len = ev->text.len;
	m->att_len = ev->extra.len;
	if (buf && m->agent_len)
		memcpy(buf, ev->agent.ptr, m->agent_len);
	if (buf && m->text_len)
		memcpy(buf + m->agent_len, ev->text.ptr, m->text_len);
	if (buf && m->att_len)
		memcpy(buf + m->agent_len + m->text_len, ev->extra.ptr, m->att_len);
	return 0;
}

static int sess_ended(struct store_state *st, const struct store_event *ev)
{
	uint32_t i = ev->session_id ? tab_find(st, ev->session_id) : NIL;
	struct store_event h = *ev;
	int ret;

	if (i != NIL) {
		const struct store_session *s = &st->sess[i].s;

		/* The transcript starts at OPENED; what ENDED left out comes from the session. */
		h.msg_id = s->opened_lsn;
		if (!h.customer.len)
			h.customer = cstr(s->customer);
		if (!h.skill.len)
			h.skill = cstr(s->skill);
		if (!h.agent.len && s->assigned)
			h.agent = cstr(s->agent);
		if (!h.extra.len)
			h.extra = cstr(s->question);
		if (!h.ref)
			h.ref = s->opened_ms;
	}
	ret = h.customer.len ? store_history_add(st->hist, &h) : 0;
	if (i != NIL)
		sess_close(st, i);
	return ret == -ENOMEM ? ret : 0;
}

/* ---- erased customers and gateways ---------------------------------------------------- */

static uint32_t er_find(const struct store_state *st, struct store_str c, uint32_t hash)
{
	for (uint32_t i = hash & st->emask;; i = (i + 1) & st->emask) {
		uint32_t e = st->etab[i];

		if (!e)
			return NIL;
		if (st->er[e - 1].hash == hash && st->er[e - 1].len == c.len &&
		    memcmp(st->er[e - 1].p, c.ptr, c.len) == 0)
			return e - 1;
	}
}

static void er_put(uint32_t *tab, uint32_t mask, uint32_t hash, uint32_t idx)
{
	uint32_t i = hash & mask;

	while (tab[i])
		i = (i + 1) & mask;
	tab[i] = idx + 1;
}

static int er_add(struct store_state *st, struct store_str c)
{
	uint32_t hash = store_crc32c(0, c.ptr, c.len), i = er_find(st, c, hash);
	struct erased *e;

	if (i != NIL) {
		if (!st->er[i].pending) {
			st->er[i].pending = true;
			st->nb_pending++;
		}
		return 0;
	}
	if ((st->nb_er + 1) * 2 > st->emask + 1) {
		uint32_t cap = (st->emask + 1) * 2;
		uint32_t *tab = calloc(cap, sizeof(*tab));

		if (!tab)
			return -ENOMEM;
		for (uint32_t k = 0; k < st->nb_er; k++)
			er_put(tab, cap - 1, st->er[k].hash, k);
		free(st->etab);
		st->etab = tab;
		st->emask = cap - 1;
	}
	if (st->nb_er == st->cap_er) {
		uint32_t cap = st->cap_er ? 2 * st->cap_er : ERASED_MIN;
		struct erased *n = realloc(st->er, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		st->er = n;
		st->cap_er = cap;
	}
	e = &st->er[st->nb_er];
	e->p = malloc(c.len ? c.len : 1);
	if (!e->p)
		return -ENOMEM;
	memcpy(e->p, c.ptr, c.len);
	e->len = c.len;
	e->hash = hash;
	e->pending = true;
	er_put(st->etab, st->emask, hash, st->nb_er);
	st->nb_er++;
	st->nb_pending++;
	return 0;
}

static int gw_ack(struct store_state *st, const struct store_event *ev)
{
	struct gw_ack *g = NULL;

	for (uint32_t i = 0; i < st->nb_gws; i++)
		if (st->gws[i].gw == ev->gw) {
			g = &st->gws[i];
			break;
		}
	if (!g) {
		if (st->nb_gws == st->cap_gws) {
			uint32_t cap = st->cap_gws ? 2 * st->cap_gws : 16;
			struct gw_ack *n = realloc(st->gws, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			st->gws = n;
			st->cap_gws = cap;
		}
		g = &st->gws[st->nb_gws++];
		g->gw = ev->gw;
	}
	g->epoch = ev->ref;
	g->ack = ev->msg_id;
	return 0;
}

static int agent_cmp(const struct st_agent *a, struct store_str id)
{
	uint32_t n = a->id_len < id.len ? a->id_len : id.len;
	int c = n ? memcmp(a->buf, id.ptr, n) : 0;

	if (c)
		return c;
	return a->id_len < id.len ? -1 : a->id_len > id.len;
}

static int agent_figs(struct store_state *st, const struct store_event *ev)
{
	uint32_t lo = 0, hi = st->nb_agents;
	struct st_agent *a;
	size_t need = (size_t)ev->agent.len + ev->extra.len;
	uint8_t *buf;

	/* Malformed (not the router's): ignored, as records of unknown sessions are. */
	if (!ev->agent.len || ev->extra.len > STORE_AGENT_FIGS_MAX)
		return 0;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (agent_cmp(&st->agents[mid], ev->agent) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == st->nb_agents || agent_cmp(&st->agents[lo], ev->agent) != 0) {
		if (st->nb_agents == st->cap_agents) {
			uint32_t cap = st->cap_agents ? 2 * st->cap_agents : 64;
			struct st_agent *n = realloc(st->agents, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			st->agents = n;
			st->cap_agents = cap;
		}
		memmove(&st->agents[lo + 1], &st->agents[lo],
		        (st->nb_agents - lo) * sizeof(*st->agents));
		st->nb_agents++;
		st->agents[lo] = (struct st_agent){.id_len = ev->agent.len};
	}
	a = &st->agents[lo];
	if (!a->buf || pool_cls(need) != pool_cls((size_t)a->id_len + a->fig_len)) {
		buf = pool_get(&st->pool, need);
		if (!buf) {
			if (!a->buf) {
				memmove(a, a + 1, (st->nb_agents - lo - 1) * sizeof(*a));
				st->nb_agents--;
			}
			return -ENOMEM;
		}
		if (a->buf)
			pool_put(&st->pool, a->buf, (size_t)a->id_len + a->fig_len);
		a->buf = buf;
		memcpy(a->buf, ev->agent.ptr, ev->agent.len);
	}
	if (ev->extra.len)
		memcpy(a->buf + a->id_len, ev->extra.ptr, ev->extra.len);
	a->fig_len = ev->extra.len;
	a->ts_ms = ev->ts_ms;
	return 0;
}

/* ---- public ------------------------------------------------------------------------- */

struct store_state *store_state_create(uint32_t history_customers, uint32_t backlog_max)
{
	struct store_state *st;

	if (backlog_max > (1u << 20)) {
		errno = EINVAL;
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		errno = ENOMEM;
		return NULL;
	}
	st->backlog_max = backlog_max;
	st->free_head = st->q_head = st->q_tail = NIL;
	st->hist = store_history_create(history_customers);
	if (!st->hist)
		goto out_free; /* errno set: EINVAL or ENOMEM */
	st->cap_sess = SESS_MIN;
	st->sess = malloc(st->cap_sess * sizeof(*st->sess));
	st->tab = calloc(TAB_MIN, sizeof(*st->tab));
	st->etab = calloc(ERASED_MIN * 2, sizeof(*st->etab));
	st->scratch = calloc(backlog_max ? backlog_max : 1, sizeof(*st->scratch));
	if (!st->sess || !st->tab || !st->etab || !st->scratch) {
		errno = ENOMEM;
		goto out_free;
	}
	st->mask = TAB_MIN - 1;
	st->emask = ERASED_MIN * 2 - 1;
	return st;

out_free : {
	int err = errno;

	store_state_destroy(st);
	errno = err;
}
	return NULL;
}

void store_state_destroy(struct store_state *st)
{
	if (!st)
		return;
	store_history_destroy(st->hist);
	pool_destroy(&st->pool);
	for (uint32_t i = 0; i < st->nb_er; i++)
		free(st->er[i].p);
	free(st->er);
	free(st->etab);
	free(st->gws);
	free(st->agents);
	free(st->tab);
	free(st->sess);
	free(st->scratch);
	free(st);
}

int store_state_apply(struct store_state *st, const struct store_event *ev)
{
	bool ckpt = (ev->flags & STORE_EF_CKPT) != 0;
	struct st_sess *x;

	if (ev->session_id > st->max_session)
		st->max_session = ev->session_id;
	switch (ev->type) {
	case STORE_REC_OPENED:
		return sess_opened(st, ev);
	case STORE_REC_QUEUED:
		x = sess_find(st, ev->session_id);
		if (!x)
			return 0;
		if (ev->skill.len)
			COPY(x->s.skill, ev->skill);
		x->s.waiting_since_ms = ev->ref ? ev->ref : ev->ts_ms;
		x->s.priority = ev->value;
		x->s.queued_lsn = ckpt ? ev->msg_id : ev->lsn;
		if (ckpt)
			x->s.transfers = ev->code;
		x->s.assigned = false;
		x->s.replied = false;
		x->s.agent[0] = '\0';
		x->s.agent_gw = 0;
		{
			uint32_t i = (uint32_t)(x - st->sess);

			q_unlink(st, i);
			q_append(st, i);
		}
		return 0;
	case STORE_REC_ASSIGNED:
		x = sess_find(st, ev->session_id);
		if (!x)
			return 0;
		x->s.assigned = true;
		x->s.replied = ckpt && ev->code;
		x->s.agent_gw = ev->gw;
		COPY(x->s.agent, ev->agent);
		if (ev->skill.len)
			COPY(x->s.skill, ev->skill);
		return 0;
	case STORE_REC_TRANSFERRED:
		x = sess_find(st, ev->session_id);
		if (!x)
			return 0;
		x->s.transfers++;
		x->s.assigned = false;
		x->s.replied = false;
		x->s.agent[0] = '\0';
		x->s.agent_gw = 0;
		if (ev->skill.len)
			COPY(x->s.skill, ev->skill);
		return 0;
	case STORE_REC_MSG_IN:
	case STORE_REC_MSG_OUT:
		x = sess_find(st, ev->session_id);
		if (!x)
			return 0;
		if (ev->type == STORE_REC_MSG_OUT && !ckpt && x->s.assigned)
			x->s.replied = true;
		return backlog_add(st, x, ev);
	case STORE_REC_ENDED:
		return sess_ended(st, ev);
	case STORE_REC_HISTORY:
		if (!ev->customer.len)
			return 0;
		return store_history_add(st->hist, ev) == -ENOMEM ? -ENOMEM : 0;
	case STORE_REC_NOTES:
		store_history_notes(st->hist, ev->customer, ev->session_id, ev->text);
		return 0;
	case STORE_REC_ERASE:
		if (!ev->customer.len)
			return 0;
		if (!ckpt)
			store_history_erase(st->hist, ev->customer);
		return er_add(st, ev->customer);
	case STORE_REC_GW_ACK:
		return gw_ack(st, ev);
	case STORE_REC_AGENT_FIGS:
		return agent_figs(st, ev);
	default:
		/* CKPT_BEGIN (its session_id counted above), CKPT_END, SLA_ALERT,
		 * LEFT_MESSAGE, AGENT_STATE, SCRUBBED: nothing open changes. */
		return 0;
	}
}

void store_state_sessions(const struct store_state *st, store_session_fn *fn, void *ctx)
{
	if (!st || !fn)
		return;
	for (uint32_t i = st->q_head; i != NIL; i = st->sess[i].next) {
		const struct st_sess *x = &st->sess[i];

		for (uint32_t k = 0; k < x->nb; k++) {
			const struct st_msg *m = &x->ring[(x->head + k) % st->backlog_max];
			struct store_msg *o = &st->scratch[k];

			o->msg_id = m->msg_id;
			o->sent_ms = m->sent_ms;
			o->from_agent = m->from_agent;
			o->agent = (struct store_str){m->buf, m->agent_len};
			o->text = (struct store_str){m->buf ? m->buf + m->agent_len : NULL,
			                             m->text_len};
			o->attachment = (struct store_str){
			        m->buf ? m->buf + m->agent_len + m->text_len : NULL, m->att_len};
		}
		fn(ctx, &x->s, st->scratch, x->nb);
	}
}

const struct store_history *store_state_history(const struct store_state *st)
{
	return st ? st->hist : NULL;
}

void store_state_gw_acks(const struct store_state *st, store_gw_ack_fn *fn, void *ctx)
{
	if (!st || !fn)
		return;
	for (uint32_t i = 0; i < st->nb_gws; i++)
		fn(ctx, st->gws[i].gw, st->gws[i].epoch, st->gws[i].ack);
}

void store_state_agents(const struct store_state *st, store_agent_fn *fn, void *ctx)
{
	if (!st || !fn)
		return;
	for (uint32_t i = 0; i < st->nb_agents; i++) {
		const struct st_agent *a = &st->agents[i];

		fn(ctx, (struct store_str){(const char *)a->buf, a->id_len},
		   (struct store_str){(const char *)a->buf + a->id_len, a->fig_len}, a->ts_ms);
	}
}

uint64_t store_state_max_session(const struct store_state *st)
{
	return st ? st->max_session : 0;
}

void store_state_take_erased(struct store_state *st, store_customer_fn *fn, void *ctx)
{
	if (!st || !fn)
		return;
	for (uint32_t i = 0; i < st->nb_er && st->nb_pending; i++) {
		if (!st->er[i].pending)
			continue;
		st->er[i].pending = false;
		st->nb_pending--;
		fn(ctx, (struct store_str){st->er[i].p, st->er[i].len});
	}
}

bool store_state_is_erased(const struct store_state *st, struct store_str customer)
{
	if (!st || !customer.len || !customer.ptr)
		return false;
	return er_find(st, customer, store_crc32c(0, customer.ptr, customer.len)) != NIL;
}

/* ---- checkpoint ------------------------------------------------------------------------- */

struct ckpt {
	store_event_fn *fn;
	void *ctx;
	uint64_t now_ms;
	uint32_t count;
};

static int ckpt_emit(struct ckpt *c, struct store_event *ev)
{
	c->count++;
	return c->fn(c->ctx, ev);
}

static int ckpt_past(void *ctx, struct store_str customer, const struct store_past *p)
{
	struct store_event ev = {
	        .type = STORE_REC_HISTORY,
	        .flags = p->complaint ? STORE_EF_COMPLAINT : 0,
	        .session_id = p->session_id,
	        .msg_id = p->opened_lsn,
	        .ref = p->opened_ms,
	        .code = p->closed,
	        .value = p->rating,
	        .customer = customer,
	        .skill = cstr(p->skill),
	        .agent = cstr(p->agent),
	        .text = cstr(p->notes),
	        .extra = cstr(p->question),
	};
	struct ckpt *c = ctx;

	ev.ts_ms = c->now_ms;
	return ckpt_emit(c, &ev);
}

static int ckpt_session(struct ckpt *c, const struct store_state *st, const struct st_sess *x)
{
	const struct store_session *s = &x->s;
	struct store_event ev = {
	        .type = STORE_REC_OPENED,
	        .flags = STORE_EF_CKPT,
	        .session_id = s->session_id,
	        .ts_ms = s->opened_ms,
	        .gw = s->customer_gw,
	        .ref = s->open_ref,
	        .code = s->channel,
	        .value = s->priority,
	        .msg_id = s->opened_lsn,
	        .customer = cstr(s->customer),
	        .skill = cstr(s->skill),
	        .extra = cstr(s->tenant),
	        .text = cstr(s->question),
	};
	int ret = ckpt_emit(c, &ev);

	if (ret)
		return ret;
	ev = (struct store_event){
	        .type = STORE_REC_QUEUED,
	        .flags = STORE_EF_CKPT,
	        .session_id = s->session_id,
	        .ts_ms = c->now_ms,
	        .skill = cstr(s->skill),
	        .ref = s->waiting_since_ms,
	        .value = s->priority,
	        .msg_id = s->queued_lsn,
	        .code = s->transfers,
	};
	ret = ckpt_emit(c, &ev);
	if (ret)
		return ret;
	if (s->assigned) {
		ev = (struct store_event){
		        .type = STORE_REC_ASSIGNED,
		        .flags = STORE_EF_CKPT,
		        .session_id = s->session_id,
		        .ts_ms = c->now_ms,
		        .gw = s->agent_gw,
		        .agent = cstr(s->agent),
		        .skill = cstr(s->skill),
		        .code = s->replied,
		};
		ret = ckpt_emit(c, &ev);
		if (ret)
			return ret;
	}
	for (uint32_t k = 0; k < x->nb; k++) {
		const struct st_msg *m = &x->ring[(x->head + k) % st->backlog_max];

		ev = (struct store_event){
		        .type = m->from_agent ? STORE_REC_MSG_OUT : STORE_REC_MSG_IN,
		        .flags = STORE_EF_CKPT,
		        .session_id = s->session_id,
		        .msg_id = m->msg_id,
		        .ts_ms = m->sent_ms,
		        .agent = {m->buf, m->agent_len},
		        .text = {m->buf ? m->buf + m->agent_len : NULL, m->text_len},
		        .extra = {m->buf ? m->buf + m->agent_len + m->text_len : NULL, m->att_len},
		};
		ret = ckpt_emit(c, &ev);
		if (ret)
			return ret;
	}
	return 0;
}

int store_state_checkpoint(const struct store_state *st, uint64_t now_ms, store_event_fn *fn,
                           void *ctx)
{
	struct ckpt c = {.fn = fn, .ctx = ctx, .now_ms = now_ms};
	struct store_event ev = {.type = STORE_REC_CKPT_BEGIN, .ts_ms = now_ms};
	uint64_t oldest = 0;
	int ret;

	if (!st || !fn)
		return -EINVAL;
	for (uint32_t i = st->q_head; i != NIL; i = st->sess[i].next)
		if (st->sess[i].s.opened_lsn && (!oldest || st->sess[i].s.opened_lsn < oldest))
			oldest = st->sess[i].s.opened_lsn;
	ev.session_id = st->max_session;
	ev.ref = oldest;
	ret = ckpt_emit(&c, &ev);
	if (ret)
		return ret;
	/* Tombstones first: a later HISTORY of the customer (it came back) must survive them. */
	for (uint32_t i = 0; i < st->nb_er; i++) {
		ev = (struct store_event){.type = STORE_REC_ERASE,
		                          .flags = STORE_EF_CKPT,
		                          .ts_ms = now_ms,
		                          .customer = {st->er[i].p, st->er[i].len}};
		ret = ckpt_emit(&c, &ev);
		if (ret)
			return ret;
	}
	for (uint32_t i = st->q_head; i != NIL; i = st->sess[i].next) {
		ret = ckpt_session(&c, st, &st->sess[i]);
		if (ret)
			return ret;
	}
	ret = store_history_walk(st->hist, ckpt_past, &c);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < st->nb_gws; i++) {
		ev = (struct store_event){.type = STORE_REC_GW_ACK,
		                          .flags = STORE_EF_CKPT,
		                          .ts_ms = now_ms,
		                          .gw = st->gws[i].gw,
		                          .ref = st->gws[i].epoch,
		                          .msg_id = st->gws[i].ack};
		ret = ckpt_emit(&c, &ev);
		if (ret)
			return ret;
	}
	for (uint32_t i = 0; i < st->nb_agents; i++) {
		const struct st_agent *a = &st->agents[i];

		ev = (struct store_event){
		        .type = STORE_REC_AGENT_FIGS,
		        .flags = STORE_EF_CKPT,
		        .ts_ms = a->ts_ms,
		        .agent = {(const char *)a->buf, a->id_len},
		        .extra = {(const char *)a->buf + a->id_len, a->fig_len},
		};
		ret = ckpt_emit(&c, &ev);
		if (ret)
			return ret;
	}
	ev = (struct store_event){
	        .type = STORE_REC_CKPT_END, .ts_ms = now_ms, .value = c.count + 1};
	return ckpt_emit(&c, &ev);
}
