/* SPDX-License-Identifier: MIT */
/*
 * Virtual-time M/M/c simulation of the dispatcher, for the Erlang C check.
 *
 * The clock is kept in microseconds (handling times of seconds, arrivals a few
 * per second: ms would round a visible share of the waits); the engine gets it
 * in ms. Only two kinds of event exist: the next arrival (one, kept aside) and
 * session completions (at most one per agent, in a binary heap sized c). The
 * engine decides who serves whom; the simulator only learns it from the
 * Assigned answers, and times the wait from the arrival it recorded when the
 * engine first named the session.
 *
 * The engine's periodic clock (disp_tick) is not driven: nothing the queueing
 * model measures depends on it, and heartbeats are sent with every completion
 * and the timeout set to its maximum, so no agent can be taken for silent.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "dispatch.h"

#define SIM_AGENT_GW    1u
#define SIM_CUSTOMER_GW 2u
#define SIM_QUEUE_MAX   65536u /* waiting sessions; far above any stationary queue of c < 1000 */
#define SIM_NAME_MAX    24u
#define SIM_SKILL       "erlang"
#define SIM_HB_TIMEOUT  UINT32_MAX

struct sim_event {
	uint64_t at_us;
	uint64_t seq; /* ties broken by insertion order: deterministic */
	uint64_t session_id;
	uint32_t agent;
};

/* session id -> arrival (open addressing, linear probing, backward-shift delete) */
struct sim_slot {
	uint64_t session_id; /* 0: empty */
	uint64_t arrival_us;
	uint64_t customer;
};

struct sim {
	struct disp_engine *e;
	const struct bench_sim_conf *conf;
	uint64_t rng[4];
	uint64_t now_us;
	double mu_per_us;

	struct sim_event *heap;
	uint32_t heap_n, heap_cap;
	uint64_t seq;

	struct sim_slot *tab;
	uint32_t tab_mask;
	uint32_t waiting;

	bool in_open; /* inside disp_session_open for customer `opening` */
	uint64_t opening;
	bool failed;

	uint64_t measured; /* measured customers assigned */
	uint64_t waited;
	uint64_t in_target;
	double wait_sum_s;
	double wait_max_s;
	uint32_t max_queue;
	uint64_t target_us;
	char names[][SIM_NAME_MAX]; /* agent ids */
};

/* xoshiro256**, seeded through splitmix64 */
static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t sim_rand(struct sim *s)
{
	uint64_t *r = s->rng;
	uint64_t out = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;

	r[2] ^= r[0];
	r[3] ^= r[1];
	r[1] ^= r[2];
	r[0] ^= r[3];
	r[2] ^= t;
	r[3] = rotl(r[3], 45);
	return out;
}

static void sim_seed(struct sim *s, uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		uint64_t z = (seed += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		s->rng[i] = z ^ (z >> 31);
	}
}

/* Exponential with the given rate (per us), in us; never 0 so order is strict. */
static uint64_t sim_exp_us(struct sim *s, double rate_per_us)
{
	/* 53 random bits, in (0, 1]: log never sees 0 */
	double u = ((double)(sim_rand(s) >> 11) + 1.0) * 0x1.0p-53;
	double x = -log(u) / rate_per_us;

	return x < 1.0 ? 1 : (uint64_t)x;
}

/* ---- completion heap ------------------------------------------------------- */

static bool ev_before(const struct sim_event *a, const struct sim_event *b)
{
	return a->at_us < b->at_us || (a->at_us == b->at_us && a->seq < b->seq);
}

static int heap_push(struct sim *s, struct sim_event ev)
{
	uint32_t i = s->heap_n;

	if (i == s->heap_cap)
		return -EIO; /* more sessions in hand than agents: the engine broke capacity */
	ev.seq = s->seq++;
	while (i > 0) {
		uint32_t p = (i - 1) / 2;

		if (!ev_before(&ev, &s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = ev;
	s->heap_n++;
	return 0;
}

static struct sim_event heap_pop(struct sim *s)
{
	struct sim_event top = s->heap[0], last = s->heap[--s->heap_n];
	uint32_t i = 0, n = s->heap_n;

	for (;;) {
		uint32_t l = 2 * i + 1, m;

		if (l >= n)
			break;
		m = l;
		if (l + 1 < n && ev_before(&s->heap[l + 1], &s->heap[l]))
			m = l + 1;
		if (!ev_before(&s->heap[m], &last))
			break;
		s->heap[i] = s->heap[m];
		i = m;
	}
	if (n)
		s->heap[i] = last;
	return top;
}

/* ---- waiting sessions ------------------------------------------------------ */

static uint32_t tab_hash(const struct sim *s, uint64_t id)
{
	return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & s->tab_mask;
}

static struct sim_slot *tab_find(struct sim *s, uint64_t id)
{
	for (uint32_t i = tab_hash(s, id);; i = (i + 1) & s->tab_mask) {
		if (s->tab[i].session_id == id)
			return &s->tab[i];
		if (s->tab[i].session_id == 0)
			return NULL;
	}
}

static int tab_add(struct sim *s, uint64_t id, uint64_t arrival_us, uint64_t customer)
{
	uint32_t i;

	if (id == 0 || s->waiting >= SIM_QUEUE_MAX + 1)
		return -EIO;
	for (i = tab_hash(s, id); s->tab[i].session_id; i = (i + 1) & s->tab_mask)
		if (s->tab[i].session_id == id)
			return -EIO; /* named twice */
	s->tab[i] = (struct sim_slot){id, arrival_us, customer};
	s->waiting++;
	return 0;
}

static void tab_del(struct sim *s, struct sim_slot *slot)
{
	uint32_t i = (uint32_t)(slot - s->tab), j = i;

	s->waiting--;
	/* backward shift: keep every later key reachable from its home slot */
	for (;;) {
		uint32_t h;

		j = (j + 1) & s->tab_mask;
		if (s->tab[j].session_id == 0)
			break;
		h = tab_hash(s, s->tab[j].session_id);
		if (((j - h) & s->tab_mask) < ((j - i) & s->tab_mask))
			continue;
		s->tab[i] = s->tab[j];
		i = j;
	}
	s->tab[i].session_id = 0;
}

/* ---- the engine's answers --------------------------------------------------- */

static uint32_t agent_index(struct disp_str id)
{
	uint32_t v = 0;

	for (uint32_t i = 1; i < id.len; i++) /* "a<decimal>" */
		v = v * 10 + (uint32_t)(id.ptr[i] - '0');
	return v;
}

static void on_assigned(struct sim *s, const struct disp_out *o)
{
	struct sim_slot *slot = tab_find(s, o->session_id);
	uint64_t arrival, customer, wait_us;
	struct sim_event ev = {0};

	if (slot) {
		arrival = slot->arrival_us;
		customer = slot->customer;
		tab_del(s, slot);
	} else if (s->in_open) {
		arrival = s->now_us; /* assigned at once, without a QUEUED first */
		customer = s->opening - 1;
	} else {
		s->failed = true;
		return;
	}
	wait_us = s->now_us - arrival;
	if (customer >= s->conf->warmup && customer < s->conf->warmup + s->conf->customers) {
		double w = (double)wait_us / 1e6;

		s->measured++;
		s->wait_sum_s += w;
		if (w > s->wait_max_s)
			s->wait_max_s = w;
		if (wait_us > 0)
			s->waited++;
		if (wait_us <= s->target_us)
			s->in_target++;
	}
	ev.at_us = s->now_us + sim_exp_us(s, s->mu_per_us);
	ev.session_id = o->session_id;
	ev.agent = agent_index(o->agent_id);
	if (ev.agent >= s->conf->agents || heap_push(s, ev) < 0)
		s->failed = true;
}

static void sim_emit(void *ctx, const struct disp_out *o)
{
	struct sim *s = ctx;

	switch (o->kind) {
	case DISP_OUT_QUEUED:
		/* the first QUEUED names the session (later ones update position / ETA) */
		if (s->in_open && o->open_ref == s->opening && !tab_find(s, o->session_id)) {
			if (tab_add(s, o->session_id, s->now_us, s->opening - 1) < 0)
				s->failed = true;
			if (s->waiting > s->max_queue)
				s->max_queue = s->waiting;
		}
		break;
	case DISP_OUT_ASSIGNED:
		if (o->to_agent)
			on_assigned(s, o);
		break;
	case DISP_OUT_CLOSED:
	case DISP_OUT_AGENT_STATE:
	case DISP_OUT_DELIVER:
	case DISP_OUT_SLA_ALERT:
		break;
	case DISP_OUT_BUSY:
	case DISP_OUT_ERROR:
	default:
		s->failed = true;
		break;
	}
}

/* ---- the run ---------------------------------------------------------------- */

static uint64_t now_ms(const struct sim *s)
{
	return s->now_us / 1000;
}

static int sim_login(struct sim *s)
{
	const struct disp_skill_level lvl = {{SIM_SKILL, sizeof(SIM_SKILL) - 1}, 3};

	for (uint32_t a = 0; a < s->conf->agents; a++) {
		int n = snprintf(s->names[a], SIM_NAME_MAX, "a%u", a);
		struct disp_login req = {
		        .agent_id = {s->names[a], (uint32_t)n},
		        .skills = &lvl,
		        .nb_skills = 1,
		        .max_sessions = 1,
		};

		if (disp_agent_login(s->e, SIM_AGENT_GW, &req, 0) < 0)
			return -EIO;
	}
	return 0;
}

static int sim_arrive(struct sim *s, uint64_t customer)
{
	char cid[SIM_NAME_MAX], *p = cid + sizeof(cid);
	uint64_t v = customer;
	struct disp_open req = {
	        .open_ref = customer + 1,
	        .skill = {SIM_SKILL, sizeof(SIM_SKILL) - 1},
	};
	int rc;

	do { /* "c<decimal>", built backwards: cheaper than printf per arrival */
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	*--p = 'c';
	req.customer_id = (struct disp_str){p, (uint32_t)(cid + sizeof(cid) - p)};
	s->in_open = true;
	s->opening = customer + 1; /* open_ref; 0 is "none" on the wire */
	rc = disp_session_open(s->e, SIM_CUSTOMER_GW, &req, now_ms(s));
	s->in_open = false;
	return rc;
}

static int sim_complete(struct sim *s, const struct sim_event *ev)
{
	struct disp_str id = {s->names[ev->agent], (uint32_t)strlen(s->names[ev->agent])};

	if (disp_agent_heartbeat(s->e, SIM_AGENT_GW, id, now_ms(s)) < 0)
		return -EIO;
	return disp_agent_close(s->e, SIM_AGENT_GW, ev->session_id, id,
	                        (struct disp_str){"done", 4}, now_ms(s));
}

static bool conf_ok(const struct bench_sim_conf *c)
{
	return c && c->agents >= 1 && c->agents <= 100000 && c->arrival_per_s > 0 &&
	       c->handle_mean_s > 0 && c->target_s >= 0 && c->customers >= 1 &&
	       c->arrival_per_s * c->handle_mean_s < c->agents;
}

int bench_erlang_c(uint32_t agents, double arrival_per_s, double handle_mean_s, double target_s,
                   struct bench_erlang *out)
{
	double a = arrival_per_s * handle_mean_s, b = 1.0, c, rate;

	if (!out || agents == 0 || !(arrival_per_s > 0) || !(handle_mean_s > 0) ||
	    !(target_s >= 0) || !(a < agents))
		return -EINVAL;
	/* Erlang B by its stable recursion, then C from B */
	for (uint32_t k = 1; k <= agents; k++)
		b = a * b / (k + a * b);
	c = agents * b / (agents - a * (1.0 - b));
	rate = agents / handle_mean_s - arrival_per_s; /* c mu - lambda */
	out->p_wait = c;
	out->mean_wait_s = c / rate;
	out->service_level = 1.0 - c * exp(-rate * target_s);
	return 0;
}

int bench_sim_run(const struct bench_sim_conf *conf, struct bench_sim_result *out)
{
	struct disp_skill_conf skill = {.name = SIM_SKILL};
	struct disp_conf dc = {0};
	uint64_t next_arrival, arrived = 0, total;
	double lambda_per_us;
	struct sim *s;
	uint32_t tab_size = 1;
	int rc = -EINVAL;

	if (!conf_ok(conf) || !out)
		goto out;
	rc = -ENOMEM;
	s = calloc(1, sizeof(*s) + (size_t)conf->agents * SIM_NAME_MAX);
	if (!s)
		goto out;
	s->conf = conf;
	s->heap_cap = conf->agents;
	s->heap = calloc(conf->agents, sizeof(*s->heap));
	while (tab_size < 2 * (SIM_QUEUE_MAX + 1))
		tab_size <<= 1;
	s->tab = calloc(tab_size, sizeof(*s->tab));
	if (!s->heap || !s->tab)
		goto out_free_sim;
	s->tab_mask = tab_size - 1;
	sim_seed(s, conf->seed);
	s->mu_per_us = 1.0 / (conf->handle_mean_s * 1e6);
	s->target_us = (uint64_t)llround(conf->target_s * 1e6);
	lambda_per_us = conf->arrival_per_s / 1e6;

	skill.queue_capacity = SIM_QUEUE_MAX;
	skill.sla_answer_ms = (uint32_t)fmin(conf->target_s * 1000.0, (double)UINT32_MAX);
	if (skill.sla_answer_ms == 0)
		skill.sla_answer_ms = 1;
	dc.skills = &skill;
	dc.nb_skills = 1;
	dc.max_agents = conf->agents;
	dc.max_sessions = conf->agents + SIM_QUEUE_MAX;
	dc.backlog_max = 4;
	dc.text_pool_bytes = 1u << 20;
	dc.heartbeat_timeout_ms = SIM_HB_TIMEOUT;
	dc.seed = conf->seed;
	dc.emit = sim_emit;
	dc.emit_ctx = s;
	s->e = disp_create(&dc);
	if (!s->e) {
		rc = -errno;
		goto out_free_tables;
	}
	rc = -EIO;
	if (sim_login(s) < 0)
		goto out_destroy;

	/* Arrivals go on past the measured window so that its last customers
	 * meet a stationary system; the run ends when all of them are served. */
	total = conf->warmup + conf->customers;
	next_arrival = sim_exp_us(s, lambda_per_us);
	while (s->measured < conf->customers) {
		if (s->heap_n == 0 || next_arrival <= s->heap[0].at_us) {
			s->now_us = next_arrival;
			if (sim_arrive(s, arrived) < 0)
				goto out_destroy;
			arrived++;
			next_arrival = s->now_us + sim_exp_us(s, lambda_per_us);
		} else {
			struct sim_event ev = heap_pop(s);

			s->now_us = ev.at_us;
			if (sim_complete(s, &ev) < 0)
				goto out_destroy;
		}
		if (s->failed)
			goto out_destroy;
		if (arrived > total + 16ull * SIM_QUEUE_MAX)
			goto out_destroy; /* measured customers never served */
	}

	memset(out, 0, sizeof(*out));
	out->customers = s->measured;
	out->mean_wait_s = s->wait_sum_s / (double)s->measured;
	out->p_wait = (double)s->waited / (double)s->measured;
	out->service_level = (double)s->in_target / (double)s->measured;
	out->max_wait_s = s->wait_max_s;
	out->max_queue = s->max_queue;
	out->virtual_s = (double)s->now_us / 1e6;
	out->engine_service_level = -1.0;
	{
		struct disp_skill_figures f;

		if (disp_skill_figures_get(s->e,
		                           (struct disp_str){SIM_SKILL, sizeof(SIM_SKILL) - 1}, &f,
		                           now_ms(s)) == 0 &&
		    f.answered)
			out->engine_service_level =
			        (double)f.answered_in_target / (double)f.answered;
	}
	rc = 0;

out_destroy:
	disp_destroy(s->e);
out_free_tables:
	free(s->tab);
	free(s->heap);
out_free_sim:
	free(s);
out:
	return rc;
}
