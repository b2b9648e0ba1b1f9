/* SPDX-License-Identifier: MIT */
/*
 * store_state: open sessions, queue order, backlogs, the history index
 * (depth, LRU bound, notes, lookup by session), erasure, and checkpoints
 * that replay into an equal state (also under a seeded random workload:
 * SURGE_SEED replays one).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store_pvt.h"

#define MAX_SESS 256
#define MAX_MSGS 16

static struct store_str S(const char *s) {
	return (struct store_str){s, (uint32_t)strlen(s)};
}

/* ---- driving a state ------------------------------------------------------------- */

struct drv {
	struct store_state *st;
	uint64_t lsn;
};

static void apply(struct drv *d, struct store_event ev)
{
	ev.lsn = ++d->lsn;
	assert_int_equal(store_state_apply(d->st, &ev), 0);
}

static struct store_event ev_opened(uint64_t sid, const char *cust, const char *skill,
                                    uint32_t prio, uint64_t ts)
{
	return (struct store_event){.type = STORE_REC_OPENED,
	                            .session_id = sid,
	                            .ts_ms = ts,
	                            .gw = 7,
	                            .ref = sid * 10,
	                            .code = 2,
	                            .value = prio,
	                            .customer = S(cust),
	                            .skill = S(skill),
	                            .extra = S("tenant-a"),
	                            .text = S("where is my parcel")};
}

static struct store_event ev_queued(uint64_t sid, const char *skill, uint64_t since, uint32_t prio,
                                    bool front)
{
	return (struct store_event){.type = STORE_REC_QUEUED,
	                            .session_id = sid,
	                            .ts_ms = since + 1,
	                            .skill = S(skill),
	                            .ref = since,
	                            .value = prio,
	                            .flags = front ? STORE_EF_FRONT : 0};
}

static struct store_event ev_assigned(uint64_t sid, const char *agent, uint32_t gw)
{
	return (struct store_event){
	        .type = STORE_REC_ASSIGNED, .session_id = sid, .gw = gw, .agent = S(agent)};
}

static struct store_event ev_msg(uint64_t sid, uint64_t msg_id, bool out, const char *text)
{
	return (struct store_event){.type = out ? STORE_REC_MSG_OUT : STORE_REC_MSG_IN,
	                            .session_id = sid,
	                            .msg_id = msg_id,
	                            .ts_ms = 1000 + msg_id,
	                            .agent = out ? S("agent-1") : S(""),
	                            .text = S(text),
	                            .extra = msg_id % 3 ? S("") : S("att://x")};
}

static struct store_event ev_ended(uint64_t sid, const char *cust, const char *notes)
{
	return (struct store_event){.type = STORE_REC_ENDED,
	                            .session_id = sid,
	                            .ts_ms = 5000 + sid,
	                            .code = 1,
	                            .value = 1,
	                            .flags = STORE_EF_COMPLAINT,
	                            .customer = S(cust),
	                            .skill = S("refunds"),
	                            .agent = S("agent-1"),
	                            .ref = 100 + sid,
	                            .text = S(notes),
	                            .extra = S("first question")};
}

/* ---- taking a state apart ------------------------------------------------------------ */

struct msg_copy {
	uint64_t msg_id, sent_ms;
	bool from_agent;
	char agent[32], text[64], att[32];
};

struct sess_copy {
	struct store_session s;
	uint32_t nb;
	struct msg_copy m[MAX_MSGS];
};

struct snap {
	uint32_t n;
	struct sess_copy v[MAX_SESS];
};

static void cp(char *dst, size_t cap, struct store_str s)
{
	assert_true(s.len < cap);
	memcpy(dst, s.ptr ? s.ptr : "", s.len);
	dst[s.len] = '\0';
}

static void snap_fn(void *ctx, const struct store_session *s, const struct store_msg *b,
                    uint32_t nb)
{
	struct snap *sn = ctx;
	struct sess_copy *c;

	assert_true(sn->n < MAX_SESS);
	assert_true(nb <= MAX_MSGS);
	c = &sn->v[sn->n++];
	c->s = *s;
	c->nb = nb;
	for (uint32_t i = 0; i < nb; i++) {
		c->m[i].msg_id = b[i].msg_id;
		c->m[i].sent_ms = b[i].sent_ms;
		c->m[i].from_agent = b[i].from_agent;
		cp(c->m[i].agent, sizeof(c->m[i].agent), b[i].agent);
		cp(c->m[i].text, sizeof(c->m[i].text), b[i].text);
		cp(c->m[i].att, sizeof(c->m[i].att), b[i].attachment);
	}
}

static struct snap *snap_take(const struct store_state *st)
{
	struct snap *sn = calloc(1, sizeof(*sn));

	assert_non_null(sn);
	store_state_sessions(st, snap_fn, sn);
	return sn;
}

static void assert_session_eq(const struct store_session *a, const struct store_session *b)
{
	assert_int_equal(a->session_id, b->session_id);
	assert_int_equal(a->opened_ms, b->opened_ms);
	assert_int_equal(a->waiting_since_ms, b->waiting_since_ms);
	assert_int_equal(a->opened_lsn, b->opened_lsn);
	assert_int_equal(a->customer_gw, b->customer_gw);
	assert_int_equal(a->agent_gw, b->agent_gw);
	assert_int_equal(a->channel, b->channel);
	assert_int_equal(a->priority, b->priority);
	assert_int_equal(a->assigned, b->assigned);
	assert_int_equal(a->replied, b->replied);
	assert_int_equal(a->transfers, b->transfers);
	assert_int_equal(a->open_ref, b->open_ref);
	assert_string_equal(a->customer, b->customer);
	assert_string_equal(a->tenant, b->tenant);
	assert_string_equal(a->skill, b->skill);
	assert_string_equal(a->agent, b->agent);
	assert_string_equal(a->question, b->question);
	assert_int_equal(a->queued_lsn, b->queued_lsn);
}

static void assert_past_eq(const struct store_past *a, const struct store_past *b)
{
	assert_int_equal(a->session_id, b->session_id);
	assert_int_equal(a->opened_ms, b->opened_ms);
	assert_int_equal(a->opened_lsn, b->opened_lsn);
	assert_int_equal(a->rating, b->rating);
	assert_int_equal(a->closed, b->closed);
	assert_int_equal(a->complaint, b->complaint);
	assert_string_equal(a->skill, b->skill);
	assert_string_equal(a->agent, b->agent);
	assert_string_equal(a->notes, b->notes);
	assert_string_equal(a->question, b->question);
}

struct acks {
	uint32_t n;
	uint32_t gw[16];
	uint64_t epoch[16], ack[16];
};

static void acks_fn(void *ctx, uint32_t gw, uint64_t epoch, uint64_t ack)
{
	struct acks *a = ctx;

	assert_true(a->n < 16);
	a->gw[a->n] = gw;
	a->epoch[a->n] = epoch;
	a->ack[a->n++] = ack;
}

struct agents {
	uint32_t n;
	char id[64][32];
	uint8_t fig[64][STORE_AGENT_FIGS_MAX];
	uint32_t fig_len[64];
	uint64_t ts[64];
};

static void agents_fn(void *ctx, struct store_str agent, struct store_str figures, uint64_t ts_ms)
{
	struct agents *a = ctx;

	assert_true(a->n < 64);
	assert_true(agent.len < 32);
	memcpy(a->id[a->n], agent.ptr, agent.len);
	a->id[a->n][agent.len] = '\0';
	if (figures.len)
		memcpy(a->fig[a->n], figures.ptr, figures.len);
	a->fig_len[a->n] = figures.len;
	a->ts[a->n++] = ts_ms;
}

/* Equal states: sessions in order with their backlogs, history of the given customers. */
static void assert_state_eq(const struct store_state *a, const struct store_state *b,
                            const char *const *customers, unsigned nb_cust)
{
	struct snap *x = snap_take(a), *y = snap_take(b);
	const struct store_history *ha = store_state_history(a), *hb = store_state_history(b);
	struct acks ka = {0}, kb = {0};
	struct agents *aa = calloc(2, sizeof(*aa)), *ab = aa + 1;

	assert_non_null(aa);
	assert_int_equal(x->n, y->n);
	for (uint32_t i = 0; i < x->n; i++) {
		assert_session_eq(&x->v[i].s, &y->v[i].s);
		assert_int_equal(x->v[i].nb, y->v[i].nb);
		for (uint32_t k = 0; k < x->v[i].nb; k++) {
			const struct msg_copy *p = &x->v[i].m[k], *q = &y->v[i].m[k];

			assert_int_equal(p->msg_id, q->msg_id);
			assert_int_equal(p->sent_ms, q->sent_ms);
			assert_int_equal(p->from_agent, q->from_agent);
			assert_string_equal(p->agent, q->agent);
			assert_string_equal(p->text, q->text);
			assert_string_equal(p->att, q->att);
		}
	}
	assert_int_equal(store_history_count(ha), store_history_count(hb));
	for (unsigned c = 0; c < nb_cust; c++) {
		struct store_past pa[STORE_HISTORY_DEPTH], pb[STORE_HISTORY_DEPTH];
		uint32_t na = store_history_get(ha, S(customers[c]), pa);
		uint32_t nb = store_history_get(hb, S(customers[c]), pb);

		assert_int_equal(na, nb);
		for (uint32_t k = 0; k < na; k++) {
			struct store_past f;
			char who[64];

			assert_past_eq(&pa[k], &pb[k]);
			assert_int_equal(
			        store_history_find(hb, pb[k].session_id, who, sizeof(who), &f), 0);
			assert_string_equal(who, customers[c]);
		}
		assert_int_equal(store_state_is_erased(a, S(customers[c])),
		                 store_state_is_erased(b, S(customers[c])));
	}
	assert_int_equal(store_state_max_session(a), store_state_max_session(b));
	store_state_gw_acks(a, acks_fn, &ka);
	store_state_gw_acks(b, acks_fn, &kb);
	assert_int_equal(ka.n, kb.n);
	for (uint32_t i = 0; i < ka.n; i++) {
		assert_int_equal(ka.gw[i], kb.gw[i]);
		assert_int_equal(ka.epoch[i], kb.epoch[i]);
		assert_int_equal(ka.ack[i], kb.ack[i]);
	}
	store_state_agents(a, agents_fn, aa);
	store_state_agents(b, agents_fn, ab);
	assert_int_equal(aa->n, ab->n);
	for (uint32_t i = 0; i < aa->n; i++) {
		assert_string_equal(aa->id[i], ab->id[i]);
		assert_int_equal(aa->fig_len[i], ab->fig_len[i]);
		assert_memory_equal(aa->fig[i], ab->fig[i], aa->fig_len[i]);
		assert_int_equal(aa->ts[i], ab->ts[i]);
	}
	free(aa);
	free(x);
	free(y);
}

/* Checkpoint a into b (empty) through the on-disk encoding, LSNs from d. */
struct replay_ctx {
	struct drv *d;
	struct store_state *dst;
	uint8_t buf[STORE_EVENT_MAX];
	uint32_t count;
	bool ended;
};

static int replay_fn(void *ctx, const struct store_event *ev)
{
	struct replay_ctx *r = ctx;
	struct store_event out;
	size_t n = store_event_encode(ev, r->buf);

	assert_true(n > 0);
	assert_false(r->ended);
	assert_int_equal(store_event_decode(r->buf, n, ev->type, &out), 0);
	out.lsn = ++r->d->lsn;
	r->count++;
	if (r->count == 1)
		assert_int_equal(ev->type, STORE_REC_CKPT_BEGIN);
	if (ev->type == STORE_REC_CKPT_END) {
		assert_int_equal(ev->value, r->count);
		r->ended = true;
	}
	assert_int_equal(store_state_apply(r->dst, &out), 0);
	return 0;
}

static struct store_state *ckpt_copy(struct drv *d, uint32_t hist, uint32_t backlog)
{
	struct replay_ctx *r = calloc(1, sizeof(*r));
	struct store_state *b = store_state_create(hist, backlog);

	assert_non_null(r);
	assert_non_null(b);
	r->d = d;
	r->dst = b;
	assert_int_equal(store_state_checkpoint(d->st, 99999, replay_fn, r), 0);
	assert_true(r->ended);
	free(r);
	return b;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_sessions(void **state)
{
	struct drv d = {.st = store_state_create(100, 8)};
	struct snap *sn;

	(void)state;
	assert_non_null(d.st);
	apply(&d, ev_opened(1, "c1", "presale", 0, 1000));
	apply(&d, ev_queued(1, "presale", 1000, 0, false));
	apply(&d, ev_opened(2, "c2", "presale", 0, 1100));
	apply(&d, ev_queued(2, "presale", 1100, 0, false));
	apply(&d, ev_opened(3, "c3", "refunds", 5, 1200));
	apply(&d, ev_queued(3, "refunds", 1200, 5, false));
	apply(&d, ev_assigned(2, "agent-9", 31));
	/* 3: transferred from agent to another group, queued there again */
	apply(&d, ev_assigned(3, "agent-8", 32));
	apply(&d, ev_msg(3, 1, true, "hello"));
	apply(&d, (struct store_event){.type = STORE_REC_TRANSFERRED,
	                               .session_id = 3,
	                               .agent = S("agent-8"),
	                               .skill = S("vip"),
	                               .text = S("needs vip")});
	apply(&d, ev_queued(3, "vip", 1200, 5, true));
	apply(&d, ev_opened(4, "c4", "presale", 0, 1300));
	apply(&d, ev_ended(4, "c4", "left at once"));
	/* events of sessions opened before the log: ignored */
	apply(&d, ev_msg(77, 1, false, "lost"));
	apply(&d, ev_assigned(78, "agent-1", 1));

	sn = snap_take(d.st);
	assert_int_equal(sn->n, 3);
	/* LSN order of the last QUEUED */
	assert_int_equal(sn->v[0].s.session_id, 1);
	assert_int_equal(sn->v[1].s.session_id, 2);
	assert_int_equal(sn->v[2].s.session_id, 3);
	assert_false(sn->v[0].s.assigned);
	assert_true(sn->v[1].s.assigned);
	assert_string_equal(sn->v[1].s.agent, "agent-9");
	assert_int_equal(sn->v[1].s.agent_gw, 31);
	assert_false(sn->v[1].s.replied);
	assert_string_equal(sn->v[0].s.customer, "c1");
	assert_string_equal(sn->v[0].s.tenant, "tenant-a");
	assert_string_equal(sn->v[0].s.question, "where is my parcel");
	assert_int_equal(sn->v[0].s.opened_ms, 1000);
	assert_int_equal(sn->v[0].s.opened_lsn, 1);
	assert_int_equal(sn->v[0].s.queued_lsn, 2);
	assert_int_equal(sn->v[0].s.customer_gw, 7);
	assert_int_equal(sn->v[0].s.channel, 2);
	assert_int_equal(sn->v[0].s.open_ref, 10);
	assert_false(sn->v[2].s.assigned);
	assert_int_equal(sn->v[2].s.transfers, 1);
	assert_string_equal(sn->v[2].s.skill, "vip");
	assert_string_equal(sn->v[2].s.agent, "");
	assert_int_equal(sn->v[2].s.priority, 5);
	assert_int_equal(sn->v[2].s.waiting_since_ms, 1200);
	assert_int_equal(sn->v[2].nb, 1);
	assert_string_equal(sn->v[2].m[0].text, "hello");
	assert_true(sn->v[2].m[0].from_agent);
	assert_int_equal(store_state_max_session(d.st), 78);
	free(sn);

	/* ended: gone from the sessions, in the history with its opened LSN */
	{
		struct store_past p[STORE_HISTORY_DEPTH];

		assert_int_equal(store_history_get(store_state_history(d.st), S("c4"), p), 1);
		assert_int_equal(p[0].session_id, 4);
		assert_int_equal(p[0].opened_lsn, 12);
		assert_string_equal(p[0].notes, "left at once");
		assert_true(p[0].complaint);
	}
	store_state_destroy(d.st);
}

/* A re-route puts a session back at the front: it keeps its original wait. */
static void test_queue_order_front(void **state)
{
	struct drv d = {.st = store_state_create(100, 8)};
	struct snap *sn;

	(void)state;
	for (uint64_t s = 1; s <= 3; s++) {
		apply(&d, ev_opened(s, "c", "presale", 0, 1000 * s));
		apply(&d, ev_queued(s, "presale", 1000 * s, 0, false));
	}
	apply(&d, ev_assigned(1, "agent-1", 1));
	apply(&d, ev_queued(1, "presale", 1000, 0, true)); /* agent lost it */
	sn = snap_take(d.st);
	assert_int_equal(sn->n, 3);
	assert_int_equal(sn->v[0].s.session_id, 2);
	assert_int_equal(sn->v[1].s.session_id, 3);
	assert_int_equal(sn->v[2].s.session_id, 1);
	assert_true(sn->v[0].s.queued_lsn < sn->v[1].s.queued_lsn);
	assert_true(sn->v[1].s.queued_lsn < sn->v[2].s.queued_lsn);
	/* ... but sorts first by (priority desc, waiting_since asc) */
	assert_int_equal(sn->v[2].s.waiting_since_ms, 1000);
	assert_true(sn->v[2].s.waiting_since_ms < sn->v[0].s.waiting_since_ms);
	assert_false(sn->v[2].s.assigned);
	free(sn);
	store_state_destroy(d.st);
}

static void test_backlog_bound(void **state)
{
	struct drv d = {.st = store_state_create(100, 4)};
	char text[32];
	struct snap *sn;

	(void)state;
	apply(&d, ev_opened(1, "c", "s", 0, 1));
	apply(&d, ev_queued(1, "s", 1, 0, false));
	apply(&d, ev_assigned(1, "agent-1", 1));
	for (uint64_t m = 1; m <= 10; m++) {
		snprintf(text, sizeof(text), "message %" PRIu64, m);
		apply(&d, ev_msg(1, m, m % 2 == 0, text));
		if (m == 1) {
			sn = snap_take(d.st);
			assert_false(sn->v[0].s.replied);
			free(sn);
		}
	}
	sn = snap_take(d.st);
	assert_int_equal(sn->n, 1);
	assert_true(sn->v[0].s.replied);
	assert_int_equal(sn->v[0].nb, 4);
	for (uint32_t k = 0; k < 4; k++) {
		snprintf(text, sizeof(text), "message %u", 7 + k);
		assert_int_equal(sn->v[0].m[k].msg_id, 7 + k);
		assert_string_equal(sn->v[0].m[k].text, text);
		assert_int_equal(sn->v[0].m[k].from_agent, (7 + k) % 2 == 0);
		assert_string_equal(sn->v[0].m[k].agent, (7 + k) % 2 == 0 ? "agent-1" : "");
		assert_string_equal(sn->v[0].m[k].att, (7 + k) % 3 ? "" : "att://x");
	}
	free(sn);
	/* a new assignment: not replied yet */
	apply(&d, ev_queued(1, "s", 1, 0, true));
	apply(&d, ev_assigned(1, "agent-2", 2));
	sn = snap_take(d.st);
	assert_false(sn->v[0].s.replied);
	assert_int_equal(sn->v[0].nb, 4);
	free(sn);
	store_state_destroy(d.st);
}

static void test_history_depth_notes(void **state)
{
	struct drv d = {.st = store_state_create(100, 4)};
	const struct store_history *h;
	struct store_past p[STORE_HISTORY_DEPTH], f;
	char who[64], big[600];

	(void)state;
	for (uint64_t s = 1; s <= 5; s++) {
		apply(&d, ev_opened(s, "alice", "refunds", 0, s));
		apply(&d, ev_ended(s, "alice", ""));
	}
	h = store_state_history(d.st);
	assert_int_equal(store_history_count(h), 1);
	assert_int_equal(store_history_get(h, S("alice"), p), 3);
	assert_int_equal(p[0].session_id, 5);
	assert_int_equal(p[1].session_id, 4);
	assert_int_equal(p[2].session_id, 3);
	assert_int_equal(p[0].opened_ms, 105);
	assert_string_equal(p[0].question, "first question");
	assert_int_equal(store_history_find(h, 2, who, sizeof(who), &f), -ENOENT);
	assert_int_equal(store_history_find(h, 4, who, sizeof(who), &f), 0);
	assert_string_equal(who, "alice");
	assert_int_equal(f.session_id, 4);
	assert_int_equal(store_history_get(h, S("bob"), p), 0);

	/* notes after the close, by customer and session or by session alone */
	apply(&d, (struct store_event){.type = STORE_REC_NOTES,
	                               .session_id = 4,
	                               .customer = S("alice"),
	                               .text = S("refund issued")});
	apply(&d, (struct store_event){
	                  .type = STORE_REC_NOTES, .session_id = 5, .text = S("called back")});
	assert_int_equal(store_history_get(h, S("alice"), p), 3);
	assert_string_equal(p[1].notes, "refund issued");
	assert_string_equal(p[0].notes, "called back");
	assert_int_equal(store_history_notes((struct store_history *)h, S("bob"), 4, S("x")),
	                 -ENOENT);
	assert_int_equal(store_history_notes((struct store_history *)h, S("alice"), 1, S("x")),
	                 -ENOENT);

	/* summaries are cut on a UTF-8 boundary: 2-byte characters, 255 bytes room */
	for (int i = 0; i < 300; i++)
		memcpy(big + 2 * i, "\xc3\xa9", 2);
	{
		struct store_event e = ev_ended(9, "carol", "");

		e.text = (struct store_str){big, 600};
		e.extra = (struct store_str){big + 1, 599}; /* starts mid-character */
		assert_int_equal(store_history_add((struct store_history *)h, &e), 0);
		e.customer = S("");
		assert_int_equal(store_history_add((struct store_history *)h, &e), -EINVAL);
	}
	assert_int_equal(store_history_get(h, S("carol"), p), 1);
	assert_int_equal(strlen(p[0].notes), 254);
	assert_int_equal(strlen(p[0].question), 255); /* 1 stray byte + 127 characters */
	assert_int_equal((uint8_t)p[0].question[254], 0xa9);
	store_state_destroy(d.st);
}

static void test_history_lru(void **state)
{
	struct store_history *h = store_history_create(3), *h2;
	struct store_past p[STORE_HISTORY_DEPTH];
	char who[64];

	(void)state;
	assert_non_null(h);
	assert_null(store_history_create(0));
	for (uint64_t s = 1; s <= 4; s++) {
		char c[8];

		snprintf(c, sizeof(c), "c%" PRIu64, s);
		struct store_event e = ev_ended(s, c, "n");

		assert_int_equal(store_history_add(h, &e), 0);
	}
	assert_int_equal(store_history_count(h), 3);
	assert_int_equal(store_history_get(h, S("c1"), p), 0);
	assert_int_equal(store_history_find(h, 1, who, sizeof(who), p), -ENOENT);
	/* c2 updated: c3 is now the least recently updated */
	{
		struct store_event e = ev_ended(20, "c2", "again");

		assert_int_equal(store_history_add(h, &e), 0);
		e = ev_ended(5, "c5", "n");
		assert_int_equal(store_history_add(h, &e), 0);
	}
	assert_int_equal(store_history_count(h), 3);
	assert_int_equal(store_history_get(h, S("c3"), p), 0);
	assert_int_equal(store_history_get(h, S("c2"), p), 2);
	assert_int_equal(store_history_get(h, S("c4"), p), 1);
	assert_int_equal(store_history_get(h, S("c5"), p), 1);
	assert_int_equal(store_history_find(h, 3, who, sizeof(who), p), -ENOENT);
	assert_int_equal(store_history_find(h, 20, who, sizeof(who), p), 0);
	assert_string_equal(who, "c2");

	/* a copy for another thread holds the same */
	h2 = store_history_create(10);
	assert_non_null(h2);
	assert_int_equal(store_history_copy(h2, h), 0);
	assert_int_equal(store_history_count(h2), 3);
	assert_int_equal(store_history_get(h2, S("c2"), p), 2);
	assert_int_equal(p[0].session_id, 20);
	assert_int_equal(p[1].session_id, 2);

	store_history_erase(h, S("c2"));
	assert_int_equal(store_history_count(h), 2);
	assert_int_equal(store_history_find(h, 20, who, sizeof(who), p), -ENOENT);
	assert_int_equal(store_history_find(h, 2, who, sizeof(who), p), -ENOENT);
	/* a freed entry is reused */
	{
		struct store_event e = ev_ended(30, "c6", "n");

		assert_int_equal(store_history_add(h, &e), 0);
	}
	assert_int_equal(store_history_count(h), 3);
	assert_int_equal(store_history_get(h, S("c4"), p), 1);
	store_history_destroy(h);
	store_history_destroy(h2);
}

struct taken {
	unsigned n;
	char last[64];
};

static void take_fn(void *ctx, struct store_str c)
{
	struct taken *t = ctx;

	t->n++;
	cp(t->last, sizeof(t->last), c);
}

static void test_erase(void **state)
{
	struct drv d = {.st = store_state_create(100, 4)};
	struct store_past p[STORE_HISTORY_DEPTH];
	struct taken t = {0};
	struct snap *sn;

	(void)state;
	apply(&d, ev_opened(1, "eve", "s", 0, 1));
	apply(&d, ev_ended(1, "eve", "n"));
	apply(&d, ev_opened(2, "eve", "s", 0, 2));
	apply(&d, ev_queued(2, "s", 2, 0, false));
	apply(&d, ev_msg(2, 1, false, "still here"));
	apply(&d, ev_opened(3, "frank", "s", 0, 3));
	apply(&d, ev_ended(3, "frank", "n"));
	assert_false(store_state_is_erased(d.st, S("eve")));
	apply(&d, (struct store_event){.type = STORE_REC_ERASE, .customer = S("eve")});
	assert_true(store_state_is_erased(d.st, S("eve")));
	assert_false(store_state_is_erased(d.st, S("frank")));
	assert_int_equal(store_history_get(store_state_history(d.st), S("eve"), p), 0);
	assert_int_equal(store_history_get(store_state_history(d.st), S("frank"), p), 1);
	assert_int_equal(store_history_find(store_state_history(d.st), 1, NULL, 0, p), -ENOENT);
	/* the open session is kept (the router closes nothing on an erasure) */
	sn = snap_take(d.st);
	assert_int_equal(sn->n, 1);
	assert_int_equal(sn->v[0].s.session_id, 2);
	free(sn);
	store_state_take_erased(d.st, take_fn, &t);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.last, "eve");
	store_state_take_erased(d.st, take_fn, &t);
	assert_int_equal(t.n, 1);
	/* the tombstone is in a checkpoint; the customer's new history survives it */
	apply(&d, ev_ended(2, "eve", "after erase"));
	{
		struct store_state *b = ckpt_copy(&d, 100, 4);
		const char *cust[] = {"eve", "frank"};

		assert_state_eq(d.st, b, cust, 2);
		assert_int_equal(store_history_get(store_state_history(b), S("eve"), p), 1);
		assert_true(store_state_is_erased(b, S("eve")));
		t.n = 0;
		store_state_take_erased(b, take_fn, &t);
		assert_int_equal(t.n, 1);
		store_state_destroy(b);
	}
	store_state_destroy(d.st);
}

static void test_checkpoint_equal(void **state)
{
	struct drv d = {.st = store_state_create(100, 4)};
	const char *cust[] = {"c1", "c2", "c3", "c4", "nobody"};
	struct store_state *b;

	(void)state;
	apply(&d, ev_opened(1, "c1", "presale", 0, 1000));
	apply(&d, ev_queued(1, "presale", 1000, 0, false));
	apply(&d, ev_opened(2, "c2", "presale", 3, 1100));
	apply(&d, ev_queued(2, "presale", 1100, 3, false));
	apply(&d, ev_assigned(2, "agent-9", 31));
	apply(&d, ev_msg(2, 1, false, "in 1"));
	apply(&d, ev_msg(2, 2, true, "out 2"));
	apply(&d, ev_opened(3, "c3", "refunds", 0, 1200));
	apply(&d, ev_queued(3, "refunds", 1200, 0, false));
	apply(&d, ev_assigned(3, "agent-8", 32));
	for (uint64_t m = 1; m <= 6; m++)
		apply(&d, ev_msg(3, m, m == 2, "m"));
	apply(&d, (struct store_event){.type = STORE_REC_TRANSFERRED,
	                               .session_id = 3,
	                               .agent = S("agent-8"),
	                               .skill = S("vip")});
	apply(&d, ev_queued(3, "vip", 1200, 0, true));
	apply(&d, ev_assigned(3, "agent-7", 33)); /* not replied since */
	apply(&d, ev_queued(1, "presale", 1000, 0, true));
	for (uint64_t s = 10; s < 15; s++) {
		apply(&d, ev_opened(s, s % 2 ? "c4" : "c1", "s", 0, s));
		apply(&d, ev_ended(s, s % 2 ? "c4" : "c1", "notes"));
	}
	apply(&d, (struct store_event){.type = STORE_REC_NOTES,
	                               .session_id = 13,
	                               .customer = S("c4"),
	                               .text = S("late")});
	apply(&d, (struct store_event){.type = STORE_REC_GW_ACK, .gw = 3, .ref = 9, .msg_id = 100});
	apply(&d, (struct store_event){.type = STORE_REC_GW_ACK, .gw = 4, .ref = 1, .msg_id = 5});
	apply(&d, (struct store_event){.type = STORE_REC_GW_ACK, .gw = 3, .ref = 9, .msg_id = 101});
	apply(&d, (struct store_event){.type = STORE_REC_SLA_ALERT, .session_id = 500});
	b = ckpt_copy(&d, 100, 4);
	assert_state_eq(d.st, b, cust, 5);
	/* both go on the same way */
	{
		struct store_event more = ev_msg(1, 9, false, "more");

		apply(&d, more);
		more.lsn = d.lsn;
		assert_int_equal(store_state_apply(b, &more), 0);
	}
	assert_state_eq(d.st, b, cust, 5);
	store_state_destroy(b);
	store_state_destroy(d.st);
}

/* ---- randomized: checkpoints at random points replay into equal states ------------------- */

static uint64_t rng;

static uint64_t rnd(void)
{
	uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void apply_both(struct drv *d, struct store_state *b, struct store_event ev)
{
	ev.lsn = ++d->lsn;
	assert_int_equal(store_state_apply(d->st, &ev), 0);
	if (b)
		assert_int_equal(store_state_apply(b, &ev), 0);
}

/* The last figures of each agent, in id order; malformed records are ignored. */
static void test_agent_figures(void **state)
{
	struct drv d = {.st = store_state_create(10, 4)};
	static uint8_t big[STORE_AGENT_FIGS_MAX + 1];
	struct agents *got = calloc(1, sizeof(*got));
	struct store_state *b;

	(void)state;
	assert_non_null(d.st);
	assert_non_null(got);
	apply(&d, (struct store_event){.type = STORE_REC_AGENT_FIGS,
	                               .ts_ms = 1,
	                               .agent = S("bob"),
	                               .extra = S("first")});
	apply(&d, (struct store_event){.type = STORE_REC_AGENT_FIGS,
	                               .ts_ms = 2,
	                               .agent = S("alice"),
	                               .extra = S("a1")});
	apply(&d, (struct store_event){.type = STORE_REC_AGENT_FIGS,
	                               .ts_ms = 3,
	                               .agent = S("bob"),
	                               .extra = S("second, longer than the first one by far, so "
	                                          "that it needs a larger block than before")});
	apply(&d, (struct store_event){.type = STORE_REC_AGENT_FIGS, .ts_ms = 4, .extra = S("x")});
	apply(&d, (struct store_event){.type = STORE_REC_AGENT_FIGS,
	                               .ts_ms = 5,
	                               .agent = S("carol"),
	                               .extra = {(const char *)big, sizeof(big)}});
	apply(&d, (struct store_event){.type = STORE_REC_AGENT_FIGS, .ts_ms = 6, .agent = S("al")});
	store_state_agents(d.st, agents_fn, got);
	assert_int_equal(got->n, 3);
	assert_string_equal(got->id[0], "al");
	assert_int_equal(got->fig_len[0], 0);
	assert_string_equal(got->id[1], "alice");
	assert_int_equal(got->fig_len[1], 2);
	assert_memory_equal(got->fig[1], "a1", 2);
	assert_int_equal(got->ts[1], 2);
	assert_string_equal(got->id[2], "bob");
	assert_int_equal(got->ts[2], 3);
	assert_memory_equal(got->fig[2], "second, ", 8);
	/* A checkpoint carries them. */
	b = ckpt_copy(&d, 10, 4);
	assert_state_eq(d.st, b, NULL, 0);
	store_state_destroy(b);
	store_state_destroy(d.st);
	free(got);
}

static void test_checkpoint_random(void **state)
{
	static const char *cust[] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};
	static const char *skills[] = {"presale", "refunds", "vip"};
	const char *env = getenv("SURGE_SEED");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	struct drv d = {.st = store_state_create(6, 5)};
	struct store_state *b = NULL;
	uint64_t open[64];
	unsigned nb_open = 0;
	uint64_t next_sid = 1;
	char text[48];

	(void)state;
	printf("store_state random: seed %" PRIu64 " (set SURGE_SEED to replay)\n", seed);
	rng = seed;
	for (unsigned step = 0; step < 20000; step++) {
		unsigned op = (unsigned)(rnd() % 100);
		uint64_t sid = nb_open ? open[rnd() % nb_open] : 0;

		if (op < 12 && nb_open < 64) {
			const char *c = cust[rnd() % 10], *sk = skills[rnd() % 3];
			uint32_t prio = (uint32_t)(rnd() % 3);

			sid = next_sid++;
			open[nb_open++] = sid;
			apply_both(&d, b, ev_opened(sid, c, sk, prio, step));
			apply_both(&d, b, ev_queued(sid, sk, step, prio, false));
		} else if (!sid) {
			continue;
		} else if (op < 22) {
			apply_both(&d, b, ev_assigned(sid, rnd() % 2 ? "agent-1" : "agent-2", 5));
		} else if (op < 27) {
			apply_both(&d, b,
			           (struct store_event){.type = STORE_REC_TRANSFERRED,
			                                .session_id = sid,
			                                .skill = S(skills[rnd() % 3])});
			apply_both(&d, b, ev_queued(sid, skills[rnd() % 3], step, 1, true));
		} else if (op < 70) {
			snprintf(text, sizeof(text), "msg %u of %" PRIu64, step, sid);
			apply_both(&d, b, ev_msg(sid, step, rnd() % 2, text));
		} else if (op < 80) {
			struct snap *sn = snap_take(d.st);
			const char *c = "";

			for (uint32_t i = 0; i < sn->n; i++)
				if (sn->v[i].s.session_id == sid)
					c = sn->v[i].s.customer;
			snprintf(text, sizeof(text), "notes %u", step);
			apply_both(&d, b, ev_ended(sid, c, rnd() % 2 ? text : ""));
			free(sn);
			for (unsigned i = 0; i < nb_open; i++)
				if (open[i] == sid)
					open[i] = open[--nb_open];
		} else if (op < 85) {
			apply_both(&d, b,
			           (struct store_event){.type = STORE_REC_NOTES,
			                                .session_id = next_sid - 1 - rnd() % 8,
			                                .text = S("later notes")});
		} else if (op < 87) {
			apply_both(&d, b,
			           (struct store_event){.type = STORE_REC_ERASE,
			                                .customer = S(cust[rnd() % 10])});
		} else if (op < 92) {
			apply_both(&d, b,
			           (struct store_event){.type = STORE_REC_GW_ACK,
			                                .gw = (uint32_t)(rnd() % 4),
			                                .ref = 1,
			                                .msg_id = step});
		} else if (op < 93) {
			/* figures of one of 40 agents, of a length that moves between pool classes
			 */
			static uint8_t fig[300];
			char who[16];
			uint32_t len = (uint32_t)(rnd() % sizeof(fig));

			snprintf(who, sizeof(who), "agent-%u", (unsigned)(rnd() % 40));
			for (uint32_t i = 0; i < len; i++)
				fig[i] = (uint8_t)(step + i);
			apply_both(&d, b,
			           (struct store_event){.type = STORE_REC_AGENT_FIGS,
			                                .ts_ms = step,
			                                .agent = S(who),
			                                .extra = {(const char *)fig, len}});
		} else if (op < 95) {
			/* a checkpoint now: from here on b follows the same events */
			store_state_destroy(b);
			b = ckpt_copy(&d, 6, 5);
			assert_state_eq(d.st, b, cust, 10);
		} else {
			apply_both(&d, b, ev_queued(sid, skills[rnd() % 3], step, 2, rnd() % 2));
		}
	}
	if (b)
		assert_state_eq(d.st, b, cust, 10);
	store_state_destroy(b);
	store_state_destroy(d.st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sessions),         cmocka_unit_test(test_queue_order_front),
	        cmocka_unit_test(test_backlog_bound),    cmocka_unit_test(test_history_depth_notes),
	        cmocka_unit_test(test_history_lru),      cmocka_unit_test(test_erase),
	        cmocka_unit_test(test_checkpoint_equal), cmocka_unit_test(test_checkpoint_random),
	        cmocka_unit_test(test_agent_figures),
	};

	return cmocka_run_group_tests_name("store_state", tests, NULL, NULL);
}
