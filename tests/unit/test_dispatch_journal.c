/* SPDX-License-Identifier: MIT */
/*
 * dispatch: the journal (what the store keeps) and restoring an engine from
 * it after a restart.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dispatch.h"

#define GW_WEB 1
#define GW_WB1 7
#define GW_WB2 8

#define MAX_EV 256

struct jrec {
	enum disp_event_kind kind;
	uint64_t session_id;
	uint64_t waiting_since;
	char agent[64];
	char skill[64];
	char text[256];
	char question[256];
	char customer[64];
	enum disp_close_reason reason;
	uint32_t rating;
	bool front, by_agent;
	enum disp_agent_state state;
};

static struct jrec jr[MAX_EV];
static unsigned njr;

struct orec {
	enum disp_out_kind kind;
	uint32_t gw;
	uint64_t session_id;
	uint64_t open_ref;
	uint32_t position;
	uint32_t nb_backlog;
	bool to_agent, transferred;
	char agent[64];
};

static struct orec outs[MAX_EV];
static unsigned nout;

static void cp(char *d, size_t n, struct disp_str s)
{
	size_t k = s.len < n - 1 ? s.len : n - 1;

	if (k)
		memcpy(d, s.ptr, k);
	d[k] = '\0';
}

static void on_journal(void *ctx, const struct disp_event *ev)
{
	struct jrec *r;

	(void)ctx;
	assert_true(njr < MAX_EV);
	r = &jr[njr++];
	memset(r, 0, sizeof(*r));
	r->kind = ev->kind;
	r->session_id = ev->session_id;
	r->waiting_since = ev->waiting_since_ms;
	cp(r->agent, sizeof(r->agent), ev->agent);
	cp(r->skill, sizeof(r->skill), ev->skill);
	cp(r->text, sizeof(r->text), ev->text);
	cp(r->question, sizeof(r->question), ev->question);
	cp(r->customer, sizeof(r->customer), ev->customer);
	r->reason = ev->reason;
	r->rating = ev->rating;
	r->front = ev->front;
	r->by_agent = ev->by_agent;
	r->state = ev->state;
}

static void on_emit(void *ctx, const struct disp_out *o)
{
	struct orec *r;

	(void)ctx;
	assert_true(nout < MAX_EV);
	r = &outs[nout++];
	memset(r, 0, sizeof(*r));
	r->kind = o->kind;
	r->gw = o->gateway_id;
	r->session_id = o->session_id;
	r->open_ref = o->open_ref;
	r->position = o->position;
	r->nb_backlog = o->nb_backlog;
	r->to_agent = o->to_agent;
	r->transferred = o->transferred;
	cp(r->agent, sizeof(r->agent), o->agent_id);
}

static const struct disp_skill_conf skills[] = {
        {.name = "presale"},
        {.name = "aftersale"},
};

static struct disp_engine *make_sized(uint32_t max_sessions, uint32_t backlog_max)
{
	struct disp_conf conf = {.skills = skills,
	                         .nb_skills = 2,
	                         .max_agents = 8,
	                         .max_sessions = max_sessions,
	                         .backlog_max = backlog_max,
	                         .heartbeat_timeout_ms = 5000,
	                         .emit = on_emit,
	                         .journal = on_journal};
	struct disp_engine *e = disp_create(&conf);

	assert_non_null(e);
	njr = nout = 0;
	return e;
}

static struct disp_engine *make(void)
{
	return make_sized(64, 8);
}

static struct disp_str S(const char *s) {
	return (struct disp_str){.ptr = s, .len = (uint32_t)strlen(s)};
}

static void
login(struct disp_engine *e, uint32_t gw, const char *id, const char *skill, uint64_t now)
{
	struct disp_skill_level lv[1] = {{.skill = S(skill), .level = 3}};
	struct disp_login req = {
	        .agent_id = S(id), .skills = lv, .nb_skills = 1, .max_sessions = 1};

	assert_int_equal(disp_agent_login(e, gw, &req, now), 0);
}

static uint64_t open_s(struct disp_engine *e, uint64_t ref, const char *cust, const char *q,
                       uint64_t now)
{
	struct disp_open req = {.open_ref = ref,
	                        .customer_id = S(cust),
	                        .skill = S("presale"),
	                        .channel = 1,
	                        .question = S(q)};

	assert_int_equal(disp_session_open(e, GW_WEB, &req, now), 0);
	for (unsigned i = 0; i < nout; i++)
		if (outs[i].kind == DISP_OUT_QUEUED && outs[i].open_ref == ref)
			return outs[i].session_id;
	fail_msg("no QUEUED for %llu", (unsigned long long)ref);
	return 0;
}

static const struct jrec *jfind(enum disp_event_kind kind, uint64_t sid)
{
	for (unsigned i = 0; i < njr; i++)
		if (jr[i].kind == kind && jr[i].session_id == sid)
			return &jr[i];
	return NULL;
}

/* Open a session and return its id, whether it waits or is assigned at once. */
static uint64_t open_any(struct disp_engine *e, uint64_t ref, const char *cust, uint64_t now)
{
	struct disp_open req = {.open_ref = ref,
	                        .customer_id = S(cust),
	                        .skill = S("presale"),
	                        .channel = 1,
	                        .question = S("hello")};

	nout = 0;
	assert_int_equal(disp_session_open(e, GW_WEB, &req, now), 0);
	for (unsigned i = 0; i < nout; i++)
		if ((outs[i].kind == DISP_OUT_QUEUED || outs[i].kind == DISP_OUT_ASSIGNED) &&
		    outs[i].open_ref == ref)
			return outs[i].session_id;
	fail_msg("no QUEUED or ASSIGNED for %llu", (unsigned long long)ref);
	return 0;
}

/*
 * Ids stay above the last run's however often slots are reused: a slot whose
 * generations run out is not used again (the last run's ids reached the top
 * generation here, so every slot has one generation left).
 */
static void test_ids_stay_above_the_last_runs(void **state)
{
	const uint64_t last = ((uint64_t)(UINT32_MAX - 2) << 32) | 1;
	struct disp_engine *e = make();
	uint64_t ids[6];

	(void)state;
	assert_int_equal(disp_restore_begin(e, last), 0);
	login(e, GW_WB1, "alice", "presale", 1000);
	for (unsigned i = 0; i < 6; i++) {
		ids[i] = open_any(e, i + 1, "cust-1", 1000 + 10 * i);
		assert_true(ids[i] > last);
		for (unsigned j = 0; j < i; j++)
			assert_true(ids[i] != ids[j]);
		assert_int_equal(
		        disp_agent_close(e, GW_WB1, ids[i], S("alice"), S("done"), 1005 + 10 * i),
		        0);
		assert_int_equal(disp_check_invariants(e), 0);
	}
	/* The ended ones are unknown now. */
	assert_int_equal(disp_customer_message(e, GW_WEB, ids[0], 9, S("?"), S(""), 2000), -EINVAL);
	disp_destroy(e);
}

/*
 * An agent's notes may follow the customer's end (no wrap-up configured):
 * opens meanwhile take other slots, here the one an agent's own close left.
 */
static void test_late_notes_outlive_other_opens(void **state)
{
	struct disp_engine *e = make();
	uint64_t s1, s2, s3;

	(void)state;
	s1 = open_any(e, 1, "cust-1", 1000);
	s2 = open_any(e, 2, "cust-2", 1000);
	login(e, GW_WB1, "alice", "presale", 1100);
	login(e, GW_WB2, "bob", "presale", 1100);
	/* bob closes his with notes, then alice's customer leaves. */
	assert_int_equal(disp_agent_close(e, GW_WB2, s2, S("bob"), S("solved"), 2000), 0);
	assert_int_equal(disp_session_end(e, GW_WEB, s1, 1, false, S(""), 2100), 0);
	s3 = open_any(e, 3, "cust-3", 2200);
	assert_true(s3 != s1 && s3 != s2);
	njr = 0;
	assert_int_equal(disp_agent_close(e, GW_WB1, s1, S("alice"), S("sent the refund"), 2300),
	                 0);
	assert_non_null(jfind(DISP_EV_NOTES, s1));
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

/*
 * Every session keeps its backlog_max messages however the others fill the
 * shared entries (a session's own entry in its slot makes up the pool's
 * count): 4 sessions, 2 messages each held (a third pushes out the first),
 * 4 pool entries.
 */
static void test_each_session_keeps_its_backlog(void **state)
{
	static const char *const agents[4] = {"alice", "bob", "carol", "dave"};
	struct disp_engine *e = make_sized(4, 2);
	struct disp_stats st;
	uint64_t sid[4];

	(void)state;
	for (unsigned i = 0; i < 4; i++) {
		char cust[16];

		login(e, GW_WB1, agents[i], "presale", 1000);
		snprintf(cust, sizeof(cust), "cust-%u", i);
		sid[i] = open_any(e, i + 1, cust, 1100);
	}
	for (unsigned i = 0; i < 4; i++)
		for (unsigned m = 0; m < 3; m++)
			assert_int_equal(disp_customer_message(e, GW_WEB, sid[i], 10 * i + m,
			                                       S("where?"), S(""), 1200 + m),
			                 0);
	disp_stats_get(e, &st);
	assert_int_equal(st.backlog_dropped, 0);
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

static void test_journal_follows_a_session(void **state)
{
	struct disp_engine *e = make();
	const struct jrec *j;
	uint64_t sid;

	(void)state;
	sid = open_s(e, 1, "cust-1", "where is my parcel", 1000);
	j = jfind(DISP_EV_OPENED, sid);
	assert_non_null(j);
	assert_string_equal(j->customer, "cust-1");
	assert_string_equal(j->question, "where is my parcel");
	j = jfind(DISP_EV_QUEUED, sid);
	assert_non_null(j);
	assert_int_equal(j->waiting_since, 1000);
	assert_false(j->front);
	assert_int_equal(disp_customer_message(e, GW_WEB, sid, 5, S("hello?"), S(""), 1500), 0);
	assert_non_null(jfind(DISP_EV_MSG_IN, sid));
	login(e, GW_WB1, "alice", "presale", 2000);
	j = jfind(DISP_EV_ASSIGNED, sid);
	assert_non_null(j);
	assert_string_equal(j->agent, "alice");
	assert_true(jfind(DISP_EV_AGENT_STATE, 0) != NULL);
	assert_int_equal(disp_agent_message(e, GW_WB1, sid, S("alice"), 6, S("on its way"), S(""),
	                                    false, 2500),
	                 0);
	j = jfind(DISP_EV_MSG_OUT, sid);
	assert_non_null(j);
	assert_string_equal(j->text, "on its way");
	assert_int_equal(disp_session_end(e, GW_WEB, sid, 1, false, S(""), 3000), 0);
	j = jfind(DISP_EV_ENDED, sid);
	assert_non_null(j);
	assert_int_equal(j->reason, DISP_CLOSE_CUSTOMER_ENDED);
	assert_int_equal(j->rating, 1);
	assert_string_equal(j->agent, "alice");
	assert_string_equal(j->customer, "cust-1");
	assert_string_equal(j->question, "where is my parcel");
	/* Notes after the close are journalled on their own. */
	assert_int_equal(disp_agent_close(e, GW_WB1, sid, S("alice"), S("sent tracking"), 3100), 0);
	j = jfind(DISP_EV_NOTES, sid);
	assert_non_null(j);
	assert_string_equal(j->text, "sent tracking");
	/* A refused request journals nothing. */
	njr = 0;
	assert_int_equal(disp_customer_message(e, GW_WEB, sid, 7, S("late"), S(""), 3200), -EINVAL);
	assert_int_equal(njr, 0);
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

static void test_restore_keeps_queue_and_agent(void **state)
{
	struct disp_engine *e = make();
	struct disp_msg bl[2] = {
	        {.msg_id = 5,
	         .sender = DISP_SIDE_CUSTOMER,
	         .text = S("hello?"),
	         .sent_unix_ms = 900},
	        {.msg_id = 6, .sender = DISP_SIDE_AGENT, .text = S("hi"), .sent_unix_ms = 950}};
	struct disp_restore with_agent = {.session_id = (3ull << 32) | 7,
	                                  .customer_gw = GW_WEB,
	                                  .customer_id = S("cust-a"),
	                                  .skill = S("presale"),
	                                  .question = S("q-a"),
	                                  .opened_ms = 500,
	                                  .waiting_since_ms = 500,
	                                  .agent_id = S("alice"),
	                                  .agent_gw = GW_WB1,
	                                  .replied = true,
	                                  .backlog = bl,
	                                  .nb_backlog = 2};
	struct disp_restore w1 = {.session_id = (2ull << 32) | 3,
	                          .customer_gw = GW_WEB,
	                          .customer_id = S("cust-b"),
	                          .skill = S("presale"),
	                          .opened_ms = 600,
	                          .waiting_since_ms = 600};
	struct disp_restore w2 = w1;
	uint64_t sid;

	(void)state;
	w2.session_id = (1ull << 32) | 9;
	w2.customer_id = S("cust-c");
	w2.waiting_since_ms = 700;
	assert_int_equal(disp_restore_begin(e, (3ull << 32) | 9), 0);
	assert_int_equal(disp_restore_session(e, &with_agent, 10000), 0);
	assert_int_equal(disp_restore_session(e, &w1, 10000), 0);
	assert_int_equal(disp_restore_session(e, &w2, 10000), 0);
	/* The same slot twice, an unknown skill: refused. */
	assert_int_equal(disp_restore_session(e, &w2, 10000), -EINVAL);
	w1.skill = S("nope");
	w1.session_id = (1ull << 32) | 20;
	assert_int_equal(disp_restore_session(e, &w1, 10000), -EINVAL);
	assert_int_equal(njr, 0);
	assert_int_equal(nout, 0);
	assert_int_equal(disp_check_invariants(e), 0);

	/* alice comes back: her session is hers again, with its backlog. */
	login(e, GW_WB1, "alice", "presale", 11000);
	{
		bool got = false;

		for (unsigned i = 0; i < nout; i++)
			if (outs[i].kind == DISP_OUT_ASSIGNED && outs[i].to_agent &&
			    outs[i].session_id == with_agent.session_id) {
				got = true;
				assert_int_equal(outs[i].nb_backlog, 2);
			}
		assert_true(got);
	}
	/* New ids are above the last run's. */
	sid = open_s(e, 77, "cust-d", "new", 12000);
	assert_true(sid >> 32 > 3);
	/* Waiting sessions in their order: bob takes the one waiting since 600 first. */
	nout = 0;
	login(e, GW_WB2, "bob", "presale", 13000);
	for (unsigned i = 0; i < nout; i++)
		if (outs[i].kind == DISP_OUT_ASSIGNED && outs[i].to_agent)
			assert_int_equal(outs[i].session_id, (2ull << 32) | 3);
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

static void test_restore_agent_not_back_requeues_front(void **state)
{
	struct disp_engine *e = make();
	struct disp_restore r = {.session_id = (1ull << 32) | 1,
	                         .customer_gw = GW_WEB,
	                         .customer_id = S("cust-a"),
	                         .skill = S("presale"),
	                         .opened_ms = 500,
	                         .waiting_since_ms = 500,
	                         .agent_id = S("alice"),
	                         .agent_gw = GW_WB1};
	struct disp_restore w = {.session_id = (1ull << 32) | 2,
	                         .customer_gw = GW_WEB,
	                         .customer_id = S("cust-b"),
	                         .skill = S("presale"),
	                         .opened_ms = 400,
	                         .waiting_since_ms = 400};
	const struct jrec *j;
	bool told = false;

	(void)state;
	assert_int_equal(disp_restore_begin(e, (1ull << 32) | 2), 0);
	assert_int_equal(disp_restore_session(e, &w, 10000), 0);
	assert_int_equal(disp_restore_session(e, &r, 10000), 0);
	/* Past the heartbeat timeout (5 s) without alice. */
	disp_tick(e, 15001);
	assert_int_equal(disp_check_invariants(e), 0);
	j = jfind(DISP_EV_QUEUED, r.session_id);
	assert_non_null(j);
	assert_true(j->front);
	assert_int_equal(j->waiting_since, 500);
	for (unsigned i = 0; i < nout; i++)
		if (outs[i].kind == DISP_OUT_QUEUED && outs[i].session_id == r.session_id) {
			told = true;
			assert_int_equal(outs[i].position, 1); /* at the front */
		}
	assert_true(told);
	/* alice logging in late gets nothing back specially: she is a new READY agent. */
	nout = 0;
	login(e, GW_WB1, "alice", "presale", 16000);
	for (unsigned i = 0; i < nout; i++)
		if (outs[i].kind == DISP_OUT_ASSIGNED && outs[i].to_agent) {
			assert_int_equal(outs[i].session_id, r.session_id);
			assert_true(outs[i].transferred);
		}
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

/* Counters only: the gauges and ratios are the engine's own at any time. */
static void assert_counters_eq(const struct disp_agent_figures *a,
                               const struct disp_agent_figures *b)
{
	assert_int_equal(a->assigned, b->assigned);
	assert_int_equal(a->served, b->served);
	assert_int_equal(a->transferred, b->transferred);
	assert_memory_equal(a->ratings, b->ratings, sizeof(a->ratings));
	assert_int_equal(a->complaints, b->complaints);
	assert_memory_equal(a->first_response_ms, b->first_response_ms,
	                    sizeof(a->first_response_ms));
	assert_memory_equal(a->handling_ms, b->handling_ms, sizeof(a->handling_ms));
	assert_int_equal(a->online_ms, b->online_ms);
	assert_int_equal(a->serving_ms, b->serving_ms);
	assert_int_equal(a->ready_idle_ms, b->ready_idle_ms);
	assert_int_equal(a->break_ms, b->break_ms);
	assert_memory_equal(a->sla_alerts, b->sla_alerts, sizeof(a->sla_alerts));
	assert_int_equal(a->agent_closed, b->agent_closed);
}

/* An agent's counters survive a restart through their packed form. */
static void test_restore_agent_figures(void **state)
{
	struct disp_engine *e = make(), *f;
	struct disp_agent_figures before, unpacked, after;
	uint8_t packed[DISP_FIGURES_PACKED_MAX];
	struct disp_restore r = {.customer_gw = GW_WEB,
	                         .customer_id = S("cust-9"),
	                         .skill = S("presale"),
	                         .opened_ms = 9000,
	                         .waiting_since_ms = 9000,
	                         .agent_id = S("alice"),
	                         .agent_gw = GW_WB1};
	uint64_t sid;
	size_t n;

	(void)state;
	login(e, GW_WB1, "alice", "presale", 1000);
	for (unsigned k = 0; k < 3; k++) {
		uint64_t t = 2000 + 1000 * k;

		sid = open_s(e, 10 + k, "cust-1", "q", t);
		assert_int_equal(disp_agent_message(e, GW_WB1, sid, S("alice"), 1, S("hi"), S(""),
		                                    false, t + 300),
		                 0);
		assert_int_equal(
		        disp_session_end(e, GW_WEB, sid, k == 1 ? 3 : 1, k == 2, S(""), t + 700),
		        0);
		assert_int_equal(disp_agent_close(e, GW_WB1, sid, S("alice"), S("done"), t + 800),
		                 0);
	}
	assert_int_equal(disp_agent_figures_get(e, S("alice"), &before, 6000), 0);
	assert_int_equal(before.served, 3);
	n = disp_agent_figures_pack(&before, packed, sizeof(packed));
	assert_true(n > 0 && n < 200);
	assert_int_equal(disp_agent_figures_pack(&before, packed, 10), 0);
	assert_int_equal(disp_agent_figures_unpack(packed, n, &unpacked), 0);
	assert_counters_eq(&before, &unpacked);
	assert_int_equal(disp_agent_figures_unpack(packed, n - 1, &unpacked), -EBADMSG);
	assert_int_equal(disp_agent_figures_unpack(packed, 0, &unpacked), -EBADMSG);
	disp_destroy(e);

	/* The restart: alice held a session, bob only had figures. */
	f = make();
	r.session_id = (sid >> 32 << 32) | 40;
	assert_int_equal(disp_restore_begin(f, r.session_id), 0);
	assert_int_equal(disp_restore_session(f, &r, 20000), 0);
	assert_int_equal(disp_restore_agent(f, S("alice"), &unpacked, 20000), 0);
	assert_int_equal(disp_restore_agent(f, S("bob"), &unpacked, 20000), 0);
	assert_int_equal(disp_restore_agent(f, S(""), &unpacked, 20000), -EINVAL);
	assert_int_equal(njr, 0);
	assert_int_equal(disp_check_invariants(f), 0);
	assert_int_equal(disp_agent_figures_get(f, S("bob"), &after, 20000), 0);
	assert_int_equal(after.state, DISP_AGENT_OFFLINE);
	assert_counters_eq(&before, &after);
	/* alice is still the restored agent of her session, and counts on from there. */
	login(f, GW_WB1, "alice", "presale", 21000);
	assert_int_equal(disp_agent_close(f, GW_WB1, r.session_id, S("alice"), S("done"), 22000),
	                 0);
	assert_int_equal(disp_agent_figures_get(f, S("alice"), &after, 22000), 0);
	assert_int_equal(after.served, before.served + 1);
	assert_int_equal(after.ratings[1], before.ratings[1]);
	assert_true(after.online_ms > before.online_ms);
	for (unsigned k = 0; k < 6; k++) {
		char id[16];

		snprintf(id, sizeof(id), "extra-%u", k);
		assert_int_equal(disp_restore_agent(f, S(id), &unpacked, 23000), 0);
	}
	assert_int_equal(disp_restore_agent(f, S("one-too-many"), &unpacked, 23000), -ENOSPC);
	assert_int_equal(disp_check_invariants(f), 0);
	disp_destroy(f);
}

static void test_restore_after_use_refused(void **state)
{
	struct disp_engine *e = make();

	(void)state;
	open_s(e, 1, "cust-1", "q", 1000);
	assert_int_equal(disp_restore_begin(e, 5), -EALREADY);
	disp_destroy(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_journal_follows_a_session),
	        cmocka_unit_test(test_restore_keeps_queue_and_agent),
	        cmocka_unit_test(test_restore_agent_not_back_requeues_front),
	        cmocka_unit_test(test_restore_after_use_refused),
	        cmocka_unit_test(test_restore_agent_figures),
	        cmocka_unit_test(test_ids_stay_above_the_last_runs),
	        cmocka_unit_test(test_late_notes_outlive_other_opens),
	        cmocka_unit_test(test_each_session_keeps_its_backlog),
	};

	return cmocka_run_group_tests_name("dispatch_journal", tests, NULL, NULL);
}
