/* SPDX-License-Identifier: MIT */
/*
 * dispatch: a burst told to disp_prefetch first, then made request by
 * request, has exactly the effects of the same requests made one by one.
 * Two engines created alike get the same random sequence of bursts (1 to 64
 * requests: logins, state changes, heartbeats, opens, messages, ends,
 * closes, transfers; ids stale, forged or of the wrong agent now and then;
 * ticks and clock jumps between bursts). One is told each burst first, with
 * the right hints or, now and then, wrong ones. Every output and journal
 * event of the two (kind, gateway, ids, texts, backlog) must be the same, in
 * the same order, and so must the figures at the end.
 *
 * Prints its seed ("seed=N"); SURGE_SEED=N replays it, SURGE_RANDOM_OPS=N
 * sets the number of requests (default 300,000).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch.h"

#define N_AGENTS 40
#define N_IDS    128
#define MAX_REQ  64

static const struct disp_skill_conf skills[] = {
        {.name = "s0", .queue_capacity = 30, .wrap_up_ms = 3000},
        {.name = "s1",
         .queue_capacity = 20,
         .strategy = DISP_STRATEGY_ROUND_ROBIN,
         .reroute_ms = 20000,
         .nb_overflow = 1,
         .overflow = {{.after_ms = 10000, .to_skill = "s0"}}},
        {.name = "s2", .queue_capacity = 10, .strategy = DISP_STRATEGY_LONGEST_IDLE},
};
#define N_SKILLS (sizeof(skills) / sizeof(skills[0]))

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* One engine's record: a running hash of everything it said, and how much. */
struct side {
	uint64_t h;
	uint64_t outs, events;
	bool learn; /* this one's outputs feed the generator's session ids */
};

static uint64_t known_ids[N_IDS];
static int known_agent[N_IDS];

static void mix(struct side *s, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		s->h ^= b[i];
		s->h *= 0x100000001b3ull;
	}
}

static void mix64(struct side *s, uint64_t v)
{
	mix(s, &v, sizeof(v));
}

static void mixs(struct side *s, struct disp_str t)
{
	mix64(s, t.len);
	if (t.len)
		mix(s, t.ptr, t.len);
}

static void mix_msg(struct side *s, const struct disp_msg *m)
{
	mix64(s, m->msg_id);
	mix64(s, (uint64_t)m->sender);
	mixs(s, m->text);
	mixs(s, m->attachment_ref);
	mix64(s, m->sent_unix_ms);
	mixs(s, m->agent_id);
}

static void on_emit(void *ctx, const struct disp_out *o)
{
	struct side *s = ctx;

	s->outs++;
	mix64(s, (uint64_t)o->kind);
	mix64(s, o->gateway_id);
	mix64(s, o->session_id);
	mix64(s, o->open_ref);
	mix64(s, ((uint64_t)o->position << 32) | o->eta_ms);
	mix64(s, o->to_agent);
	mixs(s, o->agent_id);
	mixs(s, o->customer_id);
	mixs(s, o->skill);
	mixs(s, o->question);
	mixs(s, o->bot_transcript);
	for (uint32_t i = 0; i < o->nb_backlog; i++)
		mix_msg(s, &o->backlog[i]);
	mix64(s, o->waited_ms);
	mix64(s, o->transferred);
	mix_msg(s, &o->msg);
	mix64(s, (uint64_t)o->close_reason);
	mix64(s, (uint64_t)o->state);
	mix64(s, o->granted);
	mixs(s, o->reason);
	mix64(s, o->retry_after_ms);
	mix64(s, (uint64_t)o->sla);
	mix64(s, o->elapsed_ms);
	mix64(s, (uint64_t)o->error);
	mixs(s, o->detail);
	mix64(s, o->ref);
	if (s->learn && o->kind == DISP_OUT_ASSIGNED && o->to_agent) {
		uint32_t slot = rnd(N_IDS);

		int ai = 0;

		for (uint32_t i = 2; i < o->agent_id.len; i++)
			ai = ai * 10 + (o->agent_id.ptr[i] - '0');
		known_ids[slot] = o->session_id;
		known_agent[slot] = ai;
	} else if (s->learn && o->kind == DISP_OUT_QUEUED && o->session_id) {
		uint32_t slot = rnd(N_IDS);

		known_ids[slot] = o->session_id;
		known_agent[slot] = -1;
	}
}

static void on_journal(void *ctx, const struct disp_event *ev)
{
	struct side *s = ctx;

	s->events++;
	mix64(s, (uint64_t)ev->kind);
	mix64(s, ev->ts_ms);
	mix64(s, ev->session_id);
	mix64(s, ev->gw);
	mixs(s, ev->customer);
	mixs(s, ev->skill);
	mixs(s, ev->agent);
	mixs(s, ev->text);
	mix64(s, ev->msg_id);
	mix64(s, ev->waiting_since_ms);
	mix64(s, (uint64_t)ev->reason);
	mix64(s, (uint64_t)ev->state);
}

/* One generated request, kept so both engines get exactly the same. */
struct req {
	int kind;
	uint32_t gw;
	uint64_t sid;
	char agent[16];
	uint32_t skill;
	uint32_t text;
	bool flag;
};

static const char *const texts[] = {"hello", "", "\xe4\xbd\xa0\xe5\xa5\xbd", "need help",
                                    "please wait"};

static void gen(struct req *r, uint64_t ref)
{
	uint32_t slot = rnd(N_IDS);
	int ai = known_agent[slot] >= 0 && rnd(8) ? known_agent[slot] : (int)rnd(N_AGENTS);

	memset(r, 0, sizeof(*r));
	r->kind = (int)rnd(100);
	r->sid = known_ids[slot];
	if (rnd(24) == 0)
		r->sid ^= 1ull << (32 + rnd(2)); /* stale or forged */
	else if (rnd(48) == 0)
		r->sid = ((uint64_t)rnd(4) << 32) | rnd(1 << 20); /* anything, far off too */
	snprintf(r->agent, sizeof(r->agent), "ag%d", ai);
	r->gw = r->kind < 40 ? 1 + rnd(2) : 10 + (uint32_t)(ai % 2);
	if (rnd(32) == 0)
		r->gw = 1 + rnd(12); /* the wrong gateway */
	r->skill = rnd(N_SKILLS);
	r->text = rnd(sizeof(texts) / sizeof(texts[0]));
	r->flag = rnd(2);
	if (r->kind >= 95 && r->kind < 97)
		r->sid = ref; /* an open: its open_ref */
}

static enum disp_req_kind hint_kind(const struct req *r)
{
	if (r->kind < 25)
		return DISP_REQ_OPEN;
	if (r->kind < 40)
		return r->kind < 37 ? DISP_REQ_CUSTOMER_MESSAGE : DISP_REQ_SESSION_END;
	if (r->kind < 60)
		return DISP_REQ_AGENT_MESSAGE;
	if (r->kind < 75)
		return DISP_REQ_AGENT_CLOSE;
	if (r->kind < 78)
		return DISP_REQ_TRANSFER;
	return DISP_REQ_OTHER;
}

static struct disp_str S(const char *s) {
	return (struct disp_str){s, (uint32_t)strlen(s)};
}

static void
run(struct disp_engine *e, const struct req *r, uint64_t now, uint64_t ref)
{
	static const char *const names[] = {"s0", "s1", "s2", "nope"};
	struct disp_str agent = S(r->agent), text = S(texts[r->text]);
	struct disp_str skill = S(names[r->skill]);

	if (r->kind < 25) {
		struct disp_open o = {.open_ref = ref,
		                      .customer_id = S("cust"),
		                      .skill = skill,
		                      .priority = r->text,
		                      .question = text};

		disp_session_open(e, r->gw, &o, now);
	} else if (r->kind < 37) {
		disp_customer_message(e, r->gw, r->sid, ref, text, S(""), now);
	} else if (r->kind < 40) {
		disp_session_end(e, r->gw, r->sid, r->text % 4, r->flag, S("bye"), now);
	} else if (r->kind < 60) {
		disp_agent_message(e, r->gw, r->sid, agent, ref, text, S(""), r->flag, now);
	} else if (r->kind < 75) {
		disp_agent_close(e, r->gw, r->sid, agent, r->flag ? S("notes") : S(""), now);
	} else if (r->kind < 78) {
		disp_transfer(e, r->gw, r->sid, agent, skill, r->flag, S("why"), now);
	} else if (r->kind < 86) {
		struct disp_skill_level lv[2] = {{skill, 1 + r->text}, {S("s0"), 3}};
		struct disp_login l = {.agent_id = agent,
		                       .skills = lv,
		                       .nb_skills = r->flag ? 2 : 1,
		                       .max_sessions = 1 + r->text};

		disp_agent_login(e, r->gw, &l, now);
	} else if (r->kind < 92) {
		static const enum disp_agent_state want[] = {
		        DISP_AGENT_READY, DISP_AGENT_BREAK_REQUESTED, DISP_AGENT_OFFLINE_REQUESTED};

		disp_agent_state(e, r->gw, agent, want[r->text % 3], now);
	} else if (r->kind < 95) {
		disp_agent_heartbeat(e, r->gw, agent, now);
	} else if (r->kind < 97) {
		disp_tick(e, now);
	} else if (r->kind < 98) {
		disp_gateway_down(e, r->gw, now);
	} else {
		disp_agent_heartbeat(e, r->gw, agent, now);
	}
}

static void burst_equals_one_by_one(uint32_t max_sessions)
{
	struct side sa = {.h = 0xcbf29ce484222325ull, .learn = true};
	struct side sb = {.h = 0xcbf29ce484222325ull};
	struct disp_conf conf = {.skills = skills,
	                         .nb_skills = N_SKILLS,
	                         .max_agents = N_AGENTS + 4,
	                         .max_sessions = max_sessions,
	                         .backlog_max = 4,
	                         .text_pool_bytes = 64 * 4096,
	                         .heartbeat_timeout_ms = 120000,
	                         .emit = on_emit,
	                         .journal = on_journal};
	const char *seed_env = getenv("SURGE_SEED");
	const char *ops_env = getenv("SURGE_RANDOM_OPS");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
	uint64_t nops = ops_env ? strtoull(ops_env, NULL, 0) : 300000;
	uint64_t now = 1700000000000ull, ref = 0, bursts = 0;
	struct disp_engine *a, *b;
	struct disp_stats sta, stb;
	struct req reqs[MAX_REQ];
	struct disp_req hints[MAX_REQ];

	printf("seed=%llu ops=%llu max_sessions=%u\n", (unsigned long long)seed,
	       (unsigned long long)nops, max_sessions);
	fflush(stdout);
	rng = seed * 2654435761u + 1;
	conf.seed = seed + 1;
	for (int i = 0; i < N_IDS; i++)
		known_agent[i] = -1;
	conf.emit_ctx = conf.journal_ctx = &sa;
	a = disp_create(&conf);
	conf.emit_ctx = conf.journal_ctx = &sb;
	b = disp_create(&conf);
	assert_non_null(a);
	assert_non_null(b);

	for (uint64_t op = 0; op < nops; bursts++) {
		uint32_t n = 1 + rnd(MAX_REQ);
		bool wrong = rnd(8) == 0;

		now += rnd(16) == 0 ? rnd(60000) : rnd(300);
		for (uint32_t i = 0; i < n; i++) {
			gen(&reqs[i], ref + i + 1);
			hints[i] = (struct disp_req){.kind = hint_kind(&reqs[i]),
			                             .session_id = reqs[i].sid,
			                             .agent_id = S(reqs[i].agent)};
			if (wrong) {
				/* Hints are only hints: nonsense must change nothing either. */
				hints[i].kind = (enum disp_req_kind)rnd(8);
				hints[i].session_id = ((uint64_t)rng << 7) ^ rng;
				if (rnd(4) == 0)
					hints[i].agent_id = (struct disp_str){NULL, 0};
			}
		}
		disp_prefetch(a, hints, n);
		for (uint32_t i = 0; i < n; i++) {
			uint64_t t = now + i / 8;

			run(a, &reqs[i], t, ref + i + 1);
			run(b, &reqs[i], t, ref + i + 1);
			if (sa.h != sb.h || sa.outs != sb.outs || sa.events != sb.events)
				fail_msg("burst %llu request %u (kind %d): the engines differ, "
				         "seed %llu",
				         (unsigned long long)bursts, i, reqs[i].kind,
				         (unsigned long long)seed);
		}
		ref += n;
		op += n;
		if (bursts % 64 == 0) {
			assert_int_equal(disp_check_invariants(a), 0);
			assert_int_equal(disp_check_invariants(b), 0);
		}
	}
	disp_stats_get(a, &sta);
	disp_stats_get(b, &stb);
	assert_int_equal(sta.sessions_opened, stb.sessions_opened);
	assert_int_equal(sta.sessions_assigned, stb.sessions_assigned);
	assert_int_equal(sta.sessions_closed, stb.sessions_closed);
	assert_int_equal(sta.delivered_to_agent, stb.delivered_to_agent);
	assert_int_equal(sta.delivered_to_customer, stb.delivered_to_customer);
	assert_memory_equal(sta.errors, stb.errors, sizeof(sta.errors));
	for (unsigned k = 0; k < N_SKILLS; k++) {
		struct disp_skill_figures fa, fb;

		assert_int_equal(disp_skill_figures_get(a, S(skills[k].name), &fa, now), 0);
		assert_int_equal(disp_skill_figures_get(b, S(skills[k].name), &fb, now), 0);
		assert_memory_equal(fa.first_response_ms, fb.first_response_ms,
		                    sizeof(fa.first_response_ms));
		assert_memory_equal(fa.handling_ms, fb.handling_ms, sizeof(fa.handling_ms));
		assert_int_equal(fa.offered, fb.offered);
		assert_int_equal(fa.served, fb.served);
		assert_int_equal(fa.waiting, fb.waiting);
		assert_int_equal(fa.mean_handling_ms, fb.mean_handling_ms);
	}
	printf("%llu bursts, %llu outputs, %llu events, %llu assigned, %llu closed\n",
	       (unsigned long long)bursts, (unsigned long long)sa.outs,
	       (unsigned long long)sa.events, (unsigned long long)sta.sessions_assigned,
	       (unsigned long long)sta.sessions_closed);
	/* The sequence must have reached the requests the hints are for. */
	assert_true(sta.sessions_assigned > 100);
	assert_true(sta.delivered_to_customer > 100);
	disp_destroy(a);
	disp_destroy(b);
}

/* Few slots: they run out, and freed ones are reused. */
static void test_burst_equals_one_by_one(void **state)
{
	(void)state;
	burst_equals_one_by_one(300);
}

/*
 * Slots enough (43 MB of them, untouched) that disp_prefetch also loads the
 * pages it prefetched from (page_touch: beyond 32 MB of slots and agents),
 * stale and forged ids included.
 */
static void test_burst_equals_one_by_one_walking_pages(void **state)
{
	(void)state;
	burst_equals_one_by_one(200000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_burst_equals_one_by_one),
	        cmocka_unit_test(test_burst_equals_one_by_one_walking_pages),
	};

	return cmocka_run_group_tests_name("dispatch_burst", tests, NULL, NULL);
}
