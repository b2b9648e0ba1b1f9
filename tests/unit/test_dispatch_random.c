/* SPDX-License-Identifier: MIT */
/*
 * dispatch: a randomized state-machine test. A million random requests
 * (logins, opens, messages, ends, closes, transfers with and without consent,
 * breaks, offline and ready requests, heartbeats, gateways going down, clock
 * jumps of up to 30 minutes) over six skill groups with overflow steps and
 * every strategy, about fifty agents; disp_check_invariants after every step,
 * plus checks from the outside: a refused request answers one ERROR and
 * changes nothing, a granted break keeps every group of the agent within the
 * cap, no agent is ever assigned more than its capacity.
 *
 * Prints its seed ("seed=N"); SURGE_SEED=N replays it, SURGE_RANDOM_OPS=N
 * sets the number of operations (default 1,000,000).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch.h"

#define N_AGENTS 50
#define N_IDS    96
#define N_SKILLS 7

static const struct disp_skill_conf skills[N_SKILLS] = {
        {.name = "s0",
         .queue_capacity = 20,
         .wrap_up_ms = 5000,
         .nb_overflow = 2,
         .overflow = {{.after_ms = 20000, .to_skill = "s1"}, {.after_ms = 60000, .to_skill = "s2"}},
         .eta_step_ms = 2000},
        {.name = "s1",
         .queue_capacity = 15,
         .strategy = DISP_STRATEGY_ROUND_ROBIN,
         .reroute_ms = 30000},
        {.name = "s2",
         .queue_capacity = 10,
         .strategy = DISP_STRATEGY_BEST_SKILL,
         .break_cap_pct = 30,
         .sla_answer_ms = 20000,
         .first_response_ms = 10000,
         .nb_overflow = 1,
         .overflow = {{.after_ms = 0, .to_skill = "s4"}}},
        {.name = "s3",
         .tenant = "t1",
         .queue_capacity = 12,
         .strategy = DISP_STRATEGY_LONGEST_IDLE,
         .idle_alert_ms = 120000},
        {.name = "s4",
         .queue_capacity = 8,
         .strategy = DISP_STRATEGY_FEWEST_TODAY,
         .hold_max_ms = 20000,
         .break_max_ms = 300000},
        {.name = "s5",
         .queue_capacity = 25,
         .strategy = DISP_STRATEGY_RANDOM,
         .hours = {.open_min = 8 * 60, .close_min = 2 * 60, .utc_offset_min = 480}},
        /* A second least-loaded skill: an agent with s0 and s6 has entries in two llqs under
         * one stamp. */
        {.name = "s6", .queue_capacity = 10},
};
static const char *const skill_names[] = {"s0", "s1", "s2", "s3", "s4", "s5", "s6", "nope"};
static const char *const texts[] = {
        "ok", "客服你好", "", "\xed\xa0\x80",
        "a longer message that takes a bigger block of the pool: well over sixty-four bytes"};

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)(((rng * 2685821657736338717ull) >> 32) % n);
}

static struct disp_str S(const char *s) {
	struct disp_str d = {.ptr = s, .len = (uint32_t)strlen(s)};

	return d;
}

/* ---- what the driver remembers from the answers --------------------------- */

struct r_session {
	uint64_t id;
	uint32_t gw;
	int agent; /* assigned to, -1 none */
};

struct r_agent {
	uint32_t gw;
	uint32_t cap;
	uint32_t load; /* from ASSIGNED and CLOSED, for the capacity check */
	uint32_t nb_skills;
	uint32_t skills[3];
	enum disp_agent_state state;
	bool granted;
};

static struct r_session r_ids[N_IDS];
static struct r_agent r_agents[N_AGENTS];
static unsigned nemit, nerrors;
static unsigned last_state_agent;

static int agent_index(struct disp_str id)
{
	int n = 0;

	if (id.len < 3)
		return -1;
	for (uint32_t i = 2; i < id.len; i++)
		n = n * 10 + (id.ptr[i] - '0');
	return n < N_AGENTS ? n : -1;
}

static void on_emit(void *ctx, const struct disp_out *o)
{
	(void)ctx;
	nemit++;
	switch (o->kind) {
	case DISP_OUT_ERROR:
		nerrors++;
		break;
	case DISP_OUT_QUEUED: {
		unsigned slot = rnd(N_IDS);

		for (unsigned i = 0; i < N_IDS; i++) {
			if (r_ids[i].id == o->session_id)
				return;
			if (r_ids[i].id == 0)
				slot = i;
		}
		r_ids[slot] =
		        (struct r_session){.id = o->session_id, .gw = o->gateway_id, .agent = -1};
		break;
	}
	case DISP_OUT_ASSIGNED:
		if (!o->to_agent)
			break;
		for (unsigned i = 0; i < N_IDS; i++)
			if (r_ids[i].id == o->session_id)
				r_ids[i].agent = agent_index(o->agent_id);
		break;
	case DISP_OUT_CLOSED:
		for (unsigned i = 0; i < N_IDS; i++)
			if (r_ids[i].id == o->session_id && rnd(16))
				r_ids[i].id = 0;
		break;
	case DISP_OUT_AGENT_STATE: {
		int a = agent_index(o->agent_id);

		if (a >= 0) {
			r_agents[a].gw = o->gateway_id;
			r_agents[a].state = o->state;
			r_agents[a].granted = o->granted;
			last_state_agent = (unsigned)a;
		}
		break;
	}
	default:
		break;
	}
}

static const struct r_session *pick(void)
{
	const struct r_session *r = &r_ids[rnd(N_IDS)];

	for (unsigned i = 0; i < 32 && r->id == 0; i++)
		r = &r_ids[rnd(N_IDS)];
	return r;
}

static uint32_t allowed(uint32_t online, uint32_t pct)
{
	uint32_t n = online * pct / 100;

	return n == 0 && online >= 2 ? 1 : n;
}

/* A granted break leaves every group of the agent within its cap. */
static void check_break_cap(struct disp_engine *e, unsigned a)
{
	for (uint32_t i = 0; i < r_agents[a].nb_skills; i++) {
		uint32_t s = r_agents[a].skills[i];
		struct disp_skill_figures f;
		uint32_t pct = skills[s].break_cap_pct ? skills[s].break_cap_pct : 20;

		assert_int_equal(disp_skill_figures_get(e, S(skill_names[s]), &f, 0), 0);
		if (f.agents_on_break > allowed(f.agents_online, pct))
			fail_msg("break cap exceeded in %s: %u on break of %u", skill_names[s],
			         f.agents_on_break, f.agents_online);
	}
}

static void check_refusal_changed_nothing(const struct disp_stats *a, const struct disp_stats *b)
{
	uint64_t more = 0;

	for (int c = 0; c < DISP_ERR_MAX; c++)
		more += b->errors[c] - a->errors[c];
	assert_int_equal(more, 1);
	assert_int_equal(a->sessions_opened, b->sessions_opened);
	assert_int_equal(a->sessions_assigned, b->sessions_assigned);
	assert_int_equal(a->sessions_closed, b->sessions_closed);
	assert_int_equal(a->sessions_busy, b->sessions_busy);
	assert_int_equal(a->delivered_to_agent, b->delivered_to_agent);
	assert_int_equal(a->delivered_to_customer, b->delivered_to_customer);
	assert_int_equal(a->agents_ready, b->agents_ready);
	assert_int_equal(a->sessions_open, b->sessions_open);
	assert_int_equal(a->sessions_waiting, b->sessions_waiting);
}

static void test_random_state_machine(void **state)
{
	struct disp_conf conf = {.skills = skills,
	                         .nb_skills = N_SKILLS,
	                         .max_agents = N_AGENTS + 4,
	                         .max_sessions = 400,
	                         .backlog_max = 4,
	                         .text_pool_bytes = 64 * 4096,
	                         .agent_text_max = 40,
	                         .customer_text_max = 200,
	                         .heartbeat_timeout_ms = 600000,
	                         .emit = on_emit};
	const char *seed_env = getenv("SURGE_SEED");
	const char *ops_env = getenv("SURGE_RANDOM_OPS");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
	uint64_t nops = ops_env ? strtoull(ops_env, NULL, 0) : 1000000;
	uint64_t now = 1700000000000ull; /* a Tuesday evening, 2023 */
	uint64_t sla_total = 0, grants = 0, denials = 0, jumps = 0;
	struct disp_engine *e;
	struct disp_stats st;

	(void)state;
	printf("seed=%llu ops=%llu\n", (unsigned long long)seed, (unsigned long long)nops);
	fflush(stdout);
	rng = seed * 2654435761u + 1;
	conf.seed = seed + 1;
	memset(r_ids, 0, sizeof(r_ids));
	memset(r_agents, 0, sizeof(r_agents));
	e = disp_create(&conf);
	assert_non_null(e);

	for (uint64_t op = 0; op < nops; op++) {
		const struct r_session *rs = pick();
		int ai = rs->agent >= 0 && rnd(8) ? rs->agent : (int)rnd(N_AGENTS);
		uint32_t cust_gw = rnd(16) ? rs->gw : 1 + rnd(3);
		uint32_t agent_gw = rnd(16) ? r_agents[ai].gw : 10 + rnd(4);
		uint64_t sid = rs->id;
		struct disp_stats before, after;
		unsigned emits0, err0;
		int rc = 0, kind = (int)rnd(1000), inv;
		char agent[16];

		if (rnd(32) == 0)
			sid ^= 1ull << (32 + rnd(2)); /* a stale or forged generation */
		snprintf(agent, sizeof(agent), "ag%d", ai);
		if (rnd(200) == 0) {
			now += rnd(30 * 60000 + 1); /* a clock jump of up to 30 minutes */
			jumps++;
		} else {
			now += rnd(400);
		}
		/* Timers due now fire here, so that the request causes only its own answers. */
		disp_tick(e, now);
		inv = disp_check_invariants(e);
		if (inv != 0)
			fail_msg("invariant %d broken by the tick before op %llu, seed %llu", inv,
			         (unsigned long long)op, (unsigned long long)seed);
		emits0 = nemit;
		err0 = nerrors;
		disp_stats_get(e, &before);

		if (kind < 30) {
			struct disp_skill_level lv[3];
			struct disp_login req = {.agent_id = S(agent),
			                         .tenant = S(rnd(3) ? "" : "t1"),
			                         .skills = lv,
			                         .nb_skills = 1 + rnd(3),
			                         .max_sessions = rnd(8)   ? 1 + rnd(4)
			                                         : rnd(2) ? 0
			                                                  : 17 + rnd(8)};
			uint32_t sk[3];

			for (uint32_t i = 0; i < req.nb_skills; i++) {
				sk[i] = rnd(rnd(50) ? N_SKILLS : N_SKILLS + 1);
				lv[i].skill = S(skill_names[sk[i]]);
				lv[i].level = rnd(7);
			}
			rc = disp_agent_login(e, rnd(20) ? 10 + (uint32_t)ai % 4 : 10 + rnd(4),
			                      &req, now);
			if (rc == 0) {
				struct r_agent *ra = &r_agents[ai];

				ra->nb_skills = 0;
				for (uint32_t i = 0; i < req.nb_skills; i++) {
					bool dup = false;

					for (uint32_t j = 0; j < ra->nb_skills; j++)
						dup |= ra->skills[j] == sk[i];
					if (!dup)
						ra->skills[ra->nb_skills++] = sk[i];
				}
			}
		} else if (kind < 90) {
			static const enum disp_agent_state want[] = {DISP_AGENT_READY,
			                                             DISP_AGENT_READY,
			                                             DISP_AGENT_BREAK_REQUESTED,
			                                             DISP_AGENT_BREAK_REQUESTED,
			                                             DISP_AGENT_OFFLINE_REQUESTED,
			                                             DISP_AGENT_ON_BREAK};
			enum disp_agent_state w = want[rnd(6)];
			struct disp_agent_figures af = {0};
			bool was_break;

			/* A repeated request while on break is answered granted: not a new grant.
			 */
			disp_agent_figures_get(e, S(agent), &af, now);
			was_break = af.state == DISP_AGENT_BREAK_REQUESTED ||
			            af.state == DISP_AGENT_ON_BREAK;
			last_state_agent = N_AGENTS;
			rc = disp_agent_state(e, agent_gw, S(agent), w, now);
			if (rc == 0 && w == DISP_AGENT_BREAK_REQUESTED &&
			    last_state_agent == (unsigned)ai) {
				if (r_agents[ai].granted && !was_break) {
					grants++;
					check_break_cap(e, (unsigned)ai);
				} else if (!r_agents[ai].granted) {
					denials++;
				}
			}
		} else if (kind < 150) {
			rc = disp_agent_heartbeat(e, agent_gw, S(agent), now);
		} else if (kind < 320) {
			char cid[16];
			struct disp_open req = {
			        .open_ref = op,
			        .tenant = S(rnd(2) ? "t1" : ""),
			        .skill = S(skill_names[rnd(rnd(50) ? N_SKILLS : N_SKILLS + 1)]),
			        .priority = rnd(4) ? 0 : rnd(10),
			        .question = S(texts[rnd(rnd(20) ? 3 : 5)]),
			        .bot_transcript = S(texts[rnd(3)])};

			snprintf(cid, sizeof(cid), "c%u", rnd(1000));
			req.customer_id = S(cid);
			rc = disp_session_open(e, 1 + rnd(3), &req, now);
		} else if (kind < 520) {
			rc = disp_customer_message(e, cust_gw, sid, op,
			                           S(texts[rnd(rnd(20) ? 3 : 5)]),
			                           S(rnd(4) ? "" : "att"), now);
		} else if (kind < 760) {
			rc = disp_agent_message(e, agent_gw, sid, S(agent), op,
			                        S(texts[rnd(rnd(20) ? 3 : 5)]),
			                        S(rnd(4) ? "" : "att"), rnd(4) == 0, now);
		} else if (kind < 840) {
			rc = disp_session_end(e, cust_gw, sid, rnd(rnd(20) ? 4 : 9), rnd(8) == 0,
			                      S("c"), now);
		} else if (kind < 960) {
			rc = disp_agent_close(e, agent_gw, sid, S(agent), S(rnd(8) ? "notes" : ""),
			                      now);
		} else if (kind < 997) {
			rc = disp_transfer(e, agent_gw, sid, S(agent),
			                   S(skill_names[rnd(N_SKILLS + 1)]), rnd(3) != 0, S("r"),
			                   now);
		} else {
			uint32_t gw = rnd(2) ? 1 + rnd(3) : 10 + rnd(4);

			disp_gateway_down(e, gw, now);
			for (unsigned i = 0; i < N_IDS; i++)
				if (r_ids[i].gw == gw && rnd(4))
					r_ids[i].id = 0;
		}

		inv = disp_check_invariants(e);
		if (inv != 0)
			fail_msg("invariant %d broken after op %llu (kind %d), seed %llu", inv,
			         (unsigned long long)op, kind, (unsigned long long)seed);
		disp_stats_get(e, &after);
		if (rc == 0) {
			assert_int_equal(nerrors, err0);
		} else if (rc == -EBUSY && after.sessions_busy == before.sessions_busy + 1u) {
			assert_int_equal(nemit, emits0 + 1); /* the Busy and nothing else */
			assert_int_equal(nerrors, err0);
		} else {
			if (rc >= 0 || nemit != emits0 + 1 || nerrors != err0 + 1)
				fail_msg("op %llu kind %d rc %d: %u outputs, %u errors; seed %llu",
				         (unsigned long long)op, kind, rc, nemit - emits0,
				         nerrors - err0, (unsigned long long)seed);
			check_refusal_changed_nothing(&before, &after);
		}
	}
	disp_stats_get(e, &st);
	for (uint32_t s = 0; s < N_SKILLS; s++) {
		struct disp_skill_figures f;

		assert_int_equal(disp_skill_figures_get(e, S(skill_names[s]), &f, now), 0);
		for (int k = 0; k < DISP_SLA_MAX; k++)
			sla_total += f.sla_alerts[k];
	}
	printf("opened %llu assigned %llu closed %llu abandoned %llu busy %llu (queue full %llu) "
	       "delivered %llu/%llu breaks %llu granted %llu denied, %llu SLA alerts, %llu clock "
	       "jumps, footprint %zu bytes\n",
	       (unsigned long long)st.sessions_opened, (unsigned long long)st.sessions_assigned,
	       (unsigned long long)st.sessions_closed, (unsigned long long)st.sessions_abandoned,
	       (unsigned long long)st.sessions_busy,
	       (unsigned long long)st.sessions_busy_queue_full,
	       (unsigned long long)st.delivered_to_agent,
	       (unsigned long long)st.delivered_to_customer, (unsigned long long)grants,
	       (unsigned long long)denials, (unsigned long long)sla_total,
	       (unsigned long long)jumps, disp_footprint(e));
	disp_destroy(e);
	/* The run reached the interesting states, not only refusals. */
	if (nops >= 100000) {
		assert_true(st.sessions_assigned > nops / 100);
		assert_true(grants > 0 && denials > 0);
		assert_true(sla_total > 0);
		assert_true(st.sessions_busy_queue_full > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_random_state_machine),
	};

	return cmocka_run_group_tests_name("dispatch_random", tests, NULL, NULL);
}
