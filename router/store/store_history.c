/* SPDX-License-Identifier: MIT */
/*
 * The history index: per customer the last STORE_HISTORY_DEPTH
 * consultations, newest first, for at most max_customers customers (the
 * least recently updated one is forgotten to make room).
 *
 * Customers live in chunks of entries allocated as the index fills (never
 * moved, so indices stay valid) and are found through an open-addressing
 * table of (hash, entry) words; a second table maps each remembered
 * session id to its customer's entry for store_history_find. Both tables
 * use linear probing with backward-shift deletion (no tombstones) and
 * double when half full, so a steady state of adds allocates nothing.
 * A doubly linked list through the entries orders them by last update.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_pvt.h"

#define CUST_MAX    64u /* bytes of a customer id kept, NUL included (DISP_NAME_MAX) */
#define CHUNK_SHIFT 10u
#define CHUNK       (1u << CHUNK_SHIFT)
#define NIL         UINT32_MAX
#define TAB_MIN     1024u

struct hist_ent {
	uint32_t prev;    /* LRU: more recently updated, NIL at the head */
	uint32_t next;    /* LRU: less recently updated; the free list when unused */
	uint32_t hash;    /* of the customer id */
	uint8_t nb;       /* consultations held */
	uint8_t cust_len; /* bytes of customer */
	char customer[CUST_MAX];
	struct store_past past[STORE_HISTORY_DEPTH]; /* newest first */
};

struct sid_slot {
	uint64_t sid; /* 0: empty */
	uint32_t ent;
};

struct store_history {
	uint32_t max;       /* customers at most */
	uint32_t count;     /* customers held */
	uint32_t used;      /* entries handed out so far (high-water mark) */
	uint32_t free_head; /* entries given back by erase */
	uint32_t lru_head;  /* most recently updated */
	uint32_t lru_tail;  /* least recently updated: the next to go */
	uint32_t nb_chunks;
	struct hist_ent **chunks;
	uint64_t *ctab; /* customers: hash << 32 | (entry + 1); 0 empty */
	uint32_t cmask;
	struct sid_slot *stab; /* session id -> entry */
	uint32_t smask;
	uint32_t scount;
};

static inline struct hist_ent *ent_at(const struct store_history *h, uint32_t i)
{
	return &h->chunks[i >> CHUNK_SHIFT][i & (CHUNK - 1)];
}

static inline uint32_t sid_hash(uint64_t sid)
{
	return (uint32_t)((sid * UINT64_C(0x9e3779b97f4a7c15)) >> 32);
}

/* Customer ids are keyed by their first CUST_MAX - 1 bytes (longer ones are refused upstream). */
static inline uint32_t key_len(struct store_str c)
{
	return c.len < CUST_MAX - 1 ? c.len : CUST_MAX - 1;
}

static inline uint32_t key_hash(const char *p, uint32_t n)
{
	return store_crc32c(0x5eed, p, n);
}

/* Copy src into dst[cap] (NUL-terminated), cut on a UTF-8 character boundary. */
static void copy_utf8(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap) {
		n = cap - 1;
		/* Back off over continuation bytes: the cut starts a character. */
		while (n > 0 && ((uint8_t)src[n] & 0xc0) == 0x80)
			n--;
	}
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- tables ------------------------------------------------------------------ */

static uint32_t cust_find(const struct store_history *h, const char *key, uint32_t len,
                          uint32_t hash)
{
	for (uint32_t i = hash & h->cmask;; i = (i + 1) & h->cmask) {
		uint64_t w = h->ctab[i];
		struct hist_ent *e;

		if (!w)
			return NIL;
		if ((uint32_t)(w >> 32) != hash)
			continue;
		e = ent_at(h, (uint32_t)w - 1);
		if (e->cust_len == len && memcmp(e->customer, key, len) == 0)
			return (uint32_t)w - 1;
	}
}

static void cust_put(uint64_t *tab, uint32_t mask, uint32_t hash, uint32_t ent)
{
	uint32_t i = hash & mask;

	while (tab[i])
		i = (i + 1) & mask;
	tab[i] = (uint64_t)hash << 32 | (ent + 1);
}

static int cust_grow(struct store_history *h)
{
	uint32_t cap = (h->cmask + 1) * 2;
	uint64_t *tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (uint32_t i = 0; i <= h->cmask; i++)
		if (h->ctab[i])
			cust_put(tab, cap - 1, (uint32_t)(h->ctab[i] >> 32),
			         (uint32_t)h->ctab[i] - 1);
	free(h->ctab);
	h->ctab = tab;
	h->cmask = cap - 1;
	return 0;
}

/* Backward-shift deletion: later members of the cluster move up into the hole. */
static void cust_del(struct store_history *h, uint32_t ent)
{
	uint32_t i = ent_at(h, ent)->hash & h->cmask;

	while ((uint32_t)h->ctab[i] != ent + 1) {
		if (!h->ctab[i])
			return;
		i = (i + 1) & h->cmask;
	}
	for (uint32_t j = (i + 1) & h->cmask; h->ctab[j]; j = (j + 1) & h->cmask) {
		uint32_t home = (uint32_t)(h->ctab[j] >> 32) & h->cmask;

		/* j may fill the hole at i unless its home lies cyclically in (i, j]. */
		if (((j - home) & h->cmask) >= ((j - i) & h->cmask)) {
			h->ctab[i] = h->ctab[j];
			i = j;
		}
	}
	h->ctab[i] = 0;
}

static struct sid_slot *sid_find(const struct store_history *h, uint64_t sid)
{
	for (uint32_t i = sid_hash(sid) & h->smask;; i = (i + 1) & h->smask) {
		if (h->stab[i].sid == sid)
			return &h->stab[i];
		if (!h->stab[i].sid)
			return NULL;
	}
}

static void sid_put(struct sid_slot *tab, uint32_t mask, uint64_t sid, uint32_t ent)
{
	uint32_t i = sid_hash(sid) & mask;

	while (tab[i].sid && tab[i].sid != sid)
		i = (i + 1) & mask;
	tab[i].sid = sid;
	tab[i].ent = ent;
}

static int sid_set(struct store_history *h, uint64_t sid, uint32_t ent)
{
	struct sid_slot *s = sid_find(h, sid);

	if (s) {
		s->ent = ent;
		return 0;
	}
	if ((h->scount + 1) * 2 > h->smask + 1) {
		uint32_t cap = (h->smask + 1) * 2;
		struct sid_slot *tab = calloc(cap, sizeof(*tab));

		if (!tab)
			return -ENOMEM;
		for (uint32_t i = 0; i <= h->smask; i++)
			if (h->stab[i].sid)
				sid_put(tab, cap - 1, h->stab[i].sid, h->stab[i].ent);
		free(h->stab);
		h->stab = tab;
		h->smask = cap - 1;
	}
	sid_put(h->stab, h->smask, sid, ent);
	h->scount++;
	return 0;
}

/* Forget sid's index entry if it points at ent. */
static void sid_del(struct store_history *h, uint64_t sid, uint32_t ent)
{
	struct sid_slot *s;
	uint32_t i;

	if (!sid)
		return;
	s = sid_find(h, sid);
	if (!s || s->ent != ent)
		return;
	i = (uint32_t)(s - h->stab);
	for (uint32_t j = (i + 1) & h->smask; h->stab[j].sid; j = (j + 1) & h->smask) {
		uint32_t home = sid_hash(h->stab[j].sid) & h->smask;

		if (((j - home) & h->smask) >= ((j - i) & h->smask)) {
			h->stab[i] = h->stab[j];
			i = j;
		}
	}
	h->stab[i].sid = 0;
	h->scount--;
}

/* ---- entries ----------------------------------------------------------------- */

static void lru_unlink(struct store_history *h, uint32_t i)
{
	struct hist_ent *e = ent_at(h, i);

	if (e->prev != NIL)
		ent_at(h, e->prev)->next = e->next;
	else
		h->lru_head = e->next;
	if (e->next != NIL)
		ent_at(h, e->next)->prev = e->prev;
	else
		h->lru_tail = e->prev;
}

static void lru_front(struct store_history *h, uint32_t i)
{
	struct hist_ent *e = ent_at(h, i);

	e->prev = NIL;
	e->next = h->lru_head;
	if (h->lru_head != NIL)
		ent_at(h, h->lru_head)->prev = i;
	else
		h->lru_tail = i;
	h->lru_head = i;
}

static void lru_touch(struct store_history *h, uint32_t i)
{
	if (h->lru_head == i)
		return;
	lru_unlink(h, i);
	lru_front(h, i);
}

/* Remove entry i from the tables and the LRU list (it stays allocated). */
static void ent_drop(struct store_history *h, uint32_t i)
{
	struct hist_ent *e = ent_at(h, i);

	for (unsigned k = 0; k < e->nb; k++)
		sid_del(h, e->past[k].session_id, i);
	cust_del(h, i);
	lru_unlink(h, i);
	h->count--;
}

/* A free entry for a new customer: a recycled one, a fresh one, or the LRU victim. */
static uint32_t ent_alloc(struct store_history *h)
{
	uint32_t i;

	if (h->count >= h->max) {
		i = h->lru_tail;
		ent_drop(h, i);
		return i;
	}
	if (h->free_head != NIL) {
		i = h->free_head;
		h->free_head = ent_at(h, i)->next;
		return i;
	}
	i = h->used;
	if (!h->chunks[i >> CHUNK_SHIFT]) {
		uint32_t n = h->max - (i & ~(CHUNK - 1));

		h->chunks[i >> CHUNK_SHIFT] =
		        malloc((n < CHUNK ? n : CHUNK) * sizeof(struct hist_ent));
		if (!h->chunks[i >> CHUNK_SHIFT])
			return NIL;
	}
	h->used++;
	return i;
}

static void ent_free(struct store_history *h, uint32_t i)
{
	ent_at(h, i)->next = h->free_head;
	h->free_head = i;
}

static void past_from_event(struct store_past *p, const struct store_event *ev)
{
	memset(p, 0, sizeof(*p));
	p->session_id = ev->session_id;
	p->opened_ms = ev->ref;
	p->opened_lsn = ev->msg_id;
	p->rating = ev->value;
	p->closed = ev->code;
	p->complaint = (ev->flags & STORE_EF_COMPLAINT) != 0;
	copy_utf8(p->skill, sizeof(p->skill), ev->skill.ptr, ev->skill.len);
	copy_utf8(p->agent, sizeof(p->agent), ev->agent.ptr, ev->agent.len);
	copy_utf8(p->notes, sizeof(p->notes), ev->text.ptr, ev->text.len);
	copy_utf8(p->question, sizeof(p->question), ev->extra.ptr, ev->extra.len);
}

/* Take past out of entry i (by position k), keeping the order of the rest. */
static void past_remove(struct store_history *h, uint32_t i, unsigned k)
{
	struct hist_ent *e = ent_at(h, i);

	sid_del(h, e->past[k].session_id, i);
	memmove(&e->past[k], &e->past[k + 1], (e->nb - k - 1) * sizeof(e->past[0]));
	e->nb--;
	if (!e->nb) {
		ent_drop(h, i);
		ent_free(h, i);
	}
}

static int hist_add_past(struct store_history *h, const char *key, uint32_t len,
                         const struct store_past *p)
{
	uint32_t hash = key_hash(key, len), i = cust_find(h, key, len, hash);
	struct sid_slot *s = p->session_id ? sid_find(h, p->session_id) : NULL;
	struct hist_ent *e;
	int ret;

	if (s) {
		struct hist_ent *o = ent_at(h, s->ent);
		uint32_t oi = s->ent;
		unsigned k = 0;

		while (k < o->nb && o->past[k].session_id != p->session_id)
			k++;
		if (k < o->nb && oi == i) {
			/* The same consultation again (a checkpoint's copy): replaced in place. */
			o->past[k] = *p;
			lru_touch(h, i);
			return 0;
		}
		if (k < o->nb)
			past_remove(h, oi, k);
		i = cust_find(h, key, len, hash);
	}
	if (i == NIL) {
		if ((h->count + 1) * 2 > h->cmask + 1 && cust_grow(h) < 0)
			return -ENOMEM;
		i = ent_alloc(h);
		if (i == NIL)
			return -ENOMEM;
		e = ent_at(h, i);
		e->hash = hash;
		e->nb = 0;
		e->cust_len = (uint8_t)len;
		memcpy(e->customer, key, len);
		e->customer[len] = '\0';
		cust_put(h->ctab, h->cmask, hash, i);
		lru_front(h, i);
		h->count++;
	} else {
		lru_touch(h, i);
	}
	e = ent_at(h, i);
	if (p->session_id) {
		ret = sid_set(h, p->session_id, i);
		if (ret)
			return ret;
	}
	if (e->nb == STORE_HISTORY_DEPTH) {
		sid_del(h, e->past[STORE_HISTORY_DEPTH - 1].session_id, i);
		e->nb--;
	}
	memmove(&e->past[1], &e->past[0], e->nb * sizeof(e->past[0]));
	e->past[0] = *p;
	e->nb++;
	return 0;
}

/* ---- public ------------------------------------------------------------------- */

struct store_history *store_history_create(uint32_t max_customers)
{
	struct store_history *h;
	uint32_t ccap = TAB_MIN;

	if (max_customers == 0 || max_customers > (1u << 30)) {
		errno = EINVAL;
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		goto out_nomem;
	h->max = max_customers;
	h->free_head = h->lru_head = h->lru_tail = NIL;
	h->nb_chunks = (max_customers + CHUNK - 1) >> CHUNK_SHIFT;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of chunk pointers */
	h->chunks = calloc(h->nb_chunks, sizeof(*h->chunks));
	h->ctab = calloc(ccap, sizeof(*h->ctab));
	h->stab = calloc(TAB_MIN, sizeof(*h->stab));
	if (!h->chunks || !h->ctab || !h->stab)
		goto out_free;
	h->cmask = ccap - 1;
	h->smask = TAB_MIN - 1;
	return h;

out_free:
	store_history_destroy(h);
out_nomem:
	errno = ENOMEM;
	return NULL;
}

void store_history_destroy(struct store_history *h)
{
	if (!h)
		return;
	if (h->chunks)
		for (uint32_t i = 0; i < h->nb_chunks; i++)
			free(h->chunks[i]);
	free(h->chunks);
	free(h->ctab);
	free(h->stab);
	free(h);
}

int store_history_add(struct store_history *h, const struct store_event *ended)
{
	struct store_past p;

	if (!h || !ended || !ended->customer.len || !ended->customer.ptr)
		return -EINVAL;
	past_from_event(&p, ended);
	return hist_add_past(h, ended->customer.ptr, key_len(ended->customer), &p);
}

int store_history_notes(struct store_history *h, struct store_str customer, uint64_t session_id,
                        struct store_str notes)
{
	struct sid_slot *s;
	struct hist_ent *e;
	uint32_t i;

	if (!h || !session_id)
		return -ENOENT;
	s = sid_find(h, session_id);
	if (!s)
		return -ENOENT;
	i = s->ent;
	e = ent_at(h, i);
	if (customer.len && (e->cust_len != key_len(customer) ||
	                     memcmp(e->customer, customer.ptr, e->cust_len) != 0))
		return -ENOENT;
	for (unsigned k = 0; k < e->nb; k++) {
		if (e->past[k].session_id != session_id)
			continue;
		copy_utf8(e->past[k].notes, sizeof(e->past[k].notes), notes.ptr, notes.len);
		lru_touch(h, i);
		return 0;
	}
	return -ENOENT;
}

uint32_t store_history_get(const struct store_history *h, struct store_str customer,
                           struct store_past *out)
{
	uint32_t len = key_len(customer), i;
	struct hist_ent *e;

	if (!h || !customer.len || !customer.ptr)
		return 0;
	i = cust_find(h, customer.ptr, len, key_hash(customer.ptr, len));
	if (i == NIL)
		return 0;
	e = ent_at(h, i);
	memcpy(out, e->past, e->nb * sizeof(e->past[0]));
	return e->nb;
}

int store_history_find(const struct store_history *h, uint64_t session_id, char *customer,
                       size_t customer_len, struct store_past *out)
{
	struct sid_slot *s;
	struct hist_ent *e;

	if (!h || !session_id)
		return -ENOENT;
	s = sid_find(h, session_id);
	if (!s)
		return -ENOENT;
	e = ent_at(h, s->ent);
	for (unsigned k = 0; k < e->nb; k++) {
		if (e->past[k].session_id != session_id)
			continue;
		if (customer && customer_len)
			copy_utf8(customer, customer_len, e->customer, e->cust_len);
		if (out)
			*out = e->past[k];
		return 0;
	}
	return -ENOENT;
}

int store_history_walk(const struct store_history *h, store_past_fn *fn, void *ctx)
{
	if (!h)
		return 0;
	for (uint32_t i = h->lru_tail; i != NIL; i = ent_at(h, i)->prev) {
		const struct hist_ent *e = ent_at(h, i);
		struct store_str c = {e->customer, e->cust_len};

		for (unsigned k = e->nb; k-- > 0;) {
			int ret = fn(ctx, c, &e->past[k]);

			if (ret)
				return ret;
		}
	}
	return 0;
}

static int copy_one(void *ctx, struct store_str customer, const struct store_past *p)
{
	return hist_add_past(ctx, customer.ptr, customer.len, p);
}

int store_history_copy(struct store_history *dst, const struct store_history *src)
{
	if (!dst || !src)
		return -EINVAL;
	return store_history_walk(src, copy_one, dst);
}

void store_history_erase(struct store_history *h, struct store_str customer)
{
	uint32_t len = key_len(customer), i;

	if (!h || !customer.len || !customer.ptr)
		return;
	i = cust_find(h, customer.ptr, len, key_hash(customer.ptr, len));
	if (i == NIL)
		return;
	ent_drop(h, i);
	/* Nothing of it may linger in freed memory. */
	memset(ent_at(h, i), 0, sizeof(struct hist_ent));
	ent_free(h, i);
}

uint32_t store_history_count(const struct store_history *h)
{
	return h ? h->count : 0;
}
