/* SPDX-License-Identifier: MIT */
/*
 * The router and its session store: recovery into the dispatch engine at
 * start, the journal of the engine appended to the store, acknowledgements
 * that follow durability, the customers' history, and what the router does
 * when the store fails.
 *
 * Acks. After a frame is processed, (the gateway's cumulative ack, the
 * highest ticket appended so far) joins the gateway's ack queue; the ack a
 * frame carries is the last entry whose ticket the store has made durable.
 * Every record of a frame has a ticket <= the one noted with it, so a frame
 * is acknowledged only once all it caused is durable. A full queue merges
 * its newest entries: acks get coarser, never early.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router_pvt.h"
#include "store.h"

_Static_assert(CTL_STORE_SYNC == (int)STORE_POLICY_SYNC, "policy values differ");
_Static_assert(CTL_STORE_INTERVAL == (int)STORE_POLICY_INTERVAL, "policy values differ");
_Static_assert(CTL_STORE_NONE == (int)STORE_POLICY_NONE, "policy values differ");

static int rt_hist_start(struct rt_router *rt);
static void rt_hist_stop(struct rt_router *rt);
static void rt_hist_poll(struct rt_router *rt);

#define RT_APPEND_SPIN_NS                                                                          \
	5000000000ull /* a full ring this long (a checkpoint pauses the log) is a failure */

static struct store_str sstr(struct disp_str s)
{
	return (struct store_str){.ptr = s.ptr, .len = s.len};
}

static struct disp_str dstr_of(struct store_str s)
{
	return (struct disp_str){.ptr = s.ptr, .len = s.len};
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void rt_store_log(void *ctx, int level, const char *msg)
{
	const struct rt_router *rt = ctx;
	static const char *const names[] = {"error", "warning", "info", "debug"};

	if (level > rt->cfg->log_level)
		return;
	fprintf(stderr, "surge-router: store %s: %s\n",
	        names[level < 0   ? 0
	              : level > 3 ? 3
	                          : level],
	        msg);
}

/* The store failed: said once, then visible in the counters. */
static void rt_store_failed(struct rt_router *rt)
{
	struct store_stats st;

	if (rt->store_failed)
		return;
	rt->store_failed = true;
	store_stats_get(rt->store, &st);
	fprintf(stderr,
	        "surge-router: store failed (%s): no more acknowledgements, new sessions refused "
	        "with STORE_FAILED; routing continues from memory; restart to recover\n",
	        st.error ? strerror(-st.error < 0 ? st.error : -st.error) : "ring full");
}

/* ---- journal ---------------------------------------------------------------- */

static void rt_event_to_store(const struct disp_event *d, struct store_event *s)
{
	memset(s, 0, sizeof(*s));
	s->ts_ms = d->ts_ms;
	s->session_id = d->session_id;
	s->gw = d->gw;
	switch (d->kind) {
	case DISP_EV_OPENED:
		s->type = STORE_REC_OPENED;
		s->ref = d->open_ref;
		s->code = d->channel;
		s->value = d->priority;
		s->customer = sstr(d->customer);
		s->skill = sstr(d->skill);
		s->extra = sstr(d->tenant);
		s->text = sstr(d->question);
		break;
	case DISP_EV_QUEUED:
		s->type = STORE_REC_QUEUED;
		s->skill = sstr(d->skill);
		s->ref = d->waiting_since_ms;
		s->value = d->priority;
		s->flags = d->front ? STORE_EF_FRONT : 0;
		break;
	case DISP_EV_ASSIGNED:
		s->type = STORE_REC_ASSIGNED;
		s->agent = sstr(d->agent);
		s->skill = sstr(d->skill);
		break;
	case DISP_EV_TRANSFERRED:
		s->type = STORE_REC_TRANSFERRED;
		s->agent = sstr(d->agent);
		s->skill = sstr(d->skill);
		s->text = sstr(d->text);
		break;
	case DISP_EV_MSG_IN:
		s->type = STORE_REC_MSG_IN;
		s->msg_id = d->msg_id;
		s->text = sstr(d->text);
		s->extra = sstr(d->attachment);
		break;
	case DISP_EV_MSG_OUT:
		s->type = STORE_REC_MSG_OUT;
		s->msg_id = d->msg_id;
		s->agent = sstr(d->agent);
		s->text = sstr(d->text);
		s->extra = sstr(d->attachment);
		s->flags = d->hold ? STORE_EF_HOLD : 0;
		break;
	case DISP_EV_SLA_ALERT:
		s->type = STORE_REC_SLA_ALERT;
		s->agent = sstr(d->agent);
		s->skill = sstr(d->skill);
		s->code = d->sla;
		s->ref = d->elapsed_ms;
		break;
	case DISP_EV_ENDED:
		s->type = STORE_REC_ENDED;
		s->code = d->reason;
		s->value = d->rating;
		s->flags = (uint16_t)((d->complaint ? STORE_EF_COMPLAINT : 0) |
		                      (d->by_agent ? STORE_EF_BY_AGENT : 0));
		s->customer = sstr(d->customer);
		s->skill = sstr(d->skill);
		s->agent = sstr(d->agent);
		s->ref = d->opened_ms;
		s->text = sstr(d->text);
		s->extra = sstr(d->question);
		break;
	case DISP_EV_LEFT_MESSAGE:
		s->type = STORE_REC_LEFT_MESSAGE;
		s->ref = d->open_ref;
		s->customer = sstr(d->customer);
		s->skill = sstr(d->skill);
		s->extra = sstr(d->tenant);
		s->text = sstr(d->question);
		break;
	case DISP_EV_AGENT_STATE:
		s->type = STORE_REC_AGENT_STATE;
		s->agent = sstr(d->agent);
		s->code = d->state;
		break;
	case DISP_EV_NOTES:
		s->type = STORE_REC_NOTES;
		s->customer = sstr(d->customer);
		s->agent = sstr(d->agent);
		s->text = sstr(d->text);
		break;
	}
}

/* Append one record; a full ring is waited out briefly, never dropped silently. */
static void rt_append(struct rt_router *rt, const struct store_event *ev)
{
	uint64_t ticket, deadline = 0;
	int rc;

	for (;;) {
		rc = store_append(rt->store_prod, ev, &ticket);
		if (rc != -ENOBUFS)
			break;
		if (deadline == 0)
			deadline = mono_ns() + RT_APPEND_SPIN_NS;
		else if (mono_ns() > deadline)
			break;
	}
	if (rc == 0) {
		rt->store_ticket = ticket;
		return;
	}
	rt->store_append_errors++;
	/*
	 * A record that cannot be kept makes every later ack a lie: acks stop
	 * for good (the ticket never becomes durable) and the router says so.
	 */
	rt->store_ticket = UINT64_MAX;
	rt_store_failed(rt);
}

/*
 * Agents' figures. The engine owns them; the log keeps a copy of an agent's
 * counters (AGENT_FIGS) after each event that changes them much — an
 * assignment, its session's end, a transfer, an alert, a state change — so
 * that a restart gives them back. The agents concerned are noted during a
 * request and their figures appended after it (rt_fig_flush: before the
 * frame's GW_ACK, and on every tick for what timers did), once each, read
 * with the getter. What changes between those events (first replies, time)
 * is caught up by the next one.
 */
static void rt_fig_dirty(struct rt_router *rt, struct disp_str agent)
{
	if (!rt->fig_dirty || agent.len == 0 || agent.len >= DISP_NAME_MAX)
		return;
	for (uint32_t i = 0; i < rt->nb_fig_dirty; i++)
		if (strncmp(rt->fig_dirty[i], agent.ptr, agent.len) == 0 &&
		    rt->fig_dirty[i][agent.len] == '\0')
			return;
	if (rt->nb_fig_dirty == RT_FIG_DIRTY) {
		rt->fig_dirty_dropped++;
		return;
	}
	memcpy(rt->fig_dirty[rt->nb_fig_dirty], agent.ptr, agent.len);
	rt->fig_dirty[rt->nb_fig_dirty][agent.len] = '\0';
	rt->nb_fig_dirty++;
}

static void rt_fig_flush(struct rt_router *rt)
{
	uint8_t buf[DISP_FIGURES_PACKED_MAX];

	for (uint32_t i = 0; i < rt->nb_fig_dirty; i++) {
		struct disp_str id = {rt->fig_dirty[i], (uint32_t)strlen(rt->fig_dirty[i])};
		struct disp_agent_figures f;
		struct store_event ev;
		size_t n;

		if (disp_agent_figures_get(rt->disp, id, &f, rt->now_ms) < 0)
			continue;
		n = disp_agent_figures_pack(&f, buf, sizeof(buf));
		if (n == 0 || n > STORE_AGENT_FIGS_MAX)
			continue;
		ev = (struct store_event){.type = STORE_REC_AGENT_FIGS,
		                          .ts_ms = rt->now_ms,
		                          .agent = sstr(id),
		                          .extra = {(const char *)buf, (uint32_t)n}};
		rt_append(rt, &ev);
	}
	rt->nb_fig_dirty = 0;
}

/* The dispatch engine's journal callback. */
static void rt_journal(void *ctx, const struct disp_event *d)
{
	struct rt_router *rt = ctx;
	struct store_event ev;

	rt_event_to_store(d, &ev);
	if (ev.type == STORE_REC_NONE)
		return;
	rt_append(rt, &ev);
	if (ev.type == STORE_REC_ASSIGNED || ev.type == STORE_REC_ENDED ||
	    ev.type == STORE_REC_TRANSFERRED || ev.type == STORE_REC_SLA_ALERT ||
	    ev.type == STORE_REC_AGENT_STATE)
		rt_fig_dirty(rt, d->agent);
	if (ev.type == STORE_REC_ENDED)
		store_history_add(rt->history, &ev);
	else if (ev.type == STORE_REC_NOTES)
		store_history_notes(rt->history, ev.customer, ev.session_id, ev.text);
}

/* ---- recovery into the engine ------------------------------------------------- */

struct rt_restore_list {
	struct disp_restore *r;
	struct disp_msg *msgs; /* the backlogs, each r's at r->backlog */
	uint64_t *order;       /* queued_lsn of each, for sorting */
	uint32_t n, cap;
	size_t nmsg, msg_cap;
	int err;
};

static void rt_collect(void *ctx, const struct store_session *s, const struct store_msg *backlog,
                       uint32_t nb_backlog)
{
	struct rt_restore_list *l = ctx;
	struct disp_restore *r;

	if (l->err)
		return;
	if (l->n == l->cap) {
		uint32_t cap = l->cap ? 2 * l->cap : 256;
		struct disp_restore *nr = realloc(l->r, cap * sizeof(*nr));
		uint64_t *no = nr ? realloc(l->order, cap * sizeof(*no)) : NULL;

		if (nr)
			l->r = nr;
		if (!nr || !no) {
			l->err = -ENOMEM;
			return;
		}
		l->order = no;
		l->cap = cap;
	}
	if (l->nmsg + nb_backlog > l->msg_cap) {
		size_t cap = l->msg_cap ? 2 * l->msg_cap : 1024;
		struct disp_msg *nm;

		while (cap < l->nmsg + nb_backlog)
			cap *= 2;
		nm = realloc(l->msgs, cap * sizeof(*nm));
		if (!nm) {
			l->err = -ENOMEM;
			return;
		}
		l->msgs = nm;
		l->msg_cap = cap;
	}
	r = &l->r[l->n];
	memset(r, 0, sizeof(*r));
	r->session_id = s->session_id;
	r->customer_gw = s->customer_gw;
	r->customer_id = (struct disp_str){s->customer, (uint32_t)strlen(s->customer)};
	r->skill = (struct disp_str){s->skill, (uint32_t)strlen(s->skill)};
	r->question = (struct disp_str){s->question, (uint32_t)strlen(s->question)};
	r->channel = s->channel;
	r->priority = s->priority;
	r->open_ref = s->open_ref;
	r->opened_ms = s->opened_ms;
	r->waiting_since_ms = s->waiting_since_ms;
	if (s->assigned) {
		r->agent_id = (struct disp_str){s->agent, (uint32_t)strlen(s->agent)};
		r->agent_gw = s->agent_gw;
		r->replied = s->replied;
	}
	r->transferred = s->transfers > 0;
	/* Pointers into l->msgs are set after the last realloc, by index for now. */
	r->backlog = (const struct disp_msg *)(uintptr_t)l->nmsg;
	r->nb_backlog = nb_backlog;
	for (uint32_t i = 0; i < nb_backlog; i++) {
		struct disp_msg *m = &l->msgs[l->nmsg++];

		m->msg_id = backlog[i].msg_id;
		m->sender = backlog[i].from_agent ? DISP_SIDE_AGENT : DISP_SIDE_CUSTOMER;
		m->text = dstr_of(backlog[i].text);
		m->attachment_ref = dstr_of(backlog[i].attachment);
		m->sent_unix_ms = backlog[i].sent_ms;
		m->agent_id = dstr_of(backlog[i].agent);
	}
	l->order[l->n] = s->queued_lsn;
	l->n++;
}

static const struct rt_restore_list *rt_sort_list;

/* Queue order: priority first, then the original wait, then the log's order. */
static int rt_restore_cmp(const void *a, const void *b)
{
	const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	const struct disp_restore *rx = &rt_sort_list->r[x], *ry = &rt_sort_list->r[y];

	if (rx->priority != ry->priority)
		return rx->priority > ry->priority ? -1 : 1;
	if (rx->waiting_since_ms != ry->waiting_since_ms)
		return rx->waiting_since_ms < ry->waiting_since_ms ? -1 : 1;
	if (rt_sort_list->order[x] != rt_sort_list->order[y])
		return rt_sort_list->order[x] < rt_sort_list->order[y] ? -1 : 1;
	return 0;
}

struct rt_agent_restore {
	struct rt_router *rt;
	uint32_t refused; /* figures not understood, or max_agents reached */
};

static void rt_restore_agent(void *ctx, struct store_str agent, struct store_str figures,
                             uint64_t ts_ms)
{
	struct rt_agent_restore *ar = ctx;
	struct disp_agent_figures f;

	(void)ts_ms;
	if (disp_agent_figures_unpack((const uint8_t *)figures.ptr, figures.len, &f) < 0 ||
	    disp_restore_agent(ar->rt->disp, dstr_of(agent), &f, ar->rt->now_ms) < 0) {
		ar->refused++;
		return;
	}
	ar->rt->store_restored_agents++;
}

static int rt_restore(struct rt_router *rt, const struct store_state *st)
{
	struct rt_restore_list l = {0};
	uint32_t *idx = NULL, refused = 0;
	int ret;

	ret = disp_restore_begin(rt->disp, store_state_max_session(st));
	if (ret)
		return ret;
	store_state_sessions(st, rt_collect, &l);
	ret = l.err;
	if (ret)
		goto out_free;
	idx = malloc((l.n ? l.n : 1) * sizeof(*idx));
	if (!idx) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (uint32_t i = 0; i < l.n; i++) {
		idx[i] = i;
		l.r[i].backlog = l.r[i].nb_backlog ? &l.msgs[(uintptr_t)l.r[i].backlog] : NULL;
	}
	rt_sort_list = &l;
	qsort(idx, l.n, sizeof(*idx), rt_restore_cmp);
	rt_sort_list = NULL;
	for (uint32_t i = 0; i < l.n; i++)
		if (disp_restore_session(rt->disp, &l.r[idx[i]], rt->now_ms) < 0)
			refused++;
	rt->store_restored = l.n - refused;
	/* After the sessions: their agents keep the places those gave them. */
	{
		struct rt_agent_restore ar = {.rt = rt};

		store_state_agents(st, rt_restore_agent, &ar);
		if (ar.refused)
			fprintf(stderr,
			        "surge-router: the figures of %u agents could not be restored "
			        "(not understood, or more agents than limits.max_agents)\n",
			        ar.refused);
	}
	if (refused)
		fprintf(stderr,
		        "surge-router: %u recovered sessions could not be restored (skill gone "
		        "from "
		        "the configuration, or limits too small)\n",
		        refused);
out_free:
	free(idx);
	free(l.r);
	free(l.msgs);
	free(l.order);
	return ret;
}

/* ---- set-up ----------------------------------------------------------------------- */

static void rt_store_conf(const struct ctl_config *cfg, struct store_conf *sc,
                          void (*log)(void *ctx, int level, const char *msg), void *log_ctx)
{
	*sc = (struct store_conf){
	        .dir = cfg->store_dir,
	        .policy = (enum store_policy)cfg->store_policy,
	        .interval_ms = cfg->store_interval_ms,
	        .commit_delay_us = cfg->store_commit_delay_us,
	        .segment_bytes = (uint64_t)cfg->store_segment_mb << 20,
	        .nb_producers = 1,
	        .ring_bytes = 1u << 20,
	        .retention_ms = (uint64_t)cfg->store_retention_days * 86400000u,
	        .checkpoint_bytes = (uint64_t)cfg->store_checkpoint_mb << 20,
	        .history_customers = cfg->store_history_customers,
	        .key = cfg->store_has_key ? cfg->store_key : NULL,
	        .log = log,
	        .log_ctx = log_ctx,
	};
	while (sc->ring_bytes < (uint64_t)cfg->store_ring_mb << 20)
		sc->ring_bytes <<= 1;
}

static void rt_erase_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= 1)
		fprintf(stderr, "surge-router: store: %s\n", msg);
}

/* The tombstone of customer's data (docs/store.md, "Erasure"). */
static struct store_event erase_event(const char *customer, uint64_t now_ms)
{
	return (struct store_event){.type = STORE_REC_ERASE,
	                            .ts_ms = now_ms,
	                            .customer = {customer, (uint32_t)strlen(customer)}};
}

int rt_store_erase(const struct ctl_config *cfg, const char *customer)
{
	struct store_event ev = erase_event(customer, (uint64_t)time(NULL) * 1000u);
	struct store_conf sc;
	struct store *s;
	uint64_t ticket;
	int ret;

	if (cfg->store_dir[0] == '\0')
		return -ENOENT;
	if (ev.customer.len == 0 || ev.customer.len >= DISP_NAME_MAX)
		return -EINVAL;
	rt_store_conf(cfg, &sc, rt_erase_log, NULL);
	s = store_open(&sc, NULL);
	if (!s)
		return -errno;
	ret = store_start(s);
	if (ret == 0)
		ret = store_append(store_producer(s, 0), &ev, &ticket);
	/* Closing writes and syncs the tombstone: erased from here on. */
	if (store_close(s) < 0 && ret == 0)
		ret = -EIO;
	return ret;
}

int rt_store_open(struct rt_router *rt)
{
	const struct ctl_config *cfg = rt->cfg;
	struct store_conf sc;
	struct store_recovery rec;

	if (cfg->store_dir[0] == '\0') {
		fprintf(stderr, "surge-router: warning: no store configured: acknowledgements mean "
		                "processed, not durable\n");
		return 0;
	}
	rt_store_conf(cfg, &sc, rt_store_log, rt);
	rt->history = store_history_create(cfg->store_history_customers);
	if (!rt->history)
		return -errno;
	rt->fig_dirty = calloc(RT_FIG_DIRTY, sizeof(*rt->fig_dirty));
	if (!rt->fig_dirty) {
		store_history_destroy(rt->history);
		rt->history = NULL;
		return -ENOMEM;
	}
	rt->store = store_open(&sc, &rec);
	if (!rt->store) {
		int err = errno;

		fprintf(stderr, "surge-router: cannot open the store in %s: %s\n", cfg->store_dir,
		        strerror(err));
		store_history_destroy(rt->history);
		rt->history = NULL;
		free(rt->fig_dirty);
		rt->fig_dirty = NULL;
		return -err;
	}
	rt->store_rec = rec;
	fprintf(stderr,
	        "surge-router: store %s: recovered %" PRIu64 " records (lsn %" PRIu64 "..%" PRIu64
	        ") from %u segments in %.1f ms, %u open sessions, %u customers with history, "
	        "%" PRIu64 " torn bytes cut\n",
	        cfg->store_dir, rec.records, rec.first_lsn, rec.last_lsn, rec.segments,
	        (double)rec.elapsed_ns / 1e6, rec.sessions_open, rec.customers, rec.torn_bytes);
	return 0;
}

static void rt_resume_gw(void *ctx, uint32_t id, uint64_t epoch, uint64_t ack)
{
	struct rt_router *rt = ctx;
	struct rt_gateway *gw = rt_gw_lookup(rt, id);

	if (!gw)
		return;
	/* Frames up to ack were processed and kept: a resent one is a duplicate. */
	wire_rx_seq_resume(&gw->rx, epoch, ack);
	gw->ack_ok = ack;
	gw->ack_logged = ack;
}

int rt_store_start(struct rt_router *rt)
{
	const struct store_state *st;
	int ret;

	if (!rt->store)
		return 0;
	st = store_recovered(rt->store);
	ret = rt_restore(rt, st);
	if (ret)
		return ret;
	store_state_gw_acks(st, rt_resume_gw, rt);
	ret = store_history_copy(rt->history, store_state_history(st));
	if (ret)
		return ret;
	ret = store_start(rt->store);
	if (ret)
		return ret;
	rt->store_prod = store_producer(rt->store, 0);
	return rt_hist_start(rt);
}

int rt_store_close(struct rt_router *rt)
{
	int ret = 0;

	rt_hist_stop(rt);
	if (rt->store) {
		ret = store_close(rt->store);
		rt->store = NULL;
		rt->store_prod = NULL;
	}
	store_history_destroy(rt->history);
	rt->history = NULL;
	free(rt->fig_dirty);
	rt->fig_dirty = NULL;
	return ret;
}

disp_journal_fn *rt_store_journal(const struct rt_router *rt)
{
	return rt->store ? rt_journal : NULL;
}

/* ---- acks ------------------------------------------------------------------------ */

void rt_store_frame_done(struct rt_router *rt, struct rt_gateway *gw)
{
	struct store_event ev = {.type = STORE_REC_GW_ACK,
	                         .ts_ms = rt->now_ms,
	                         .gw = gw->conf->id,
	                         .ref = gw->rx.epoch,
	                         .msg_id = gw->rx.ack};
	struct rt_ackq *q;

	if (!rt->store) {
		gw->ack_ok = gw->rx.ack;
		return;
	}
	rt_fig_flush(rt);
	/* After this frame's records: a restart resumes the gateway from here. */
	if (gw->rx.ack != gw->ack_logged) {
		rt_append(rt, &ev);
		gw->ack_logged = gw->rx.ack;
	}
	if (gw->aq_n == 0 && rt->store_ticket <= rt->store_durable) {
		gw->ack_ok = gw->rx.ack;
		return;
	}
	if (gw->aq_n == RT_ACKQ) {
		/* Merge into the newest: its ack and ticket are the largest so far. */
		q = &gw->aq[(gw->aq_head + RT_ACKQ - 1) % RT_ACKQ];
	} else {
		q = &gw->aq[(gw->aq_head + gw->aq_n) % RT_ACKQ];
		gw->aq_n++;
	}
	q->ack = gw->rx.ack;
	q->ticket = rt->store_ticket;
}

void rt_store_gw_restart(struct rt_gateway *gw)
{
	gw->ack_ok = 0;
	gw->ack_logged = 0;
	gw->aq_n = 0;
	gw->aq_head = 0;
}

void rt_store_poll(struct rt_router *rt)
{
	uint64_t durable;

	if (!rt->store)
		return;
	rt_hist_poll(rt);
	rt_fig_flush(rt);
	durable = store_durable(rt->store_prod);
	rt->store_durable = durable;
	if (!rt->store_failed && !store_healthy(rt->store))
		rt_store_failed(rt);
	for (uint32_t i = 0; i < rt->nb_gws; i++) {
		struct rt_gateway *gw = &rt->gws[i];
		bool moved = false;

		while (gw->aq_n && gw->aq[gw->aq_head].ticket <= durable) {
			gw->ack_ok = gw->aq[gw->aq_head].ack;
			gw->aq_head = (gw->aq_head + 1) % RT_ACKQ;
			gw->aq_n--;
			moved = true;
		}
		if (moved)
			gw->ack_owed = true;
	}
}

bool rt_store_refuses(const struct rt_router *rt)
{
	return rt->store && rt->store_failed;
}

int rt_store_erase_live(struct rt_router *rt, const char *customer, uint64_t *ticket)
{
	struct store_event ev = erase_event(customer, rt->now_ms);

	if (!rt->store || rt->store_failed)
		return -EROFS;
	rt_append(rt, &ev);
	if (rt->store_failed)
		return -EROFS;
	*ticket = rt->store_ticket;
	store_history_erase(rt->history, ev.customer);
	return 0;
}

/* ---- history ------------------------------------------------------------------- */

uint32_t rt_store_history(const struct rt_router *rt, struct disp_str customer,
                          struct store_past *out)
{
	if (!rt->history || customer.len == 0)
		return 0;
	return store_history_get(rt->history, sstr(customer), out);
}

int rt_store_history_owner(const struct rt_router *rt, uint64_t past_session_id, char *customer,
                           size_t len, struct store_past *out)
{
	if (!rt->history)
		return -ENOENT;
	return store_history_find(rt->history, past_session_id, customer, len, out);
}

/* ---- transcripts, read off the worker ------------------------------------------ */
/*
 * A HistoryRequest takes a slot: FREE -> ASKED (worker, release; the reader
 * acquires) -> ANSWERED (reader, release; the worker acquires on its tick)
 * -> FREE. The reader sleeps on a semaphore the worker posts once per
 * request: requests are rare, a system call each is nothing.
 */
enum { RT_HIST_FREE = 0, RT_HIST_ASKED, RT_HIST_ANSWERED };

struct rt_hist_slot {
	_Atomic int state;
	uint32_t gw;
	char agent[64];
	uint64_t session_id;
	struct store_past past;
	/* the answer, in memory of the reader's (freed by the worker) */
	int rc;
	struct store_msg *msgs;
	uint32_t n, cap;
	char *text; /* every string of msgs, back to back */
	size_t text_len, text_cap;
};

struct rt_hist {
	pthread_t thread;
	sem_t wake;
	_Atomic bool stop;
	struct store *store;
	struct rt_hist_slot slot[RT_HIST_SLOTS];
};

/* Copies one message into the slot: offsets into text now, pointers once complete. */
static void rt_hist_collect(void *ctx, const struct store_msg *m)
{
	struct rt_hist_slot *h = ctx;
	size_t need = (size_t)m->agent.len + m->text.len + m->attachment.len;
	struct store_msg *c;

	if (h->rc < 0)
		return;
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? 2 * h->cap : 64;
		struct store_msg *v = realloc(h->msgs, cap * sizeof(*v));

		if (!v)
			goto out_nomem;
		h->msgs = v;
		h->cap = cap;
	}
	if (h->text_len + need > h->text_cap) {
		size_t cap = h->text_cap ? 2 * h->text_cap : 16384;
		char *t;

		while (cap < h->text_len + need)
			cap *= 2;
		t = realloc(h->text, cap);
		if (!t)
			goto out_nomem;
		h->text = t;
		h->text_cap = cap;
	}
	c = &h->msgs[h->n++];
	*c = *m;
	/* Offsets for now: text may move while it grows. */
	c->agent.ptr = (const char *)(uintptr_t)h->text_len;
	if (m->agent.len)
		memcpy(h->text + h->text_len, m->agent.ptr, m->agent.len);
	h->text_len += m->agent.len;
	c->text.ptr = (const char *)(uintptr_t)h->text_len;
	if (m->text.len)
		memcpy(h->text + h->text_len, m->text.ptr, m->text.len);
	h->text_len += m->text.len;
	c->attachment.ptr = (const char *)(uintptr_t)h->text_len;
	if (m->attachment.len)
		memcpy(h->text + h->text_len, m->attachment.ptr, m->attachment.len);
	h->text_len += m->attachment.len;
	return;
out_nomem:
	h->rc = -ENOMEM;
}

static void *rt_hist_main(void *arg)
{
	struct rt_hist *r = arg;

	for (;;) {
		while (sem_wait(&r->wake) < 0 && errno == EINTR)
			;
		if (atomic_load_explicit(&r->stop, memory_order_acquire))
			return NULL;
		for (unsigned i = 0; i < RT_HIST_SLOTS; i++) {
			struct rt_hist_slot *h = &r->slot[i];

			/* acquire: pairs with the worker's release in rt_store_ask_transcript */
			if (atomic_load_explicit(&h->state, memory_order_acquire) != RT_HIST_ASKED)
				continue;
			h->rc = 0;
			h->n = 0;
			h->text_len = 0;
			{
				int rc = store_transcript(r->store, h->past.session_id,
				                          h->past.opened_lsn, h->past.opened_ms,
				                          rt_hist_collect, h);

				if (h->rc == 0 && rc < 0)
					h->rc = rc;
			}
			for (uint32_t k = 0; k < h->n; k++) {
				struct store_msg *m = &h->msgs[k];

				m->agent.ptr = h->text + (uintptr_t)m->agent.ptr;
				m->text.ptr = h->text + (uintptr_t)m->text.ptr;
				m->attachment.ptr = h->text + (uintptr_t)m->attachment.ptr;
			}
			/* release: the worker reads the answer after its acquire */
			atomic_store_explicit(&h->state, RT_HIST_ANSWERED, memory_order_release);
		}
	}
}

static int rt_hist_start(struct rt_router *rt)
{
	struct rt_hist *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	r->store = rt->store;
	if (sem_init(&r->wake, 0, 0) < 0) {
		ret = -errno;
		free(r);
		return ret;
	}
	ret = pthread_create(&r->thread, NULL, rt_hist_main, r);
	if (ret) {
		sem_destroy(&r->wake);
		free(r);
		return -ret;
	}
	pthread_setname_np(r->thread, "surge-history");
	rt->hist = r;
	return 0;
}

static void rt_hist_stop(struct rt_router *rt)
{
	struct rt_hist *r = rt->hist;

	if (!r)
		return;
	atomic_store_explicit(&r->stop, true, memory_order_release);
	sem_post(&r->wake);
	pthread_join(r->thread, NULL);
	sem_destroy(&r->wake);
	for (unsigned i = 0; i < RT_HIST_SLOTS; i++) {
		free(r->slot[i].msgs);
		free(r->slot[i].text);
	}
	free(r);
	rt->hist = NULL;
}

int rt_store_ask_transcript(struct rt_router *rt, uint32_t gw, const char *agent,
                            uint64_t session_id, const struct store_past *past)
{
	struct rt_hist *r = rt->hist;

	if (!r)
		return -ENOENT;
	for (unsigned i = 0; i < RT_HIST_SLOTS; i++) {
		struct rt_hist_slot *h = &r->slot[i];

		if (atomic_load_explicit(&h->state, memory_order_acquire) != RT_HIST_FREE)
			continue;
		h->gw = gw;
		snprintf(h->agent, sizeof(h->agent), "%s", agent);
		h->session_id = session_id;
		h->past = *past;
		/* release: pairs with the reader's acquire in rt_hist_main */
		atomic_store_explicit(&h->state, RT_HIST_ASKED, memory_order_release);
		sem_post(&r->wake);
		return 0;
	}
	return -EBUSY;
}

/* Answers the reader has ready go out as HistoryReply envelopes. */
static void rt_hist_poll(struct rt_router *rt)
{
	struct rt_hist *r = rt->hist;

	for (unsigned i = 0; r && i < RT_HIST_SLOTS; i++) {
		struct rt_hist_slot *h = &r->slot[i];

		/* acquire: pairs with the reader's release of the answer */
		if (atomic_load_explicit(&h->state, memory_order_acquire) != RT_HIST_ANSWERED)
			continue;
		rt_history_answer(rt, h->gw, h->agent, h->session_id, h->past.session_id, h->rc,
		                  h->msgs, h->n);
		atomic_store_explicit(&h->state, RT_HIST_FREE, memory_order_release);
	}
}

void rt_store_dump(const struct rt_router *rt, FILE *out)
{
	struct store_stats st;

	if (!rt->store)
		return;
	store_stats_get(rt->store, &st);
	fprintf(out, "surge_store_healthy %d\n", !rt->store_failed && st.error == 0);
	fprintf(out, "surge_store_records_total %" PRIu64 "\n", st.appended);
	fprintf(out, "surge_store_written_bytes_total %" PRIu64 "\n", st.written_bytes);
	fprintf(out, "surge_store_writes_total %" PRIu64 "\n", st.writes);
	fprintf(out, "surge_store_syncs_total %" PRIu64 "\n", st.syncs);
	fprintf(out, "surge_store_batches_total %" PRIu64 "\n", st.batches);
	fprintf(out, "surge_store_durable_lsn %" PRIu64 "\n", st.durable_lsn);
	fprintf(out, "surge_store_ring_full_total %" PRIu64 "\n", st.ring_full);
	fprintf(out, "surge_store_segments_created_total %" PRIu64 "\n", st.segments_created);
	fprintf(out, "surge_store_segments_deleted_total %" PRIu64 "\n", st.segments_deleted);
	fprintf(out, "surge_store_checkpoints_total %" PRIu64 "\n", st.checkpoints);
	fprintf(out, "surge_store_write_errors_total %" PRIu64 "\n", st.write_errors);
	fprintf(out, "surge_store_sync_errors_total %" PRIu64 "\n", st.sync_errors);
	fprintf(out, "surge_store_append_errors_total %" PRIu64 "\n", rt->store_append_errors);
	fprintf(out, "surge_store_refused_sessions_total %" PRIu64 "\n", rt->store_refused);
	fprintf(out, "surge_store_recovered_records %" PRIu64 "\n", rt->store_rec.records);
	fprintf(out, "surge_store_recovery_ms %.1f\n", (double)rt->store_rec.elapsed_ns / 1e6);
	fprintf(out, "surge_store_restored_sessions %u\n", rt->store_restored);
	fprintf(out, "surge_store_restored_agents %u\n", rt->store_restored_agents);
	fprintf(out, "surge_store_agent_figures_dropped_total %" PRIu64 "\n",
	        rt->fig_dirty_dropped);
}
