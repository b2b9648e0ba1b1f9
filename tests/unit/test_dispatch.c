/* SPDX-License-Identifier: MIT */
/*
 * dispatch: the routing engine, driven through its public calls; every answer
 * is recorded by the emit callback and checked.
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

/* Gateways of the scenarios. */
#define GW_WEB 1 /* customers */
#define GW_APP 2 /* customers */
#define GW_WB1 7 /* agents' workbench */
#define GW_WB2 8 /* agents' workbench */

#define MAX_RECS 512

struct rec_msg {
	uint64_t msg_id;
	enum disp_side sender;
	char text[1024];
	char att[64];
	uint64_t sent;
	char agent_id[64];
};

struct rec {
	enum disp_out_kind kind;
	uint32_t gw;
	uint64_t session_id;
	uint64_t open_ref;
	uint32_t position;
	uint32_t eta_ms;
	bool to_agent;
	char agent_id[64];
	char customer_id[64];
	uint32_t customer_id_len;
	char skill[64];
	uint32_t channel;
	char question[1024];
	uint32_t question_len;
	char transcript[1024];
	uint32_t transcript_len;
	uint32_t nb_backlog;
	struct rec_msg backlog[8];
	uint64_t waited_ms;
	bool transferred;
	struct rec_msg msg;
	enum disp_close_reason close_reason;
	enum disp_agent_state state;
	bool granted;
	char reason[64];
	uint32_t retry_after_ms;
	bool leave_message;
	enum disp_error error;
	char detail[128];
	uint64_t ref;
	enum disp_sla_kind sla;
	uint64_t elapsed_ms;
};

static struct rec recs[MAX_RECS];
static unsigned nrec;
static unsigned nemit;    /* all outputs, recorded or not */
static unsigned nerrors;  /* ERROR outputs */
static bool record_light; /* randomized test: count only */

static void r_track(const struct disp_out *o);

static void cp(char *dst, size_t size, struct disp_str s)
{
	size_t n = s.len < size - 1 ? s.len : size - 1;

	assert_true(s.len == 0 || s.ptr != NULL);
	if (n)
		memcpy(dst, s.ptr, n);
	dst[n] = '\0';
}

static void cp_msg(struct rec_msg *d, const struct disp_msg *m)
{
	d->msg_id = m->msg_id;
	d->sender = m->sender;
	cp(d->text, sizeof(d->text), m->text);
	cp(d->att, sizeof(d->att), m->attachment_ref);
	d->sent = m->sent_unix_ms;
	cp(d->agent_id, sizeof(d->agent_id), m->agent_id);
}

static void on_emit(void *ctx, const struct disp_out *o)
{
	struct rec *r;

	(void)ctx;
	nemit++;
	if (o->kind == DISP_OUT_ERROR)
		nerrors++;
	if (record_light) {
		r_track(o);
		return;
	}
	assert_true(nrec < MAX_RECS);
	r = &recs[nrec++];
	memset(r, 0, sizeof(*r));
	r->kind = o->kind;
	r->gw = o->gateway_id;
	r->session_id = o->session_id;
	r->open_ref = o->open_ref;
	r->position = o->position;
	r->eta_ms = o->eta_ms;
	r->to_agent = o->to_agent;
	cp(r->agent_id, sizeof(r->agent_id), o->agent_id);
	cp(r->customer_id, sizeof(r->customer_id), o->customer_id);
	r->customer_id_len = o->customer_id.len;
	cp(r->skill, sizeof(r->skill), o->skill);
	r->channel = o->channel;
	cp(r->question, sizeof(r->question), o->question);
	r->question_len = o->question.len;
	cp(r->transcript, sizeof(r->transcript), o->bot_transcript);
	r->transcript_len = o->bot_transcript.len;
	r->nb_backlog = o->nb_backlog;
	for (uint32_t i = 0; i < o->nb_backlog && i < 8; i++)
		cp_msg(&r->backlog[i], &o->backlog[i]);
	r->waited_ms = o->waited_ms;
	r->transferred = o->transferred;
	cp_msg(&r->msg, &o->msg);
	r->close_reason = o->close_reason;
	r->state = o->state;
	r->granted = o->granted;
	cp(r->reason, sizeof(r->reason), o->reason);
	r->retry_after_ms = o->retry_after_ms;
	r->leave_message = o->leave_message;
	r->error = o->error;
	cp(r->detail, sizeof(r->detail), o->detail);
	r->ref = o->ref;
	r->sla = o->sla;
	r->elapsed_ms = o->elapsed_ms;
}

static void clear_recs(void)
{
	nrec = 0;
}

/* ---- fixture -------------------------------------------------------------- */

static const struct disp_skill_conf skills[] = {
        {.name = "presale", .tenant = ""},
        {.name = "aftersale", .tenant = "shopA", .queue_capacity = 3},
        {.name = "vip", .tenant = ""},
};

static struct disp_engine *make(uint32_t max_sessions, uint32_t pool_bytes)
{
	struct disp_conf conf = {
	        .skills = skills,
	        .nb_skills = 3,
	        .max_agents = 8,
	        .max_sessions = max_sessions,
	        .backlog_max = 4,
	        .text_pool_bytes = pool_bytes,
	        .emit = on_emit,
	};
	struct disp_engine *e;

	nrec = nemit = nerrors = 0;
	record_light = false;
	e = disp_create(&conf);
	assert_non_null(e);
	return e;
}

static int setup(void **state)
{
	*state = make(64, 1 << 20);
	return 0;
}

static int teardown(void **state)
{
	struct disp_engine *e = *state;

	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
	return 0;
}

static struct disp_str S(const char *s) {
	struct disp_str d = {.ptr = s, .len = (uint32_t)strlen(s)};

	return d;
}

static int
login(struct disp_engine *e, uint32_t gw, const char *id, const char *skill, uint32_t cap)
{
	struct disp_skill_level lv[1] = {{.skill = S(skill), .level = 3}};
	struct disp_login req = {.agent_id = S(id),
	                         .tenant = S("shopA"),
	                         .skills = lv,
	                         .nb_skills = 1,
	                         .max_sessions = cap};

	return disp_agent_login(e, gw, &req, 1000);
}

static int open_q(struct disp_engine *e, uint32_t gw, uint64_t ref, const char *skill,
                  const char *question, uint64_t now)
{
	struct disp_open req = {.open_ref = ref,
	                        .customer_id = S("cust-42"),
	                        .tenant = S("shopA"),
	                        .skill = S(skill),
	                        .channel = 2,
	                        .question = S(question),
	                        .bot_transcript = S("bot: hello")};

	return disp_session_open(e, gw, &req, now);
}

/* The session id of the QUEUED answer to open_ref. */
static uint64_t sid_of(uint64_t ref)
{
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_QUEUED && recs[i].open_ref == ref)
			return recs[i].session_id;
	fail_msg("no QUEUED for open_ref %llu", (unsigned long long)ref);
	return 0;
}

static unsigned count_kind(enum disp_out_kind kind)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nrec; i++)
		n += recs[i].kind == kind;
	return n;
}

static const struct rec *find(enum disp_out_kind kind, uint32_t gw)
{
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == kind && recs[i].gw == gw)
			return &recs[i];
	return NULL;
}

static void expect_error(int rc, int err, enum disp_error code, uint64_t ref)
{
	assert_int_equal(rc, err);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_ERROR);
	assert_int_equal(recs[0].error, code);
	assert_int_equal(recs[0].ref, ref);
	assert_true(recs[0].detail[0] != '\0');
}

static int cust_msg(struct disp_engine *e, uint32_t gw, uint64_t sid, uint64_t msg_id,
                    const char *text)
{
	return disp_customer_message(e, gw, sid, msg_id, S(text), S(""), 2000);
}

static int agent_msg(struct disp_engine *e, uint32_t gw, uint64_t sid, const char *agent,
                     uint64_t msg_id, const char *text)
{
	return disp_agent_message(e, gw, sid, S(agent), msg_id, S(text), S(""), false, 3000);
}

/* ---- scenarios ------------------------------------------------------------ */

static void test_create_refuses_bad_conf(void **state)
{
	struct disp_skill_conf dup[2] = {{.name = "a"}, {.name = "a"}};
	struct disp_skill_conf noname[1] = {{.name = ""}};
	struct disp_conf conf = {.skills = skills, .nb_skills = 3};

	(void)state;
	errno = 0;
	assert_null(disp_create(&conf)); /* no emit */
	assert_int_equal(errno, EINVAL);
	conf.emit = on_emit;
	conf.nb_skills = 0;
	assert_null(disp_create(&conf));
	assert_int_equal(errno, EINVAL);
	conf.skills = dup;
	conf.nb_skills = 2;
	assert_null(disp_create(&conf));
	assert_int_equal(errno, EINVAL);
	conf.skills = noname;
	conf.nb_skills = 1;
	assert_null(disp_create(&conf));
	assert_int_equal(errno, EINVAL);
	assert_null(disp_create(NULL));
	disp_destroy(NULL);
}

static void test_login_ready(void **state)
{
	struct disp_engine *e = *state;
	struct disp_stats st;

	assert_int_equal(login(e, GW_WB1, "alice", "presale", 2), 0);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_AGENT_STATE);
	assert_int_equal(recs[0].gw, GW_WB1);
	assert_string_equal(recs[0].agent_id, "alice");
	assert_int_equal(recs[0].state, DISP_AGENT_READY);
	assert_true(recs[0].granted);
	disp_stats_get(e, &st);
	assert_int_equal(st.agents_ready, 1);
}

static void test_login_refusals(void **state)
{
	struct disp_engine *e = *state;
	struct disp_skill_level lv[2] = {{.skill = S("presale")}, {.skill = S("nope")}};
	struct disp_login req = {.agent_id = S("bob"), .skills = lv, .nb_skills = 2};
	struct disp_stats st;

	expect_error(disp_agent_login(e, GW_WB1, &req, 1), -EINVAL, DISP_ERR_UNKNOWN_SKILL, 0);
	clear_recs();
	lv[1].skill = S("aftersale"); /* shopA's, and bob is of no tenant */
	expect_error(disp_agent_login(e, GW_WB1, &req, 1), -EPERM, DISP_ERR_FORBIDDEN, 0);
	clear_recs();
	req.agent_id = S("");
	expect_error(disp_agent_login(e, GW_WB1, &req, 1), -EMSGSIZE, DISP_ERR_MALFORMED, 0);
	clear_recs();
	disp_stats_get(e, &st);
	assert_int_equal(st.agents_ready, 0);
	assert_int_equal(st.errors[DISP_ERR_UNKNOWN_SKILL], 1);
	assert_int_equal(st.errors[DISP_ERR_FORBIDDEN], 1);
	/* Nothing changed: bob is unknown. */
	expect_error(disp_agent_heartbeat(e, GW_WB1, S("bob"), 5), -EINVAL, DISP_ERR_UNKNOWN_AGENT,
	             0);
}

static void test_open_assigns_free_agent(void **state)
{
	struct disp_engine *e = *state;
	const struct rec *q, *ag, *cu;

	login(e, GW_WB1, "alice", "presale", 2);
	clear_recs();
	assert_int_equal(open_q(e, GW_WEB, 11, "presale", "where is my parcel", 5000), 0);
	assert_int_equal(nrec, 3);
	q = &recs[0];
	assert_int_equal(q->kind, DISP_OUT_QUEUED);
	assert_int_equal(q->gw, GW_WEB);
	assert_int_equal(q->open_ref, 11);
	assert_int_equal(q->position, 0);
	assert_true(q->session_id != 0);

	ag = &recs[1];
	assert_int_equal(ag->kind, DISP_OUT_ASSIGNED);
	assert_int_equal(ag->gw, GW_WB1);
	assert_true(ag->to_agent);
	assert_int_equal(ag->session_id, q->session_id);
	assert_string_equal(ag->agent_id, "alice");
	assert_string_equal(ag->customer_id, "cust-42");
	assert_string_equal(ag->skill, "presale");
	assert_int_equal(ag->channel, 2);
	assert_string_equal(ag->question, "where is my parcel");
	assert_string_equal(ag->transcript, "bot: hello");
	assert_int_equal(ag->nb_backlog, 0);
	assert_int_equal(ag->waited_ms, 0);
	assert_false(ag->transferred);

	cu = &recs[2];
	assert_int_equal(cu->kind, DISP_OUT_ASSIGNED);
	assert_int_equal(cu->gw, GW_WEB);
	assert_false(cu->to_agent);
	assert_int_equal(cu->session_id, q->session_id);
	assert_string_equal(cu->agent_id, "alice");
	assert_string_equal(cu->skill, "presale");
	assert_int_equal(cu->question_len, 0);
	assert_int_equal(cu->transcript_len, 0);
	assert_int_equal(cu->customer_id_len, 0);
	assert_int_equal(cu->nb_backlog, 0);
}

static void test_open_queues_in_order(void **state)
{
	struct disp_engine *e = *state;
	struct disp_stats st;

	for (unsigned i = 0; i < 3; i++) {
		clear_recs();
		assert_int_equal(open_q(e, GW_WEB, 100 + i, "presale", "hi", 10 + i), 0);
		assert_int_equal(nrec, 1);
		assert_int_equal(recs[0].kind, DISP_OUT_QUEUED);
		assert_int_equal(recs[0].position, i + 1);
		/* No agent online: one slot of the default 3-minute mean handling time. */
		assert_int_equal(recs[0].eta_ms, (i + 1) * 180000u);
	}
	disp_stats_get(e, &st);
	assert_int_equal(st.sessions_waiting, 3);
	assert_int_equal(st.sessions_queued, 3);
	assert_int_equal(st.sessions_open, 3);
}

static void test_login_pulls_fifo_and_capacity(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid[3];
	unsigned n = 0;

	for (unsigned i = 0; i < 3; i++) {
		open_q(e, GW_WEB, 200 + i, "presale", "q", 10 + i);
		sid[i] = sid_of(200 + i);
	}
	clear_recs();
	assert_int_equal(login(e, GW_WB1, "alice", "presale", 2), 0);
	assert_int_equal(recs[0].kind, DISP_OUT_AGENT_STATE);
	/* Capacity 2: the two oldest, in order; the third still waits. */
	for (unsigned i = 0; i < nrec; i++) {
		if (recs[i].kind != DISP_OUT_ASSIGNED || !recs[i].to_agent)
			continue;
		assert_int_equal(recs[i].session_id, sid[n]);
		assert_int_equal(recs[i].waited_ms, 1000 - (10 + n));
		n++;
	}
	assert_int_equal(n, 2);
	assert_int_equal(count_kind(DISP_OUT_ASSIGNED), 4);

	/* The third goes to the next agent to free a slot. */
	clear_recs();
	assert_int_equal(disp_session_end(e, GW_WEB, sid[0], 1, false, S(""), 1500), 0);
	assert_int_equal(recs[0].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[0].gw, GW_WEB);
	assert_int_equal(recs[0].close_reason, DISP_CLOSE_CUSTOMER_ENDED);
	assert_int_equal(recs[1].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[1].gw, GW_WB1);
	assert_int_equal(recs[1].close_reason, DISP_CLOSE_CUSTOMER_ENDED);
	assert_string_equal(recs[1].agent_id, "alice");
	assert_int_equal(recs[2].kind, DISP_OUT_ASSIGNED);
	assert_int_equal(recs[2].session_id, sid[2]);
	assert_true(recs[2].to_agent);
	assert_int_equal(recs[3].kind, DISP_OUT_ASSIGNED);
	assert_int_equal(recs[3].gw, GW_WEB);
	assert_int_equal(nrec, 4);
}

static void test_capacity_then_queue(void **state)
{
	struct disp_engine *e = *state;

	login(e, GW_WB1, "alice", "presale", 2);
	open_q(e, GW_WEB, 1, "presale", "a", 10);
	open_q(e, GW_WEB, 2, "presale", "b", 11);
	clear_recs();
	open_q(e, GW_WEB, 3, "presale", "c", 12);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[0].position, 1);
}

static void test_least_loaded(void **state)
{
	struct disp_engine *e = *state;

	static const char *const want[] = {"alice", "bob", "alice", "bob"};
	uint64_t sid[4];

	login(e, GW_WB1, "alice", "presale", 3);
	login(e, GW_WB2, "bob", "presale", 3);
	/* Both idle: alice, idle the longest, first; then always the least loaded. */
	for (unsigned i = 0; i < 4; i++) {
		clear_recs();
		open_q(e, GW_WEB, 300 + i, "presale", "q", 2000 + i);
		assert_int_equal(recs[1].kind, DISP_OUT_ASSIGNED);
		assert_string_equal(recs[1].agent_id, want[i]);
		sid[i] = recs[0].session_id;
	}
	/* One of bob's customers leaves: bob (1) is less loaded than alice (2). */
	disp_session_end(e, GW_WEB, sid[1], 0, false, S(""), 2500);
	clear_recs();
	open_q(e, GW_WEB, 400, "presale", "q", 3000);
	assert_string_equal(recs[1].agent_id, "bob");
	clear_recs();
	open_q(e, GW_WEB, 401, "presale", "q", 3001);
	assert_string_equal(recs[1].agent_id, "alice"); /* 2 and 2: alice got there first */
	clear_recs();
	open_q(e, GW_WEB, 402, "presale", "q", 3002);
	assert_string_equal(recs[1].agent_id, "bob"); /* 3 against 2 */
	clear_recs();
	open_q(e, GW_WEB, 403, "presale", "q", 3003);
	assert_int_equal(recs[0].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[0].position, 1); /* both full */
}

static void test_customer_message_delivered_once(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;
	struct disp_stats st;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	assert_int_equal(
	        disp_customer_message(e, GW_WEB, sid, 77, S("any news?"), S("img/1.png"), 2500), 0);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_DELIVER);
	assert_int_equal(recs[0].gw, GW_WB1);
	assert_int_equal(recs[0].session_id, sid);
	assert_int_equal(recs[0].msg.msg_id, 77);
	assert_int_equal(recs[0].msg.sender, DISP_SIDE_CUSTOMER);
	assert_string_equal(recs[0].msg.text, "any news?");
	assert_string_equal(recs[0].msg.att, "img/1.png");
	assert_int_equal(recs[0].msg.sent, 2500);
	assert_string_equal(recs[0].msg.agent_id, "alice");
	disp_stats_get(e, &st);
	assert_int_equal(st.delivered_to_agent, 1);
}

static void test_backlog_in_assigned(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;
	const struct rec *ag;

	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	assert_int_equal(cust_msg(e, GW_WEB, sid, 1, "first"), 0);
	assert_int_equal(cust_msg(e, GW_WEB, sid, 2, "second"), 0);
	assert_int_equal(cust_msg(e, GW_WEB, sid, 3, "third"), 0);
	assert_int_equal(nrec, 0); /* held, nobody to deliver to */
	login(e, GW_WB1, "alice", "presale", 1);
	ag = find(DISP_OUT_ASSIGNED, GW_WB1);
	assert_non_null(ag);
	assert_int_equal(ag->nb_backlog, 3);
	assert_string_equal(ag->backlog[0].text, "first");
	assert_string_equal(ag->backlog[1].text, "second");
	assert_string_equal(ag->backlog[2].text, "third");
	assert_int_equal(ag->backlog[2].msg_id, 3);
	assert_int_equal(ag->backlog[0].sender, DISP_SIDE_CUSTOMER);
	assert_string_equal(ag->backlog[0].agent_id, "alice");
	assert_int_equal(count_kind(DISP_OUT_DELIVER), 0); /* not sent again */
	assert_int_equal(find(DISP_OUT_ASSIGNED, GW_WEB)->nb_backlog, 0);
}

static void test_backlog_limit_while_queued(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;

	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(cust_msg(e, GW_WEB, sid, i, "m"), 0);
	clear_recs();
	expect_error(cust_msg(e, GW_WEB, sid, 9, "m"), -EBUSY, DISP_ERR_OVERLOADED, 9);
}

static void test_agent_message_delivered(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;
	struct disp_stats st;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	assert_int_equal(agent_msg(e, GW_WB1, sid, "alice", 500, "您好，我来帮您"), 0);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_DELIVER);
	assert_int_equal(recs[0].gw, GW_WEB);
	assert_int_equal(recs[0].msg.sender, DISP_SIDE_AGENT);
	assert_string_equal(recs[0].msg.agent_id, "alice");
	assert_string_equal(recs[0].msg.text, "您好，我来帮您");
	assert_int_equal(recs[0].msg.msg_id, 500);
	disp_stats_get(e, &st);
	assert_int_equal(st.delivered_to_customer, 1);
}

static void repeat(char *buf, const char *unit, unsigned n)
{
	size_t ul = strlen(unit);

	for (unsigned i = 0; i < n; i++)
		memcpy(buf + i * ul, unit, ul);
	buf[n * ul] = '\0';
}

static void test_agent_text_code_points(void **state)
{
	struct disp_engine *e = *state;
	char text[1024];
	uint64_t sid;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	/* 200 characters of 3 bytes each (600 bytes) are allowed ... */
	repeat(text, "客", 200);
	clear_recs();
	assert_int_equal(agent_msg(e, GW_WB1, sid, "alice", 1, text), 0);
	assert_int_equal(recs[0].kind, DISP_OUT_DELIVER);
	assert_int_equal(strlen(recs[0].msg.text), 600);
	/* ... 201 are not. */
	repeat(text, "客", 201);
	clear_recs();
	expect_error(agent_msg(e, GW_WB1, sid, "alice", 2, text), -EMSGSIZE, DISP_ERR_TOO_LONG, 2);
	assert_string_equal(recs[0].detail, "agent text over 200 characters");
	/* 201 ASCII bytes are also 201 characters. */
	repeat(text, "a", 201);
	clear_recs();
	expect_error(agent_msg(e, GW_WB1, sid, "alice", 3, text), -EMSGSIZE, DISP_ERR_TOO_LONG, 3);
	/* A 4-byte character counts once. */
	repeat(text, "😀", 200);
	clear_recs();
	assert_int_equal(agent_msg(e, GW_WB1, sid, "alice", 4, text), 0);
}

static void test_customer_text_limit(void **state)
{
	struct disp_engine *e = *state;
	static char text[8192];
	uint64_t sid;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	repeat(text, "客", 2000);
	clear_recs();
	assert_int_equal(cust_msg(e, GW_WEB, sid, 1, text), 0);
	repeat(text, "客", 2001);
	clear_recs();
	expect_error(cust_msg(e, GW_WEB, sid, 2, text), -EMSGSIZE, DISP_ERR_TOO_LONG, 2);
	clear_recs();
	expect_error(open_q(e, GW_WEB, 5, "presale", text, 20), -EMSGSIZE, DISP_ERR_TOO_LONG, 5);
}

static void test_invalid_utf8(void **state)
{
	struct disp_engine *e = *state;
	static const char *bad[] = {
	        "\xc0\xaf",         /* overlong '/' */
	        "\xe0\x80\xaf",     /* overlong, 3 bytes */
	        "\xed\xa0\x80",     /* surrogate U+D800 */
	        "\xf4\x90\x80\x80", /* above U+10FFFF */
	        "\xf5\x80\x80\x80", /* invalid lead */
	        "ab\x80",           /* stray continuation */
	        "\xe5\xae",         /* truncated */
	        "\xff",
	};
	uint64_t sid;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		clear_recs();
		expect_error(agent_msg(e, GW_WB1, sid, "alice", 10 + i, bad[i]), -EMSGSIZE,
		             DISP_ERR_MALFORMED, 10 + i);
		clear_recs();
		expect_error(cust_msg(e, GW_WEB, sid, 20 + i, bad[i]), -EMSGSIZE,
		             DISP_ERR_MALFORMED, 20 + i);
		clear_recs();
		expect_error(open_q(e, GW_WEB, 30 + i, "presale", bad[i], 20), -EMSGSIZE,
		             DISP_ERR_MALFORMED, 30 + i);
	}
	/* Edges that are valid. */
	clear_recs();
	assert_int_equal(cust_msg(e, GW_WEB, sid, 50, "\xf4\x8f\xbf\xbf\xee\x80\x80\xc2\x80"), 0);
}

static void test_wrong_gateway_forbidden(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	expect_error(cust_msg(e, GW_APP, sid, 1, "hi"), -EPERM, DISP_ERR_FORBIDDEN, sid);
	clear_recs();
	expect_error(disp_session_end(e, GW_APP, sid, 0, false, S(""), 5), -EPERM,
	             DISP_ERR_FORBIDDEN, sid);
	clear_recs();
	expect_error(agent_msg(e, GW_WB2, sid, "alice", 1, "hi"), -EPERM, DISP_ERR_FORBIDDEN, sid);
	clear_recs();
	expect_error(disp_agent_state(e, GW_WB2, S("alice"), DISP_AGENT_OFFLINE_REQUESTED, 5),
	             -EPERM, DISP_ERR_FORBIDDEN, 0);
	clear_recs();
	/* The customer's gateway cannot speak for the agent either. */
	expect_error(agent_msg(e, GW_WEB, sid, "alice", 1, "hi"), -EPERM, DISP_ERR_FORBIDDEN, sid);
}

static void test_other_agents_session_forbidden(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s1, s2, s3;

	login(e, GW_WB1, "alice", "presale", 1);
	login(e, GW_WB1, "bob", "presale", 1);
	clear_recs();
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	open_q(e, GW_WEB, 2, "presale", "q", 11);
	open_q(e, GW_WEB, 3, "presale", "q", 12); /* waits */
	s1 = sid_of(1);
	s2 = sid_of(2);
	s3 = sid_of(3);
	assert_string_equal(recs[1].agent_id, "alice");
	assert_string_equal(recs[4].agent_id, "bob");
	clear_recs();
	expect_error(agent_msg(e, GW_WB1, s1, "bob", 1, "hi"), -EPERM, DISP_ERR_FORBIDDEN, s1);
	clear_recs();
	expect_error(disp_agent_close(e, GW_WB1, s2, S("alice"), S("done"), 5), -EPERM,
	             DISP_ERR_FORBIDDEN, s2);
	clear_recs();
	expect_error(agent_msg(e, GW_WB1, s3, "alice", 1, "hi"), -EPERM, DISP_ERR_FORBIDDEN, s3);
}

static void test_stale_session_unknown(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid, sid2;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	disp_session_end(e, GW_WEB, sid, 0, false, S(""), 20);
	clear_recs();
	expect_error(cust_msg(e, GW_WEB, sid, 1, "hi"), -EINVAL, DISP_ERR_UNKNOWN_SESSION, sid);
	clear_recs();
	expect_error(agent_msg(e, GW_WB1, sid, "alice", 1, "hi"), -EINVAL, DISP_ERR_UNKNOWN_SESSION,
	             sid);
	/* Forged: a slot never used, a zero slot, another generation. */
	clear_recs();
	expect_error(cust_msg(e, GW_WEB, 5000, 1, "hi"), -EINVAL, DISP_ERR_UNKNOWN_SESSION, 5000);
	clear_recs();
	expect_error(cust_msg(e, GW_WEB, 7ull << 32, 1, "hi"), -EINVAL, DISP_ERR_UNKNOWN_SESSION,
	             7ull << 32);
	clear_recs();
	open_q(e, GW_WEB, 2, "presale", "q", 30);
	sid2 = sid_of(2);
	assert_true(sid2 != sid);
	clear_recs();
	expect_error(cust_msg(e, GW_WEB, sid2 + (1ull << 32), 1, "hi"), -EINVAL,
	             DISP_ERR_UNKNOWN_SESSION, sid2 + (1ull << 32));
}

static void test_end_while_queued_abandoned(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;
	struct disp_stats st;

	open_q(e, GW_WEB, 1, "presale", "q", 10);
	open_q(e, GW_WEB, 2, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	assert_int_equal(disp_session_end(e, GW_WEB, sid, 0, false, S("bye"), 20), 0);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[0].gw, GW_WEB);
	assert_int_equal(recs[0].close_reason, DISP_CLOSE_ABANDONED);
	disp_stats_get(e, &st);
	assert_int_equal(st.sessions_abandoned, 1);
	assert_int_equal(st.sessions_waiting, 1);
	/* The one behind moved up. */
	clear_recs();
	open_q(e, GW_WEB, 3, "presale", "q", 30);
	assert_int_equal(recs[0].position, 2);
}

static void test_end_rating_counted(void **state)
{
	struct disp_engine *e = *state;
	struct disp_stats st;
	uint64_t sid;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	expect_error(disp_session_end(e, GW_WEB, sid, 9, false, S(""), 20), -EMSGSIZE,
	             DISP_ERR_MALFORMED, sid);
	assert_int_equal(disp_session_end(e, GW_WEB, sid, 3, true, S("slow"), 20), 0);
	disp_stats_get(e, &st);
	assert_int_equal(st.ratings[3], 1);
	assert_int_equal(st.complaints, 1);
	assert_int_equal(st.sessions_closed, 1);
}

static void test_agent_close(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s1, s2;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	open_q(e, GW_APP, 2, "presale", "q", 11);
	s1 = sid_of(1);
	s2 = sid_of(2);
	clear_recs();
	expect_error(disp_agent_close(e, GW_WB1, s1, S("alice"), S(""), 20), -EMSGSIZE,
	             DISP_ERR_MALFORMED, s1);
	assert_string_equal(recs[0].detail, "notes required");
	clear_recs();
	assert_int_equal(disp_agent_close(e, GW_WB1, s1, S("alice"), S("refund issued"), 30), 0);
	assert_int_equal(recs[0].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[0].gw, GW_WEB);
	assert_int_equal(recs[0].close_reason, DISP_CLOSE_AGENT_CLOSED);
	assert_int_equal(recs[1].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[1].gw, GW_WB1);
	assert_int_equal(recs[1].close_reason, DISP_CLOSE_AGENT_CLOSED);
	/* The slot freed, the waiting customer is served. */
	assert_int_equal(recs[2].kind, DISP_OUT_ASSIGNED);
	assert_int_equal(recs[2].session_id, s2);
	assert_int_equal(recs[3].gw, GW_APP);
	/* The customer ends first, then the agent writes the service record. */
	disp_session_end(e, GW_APP, s2, 1, false, S(""), 40);
	clear_recs();
	assert_int_equal(disp_agent_close(e, GW_WB1, s2, S("alice"), S("answered"), 50), 0);
	assert_int_equal(nrec, 0);
	expect_error(disp_agent_close(e, GW_WB1, s2, S("alice"), S(""), 50), -EMSGSIZE,
	             DISP_ERR_MALFORMED, s2);
}

/* disp_customer_sessions: a customer's open sessions, queued or assigned, by exact id. */
static void test_customer_sessions(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s1, s2;

	assert_int_equal(disp_customer_sessions(e, S("cust-42")), 0);
	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10); /* assigned */
	open_q(e, GW_WEB, 2, "presale", "q", 11); /* queued behind it */
	s1 = sid_of(1);
	s2 = sid_of(2);
	assert_int_equal(disp_customer_sessions(e, S("cust-42")), 2);
	assert_int_equal(disp_customer_sessions(e, S("cust-4")), 0);
	assert_int_equal(disp_customer_sessions(e, S("cust-420")), 0);
	assert_int_equal(disp_customer_sessions(e, S("")), 0);
	assert_int_equal(disp_session_end(e, GW_WEB, s2, 0, false, S(""), 20), 0);
	assert_int_equal(disp_customer_sessions(e, S("cust-42")), 1);
	assert_int_equal(disp_session_end(e, GW_WEB, s1, 1, false, S(""), 30), 0);
	assert_int_equal(disp_customer_sessions(e, S("cust-42")), 0);
}

static void test_queue_full_busy(void **state)
{
	struct disp_engine *e = *state;
	struct disp_stats st;

	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(open_q(e, GW_WEB, i, "aftersale", "q", 10), 0);
	clear_recs();
	assert_int_equal(open_q(e, GW_WEB, 9, "aftersale", "q", 10), -EBUSY);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_BUSY);
	assert_int_equal(recs[0].open_ref, 9);
	assert_true(recs[0].leave_message);
	assert_string_equal(recs[0].reason, "queue full");
	assert_int_equal(recs[0].retry_after_ms, 1000);
	disp_stats_get(e, &st);
	assert_int_equal(st.sessions_busy, 1);
	assert_int_equal(st.sessions_busy_queue_full, 1);
	assert_int_equal(st.sessions_open, 3);
	/* Other skills are not affected. */
	clear_recs();
	assert_int_equal(open_q(e, GW_WEB, 10, "presale", "q", 10), 0);
}

static void test_tenant_and_skill_on_open(void **state)
{
	struct disp_engine *e = *state;
	struct disp_open req = {.open_ref = 5,
	                        .customer_id = S("c"),
	                        .tenant = S("shopB"),
	                        .skill = S("aftersale")};

	expect_error(disp_session_open(e, GW_WEB, &req, 1), -EPERM, DISP_ERR_FORBIDDEN, 5);
	clear_recs();
	req.skill = S("nosuch");
	expect_error(disp_session_open(e, GW_WEB, &req, 1), -EINVAL, DISP_ERR_UNKNOWN_SKILL, 5);
	clear_recs();
	req.skill = S("presale"); /* a platform skill: any tenant */
	req.customer_id = S("");
	expect_error(disp_session_open(e, GW_WEB, &req, 1), -EMSGSIZE, DISP_ERR_MALFORMED, 5);
	clear_recs();
	req.customer_id = S("c");
	assert_int_equal(disp_session_open(e, GW_WEB, &req, 1), 0);
}

static void test_pool_exhaustion_busy(void **state)
{
	/* 5 classes × 64 bytes: one 64-byte block in all. */
	struct disp_engine *e = make(8, 5 * 64);
	struct disp_open req = {
	        .open_ref = 1, .customer_id = S("c"), .skill = S("presale"), .question = S("help")};
	uint64_t sid;

	(void)state;
	assert_int_equal(disp_session_open(e, GW_WEB, &req, 1), 0);
	sid = sid_of(1);
	clear_recs();
	req.open_ref = 2;
	assert_int_equal(disp_session_open(e, GW_WEB, &req, 1), -EBUSY);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_BUSY);
	assert_int_equal(recs[0].open_ref, 2);
	assert_false(recs[0].leave_message);
	assert_string_equal(recs[0].reason, "overloaded");
	/* No text room for a held message either; an empty question needs none. */
	clear_recs();
	expect_error(cust_msg(e, GW_WEB, sid, 3, "x"), -EBUSY, DISP_ERR_OVERLOADED, 3);
	clear_recs();
	req.question = S("");
	req.open_ref = 4;
	assert_int_equal(disp_session_open(e, GW_WEB, &req, 1), 0);
	/* Freed text is reusable. */
	disp_session_end(e, GW_WEB, sid, 0, false, S(""), 2);
	req.question = S("help");
	req.open_ref = 5;
	assert_int_equal(disp_session_open(e, GW_WEB, &req, 1), 0);
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

static void test_no_slot_busy(void **state)
{
	struct disp_engine *e = make(2, 1 << 16);
	struct disp_stats st;
	uint64_t sid;

	(void)state;
	assert_int_equal(open_q(e, GW_WEB, 1, "presale", "q", 1), 0);
	sid = sid_of(1);
	assert_int_equal(open_q(e, GW_WEB, 2, "presale", "q", 1), 0);
	clear_recs();
	assert_int_equal(open_q(e, GW_WEB, 3, "presale", "q", 1), -EBUSY);
	assert_int_equal(recs[0].kind, DISP_OUT_BUSY);
	assert_string_equal(recs[0].reason, "overloaded");
	assert_false(recs[0].leave_message);
	disp_session_end(e, GW_WEB, sid, 0, false, S(""), 2);
	disp_stats_get(e, &st);
	assert_int_equal(st.sessions_busy, 1);
	assert_int_equal(open_q(e, GW_WEB, 4, "presale", "q", 1), 0);
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

static void test_offline_drain(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s1, s2, s3;
	struct disp_stats st;

	login(e, GW_WB1, "alice", "presale", 2);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	open_q(e, GW_WEB, 2, "presale", "q", 10);
	s1 = sid_of(1);
	s2 = sid_of(2);
	clear_recs();
	assert_int_equal(disp_agent_state(e, GW_WB1, S("alice"), DISP_AGENT_OFFLINE_REQUESTED, 20),
	                 0);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_AGENT_STATE);
	assert_int_equal(recs[0].state, DISP_AGENT_OFFLINE_REQUESTED);
	assert_true(recs[0].granted);
	disp_stats_get(e, &st);
	assert_int_equal(st.agents_ready, 0);
	/* No new customer while draining. */
	clear_recs();
	open_q(e, GW_WEB, 3, "presale", "q", 30);
	assert_int_equal(recs[0].position, 1);
	s3 = recs[0].session_id;
	/* Messages still flow; the last close completes the drain. */
	assert_int_equal(agent_msg(e, GW_WB1, s1, "alice", 1, "bye"), 0);
	disp_session_end(e, GW_WEB, s1, 0, false, S(""), 40);
	clear_recs();
	disp_agent_close(e, GW_WB1, s2, S("alice"), S("done"), 50);
	assert_int_equal(nrec, 3);
	assert_int_equal(recs[2].kind, DISP_OUT_AGENT_STATE);
	assert_int_equal(recs[2].state, DISP_AGENT_OFFLINE);
	assert_true(recs[2].granted);
	/* Idle agent: offline at once. */
	login(e, GW_WB2, "bob", "vip", 1);
	clear_recs();
	disp_agent_state(e, GW_WB2, S("bob"), DISP_AGENT_OFFLINE_REQUESTED, 60);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].state, DISP_AGENT_OFFLINE);
	/* Back to ready: takes the waiting customer. */
	clear_recs();
	assert_int_equal(disp_agent_state(e, GW_WB1, S("alice"), DISP_AGENT_READY, 70), 0);
	assert_int_equal(recs[0].state, DISP_AGENT_READY);
	assert_int_equal(recs[1].kind, DISP_OUT_ASSIGNED);
	assert_int_equal(recs[1].session_id, s3);
}

static void test_break_drain_and_bad_state(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s1;

	login(e, GW_WB1, "alice", "presale", 2);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	s1 = sid_of(1);
	login(e, GW_WB2, "bob", "presale", 2); /* a lone agent may not take a break */
	clear_recs();
	disp_agent_state(e, GW_WB1, S("alice"), DISP_AGENT_BREAK_REQUESTED, 20);
	assert_int_equal(recs[0].state, DISP_AGENT_BREAK_REQUESTED);
	assert_true(recs[0].granted);
	clear_recs();
	disp_session_end(e, GW_WEB, s1, 0, false, S(""), 30);
	assert_int_equal(recs[2].kind, DISP_OUT_AGENT_STATE);
	assert_int_equal(recs[2].state, DISP_AGENT_ON_BREAK);
	clear_recs();
	expect_error(disp_agent_state(e, GW_WB1, S("alice"), DISP_AGENT_ON_BREAK, 40), -EALREADY,
	             DISP_ERR_INVALID_STATE, 0);
	clear_recs();
	expect_error(disp_agent_state(e, GW_WB1, S("alice"), (enum disp_agent_state)77, 40),
	             -EALREADY, DISP_ERR_INVALID_STATE, 0);
}

static void test_gateway_down_requeues_front(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s1, s2, s3;
	const struct rec *ag = NULL;
	unsigned iq = 0, ia = 0;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "first question", 10);
	s1 = sid_of(1);
	cust_msg(e, GW_WEB, s1, 1, "hello");
	agent_msg(e, GW_WB1, s1, "alice", 2, "hi, one moment");
	open_q(e, GW_APP, 2, "presale", "q2", 20); /* waits */
	s2 = sid_of(2);
	clear_recs();
	disp_gateway_down(e, GW_WB1, 100);
	/* Nobody left to serve: s1 waits again, in front of s2. */
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[0].session_id, s1);
	assert_int_equal(recs[0].gw, GW_WEB);
	assert_int_equal(recs[0].position, 1);
	clear_recs();
	expect_error(agent_msg(e, GW_WB1, s1, "alice", 3, "x"), -EPERM, DISP_ERR_FORBIDDEN, s1);

	/* bob arrives elsewhere and gets s1 with the conversation so far. */
	clear_recs();
	login(e, GW_WB2, "bob", "presale", 1);
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_ASSIGNED && recs[i].to_agent)
			ag = &recs[i];
	assert_non_null(ag);
	assert_int_equal(ag->session_id, s1);
	assert_true(ag->transferred);
	assert_string_equal(ag->question, "first question");
	assert_int_equal(ag->waited_ms,
	                 3000 - 1000); /* clock at 3000 (a message), opened at 1000 */
	assert_int_equal(ag->nb_backlog, 2);
	assert_string_equal(ag->backlog[0].text, "hello");
	assert_int_equal(ag->backlog[0].sender, DISP_SIDE_CUSTOMER);
	assert_string_equal(ag->backlog[1].text, "hi, one moment");
	assert_int_equal(ag->backlog[1].sender, DISP_SIDE_AGENT);
	assert_string_equal(ag->backlog[1].agent_id, "alice");
	assert_true(find(DISP_OUT_ASSIGNED, GW_WEB)->transferred);

	/* A customer gateway going down abandons its sessions; the agent is told. */
	login(e, GW_WB2, "bob", "presale", 2); /* room for s2 too */
	open_q(e, GW_APP, 3, "presale", "q3", 30);
	s3 = sid_of(3);
	clear_recs();
	disp_gateway_down(e, GW_APP, 200);
	for (unsigned i = 0; i < nrec; i++) {
		if (recs[i].kind == DISP_OUT_CLOSED) {
			assert_int_equal(recs[i].gw, GW_WB2);
			assert_int_equal(recs[i].close_reason, DISP_CLOSE_ABANDONED);
			assert_true(recs[i].session_id == s2 || recs[i].session_id == s3);
			ia++;
		} else {
			iq++;
		}
	}
	assert_int_equal(ia, 1); /* s2 was assigned to bob; s3 waited */
	assert_int_equal(iq, 0);
	clear_recs();
	expect_error(cust_msg(e, GW_APP, s3, 9, "x"), -EINVAL, DISP_ERR_UNKNOWN_SESSION, s3);
}

/* n customers open "presale" in turn (refs 1..n, at 10, 11, ... ms): their session ids. */
static void open_presale(struct disp_engine *e, uint64_t *sid, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		open_q(e, GW_WEB, i + 1, "presale", "q", 10 + i);
		sid[i] = sid_of(i + 1);
	}
}

static void test_gateway_down_order_of_several(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s[4];
	unsigned n = 0;

	login(e, GW_WB1, "alice", "presale", 2);
	open_presale(e, s, 4);
	clear_recs();
	disp_gateway_down(e, GW_WB1, 100);
	/* s0 and s1 were served: they go back in front, in order, before s2 and s3. */
	assert_int_equal(nrec, 2);
	assert_int_equal(recs[0].session_id, s[0]);
	assert_int_equal(recs[0].position, 1);
	assert_int_equal(recs[1].session_id, s[1]);
	assert_int_equal(recs[1].position, 2);
	clear_recs();
	login(e, GW_WB2, "bob", "presale", 4);
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_ASSIGNED && recs[i].to_agent)
			assert_int_equal(recs[i].session_id, s[n++]);
	assert_int_equal(n, 4);
}

/*
 * More sessions in hand than an agent keeps beside it (HAND_INLINE, 16): the
 * order assigned survives ends among the first and among the rest, and a
 * disconnect puts them back in that order.
 */
static void test_gateway_down_order_beyond_hand(void **state)
{
	struct disp_engine *e = *state;
	uint64_t s[20];
	unsigned n = 0;

	login(e, GW_WB1, "alice", "presale", 20);
	open_presale(e, s, 20);
	assert_int_equal(disp_session_end(e, GW_WEB, s[1], 1, false, S(""), 30), 0);
	assert_int_equal(disp_session_end(e, GW_WEB, s[17], 1, false, S(""), 31), 0);
	assert_int_equal(disp_check_invariants(e), 0);
	clear_recs();
	disp_gateway_down(e, GW_WB1, 100);
	for (unsigned i = 0; i < 20; i++) {
		if (i == 1 || i == 17)
			continue;
		assert_true(n < nrec);
		assert_int_equal(recs[n].kind, DISP_OUT_QUEUED);
		assert_int_equal(recs[n].session_id, s[i]);
		assert_int_equal(recs[n].position, n + 1);
		n++;
	}
	assert_int_equal(nrec, 18);
}

static void test_relogin_other_gateway(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	assert_int_equal(login(e, GW_WB2, "alice", "presale", 1), 0);
	assert_int_equal(recs[0].gw, GW_WB2);
	/* The session stays hers; the old gateway lost her. */
	clear_recs();
	expect_error(agent_msg(e, GW_WB1, sid, "alice", 1, "x"), -EPERM, DISP_ERR_FORBIDDEN, sid);
	clear_recs();
	assert_int_equal(agent_msg(e, GW_WB2, sid, "alice", 2, "x"), 0);
	clear_recs();
	assert_int_equal(cust_msg(e, GW_WEB, sid, 3, "y"), 0);
	assert_int_equal(recs[0].gw, GW_WB2);
	assert_int_equal(disp_agent_heartbeat(e, GW_WB2, S("alice"), 99), 0);
	clear_recs();
	expect_error(disp_agent_heartbeat(e, GW_WB1, S("alice"), 99), -EPERM, DISP_ERR_FORBIDDEN,
	             0);
}

static void test_transfer_consent(void **state)
{
	struct disp_engine *e = *state;
	uint64_t sid;

	login(e, GW_WB1, "alice", "presale", 1);
	open_q(e, GW_WEB, 1, "presale", "q", 10);
	sid = sid_of(1);
	clear_recs();
	expect_error(disp_transfer(e, GW_WB1, sid, S("alice"), S("vip"), false, S("r"), 20), -EPERM,
	             DISP_ERR_CONSENT_REQUIRED, sid);
	clear_recs();
	assert_int_equal(disp_transfer(e, GW_WB1, sid, S("alice"), S("vip"), true, S("r"), 20), 0);
	assert_int_equal(nrec, 2);
	assert_int_equal(recs[0].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[0].gw, GW_WB1);
	assert_int_equal(recs[0].close_reason, DISP_CLOSE_TRANSFERRED);
	assert_int_equal(recs[1].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[1].gw, GW_WEB);
	assert_int_equal(recs[1].position, 1);
}

static void test_too_many_agents(void **state)
{
	struct disp_engine *e = *state;
	char id[16];

	for (unsigned i = 0; i < 8; i++) {
		snprintf(id, sizeof(id), "a%u", i);
		assert_int_equal(login(e, GW_WB1, id, "presale", 1), 0);
	}
	clear_recs();
	expect_error(login(e, GW_WB1, "late", "presale", 1), -EBUSY, DISP_ERR_OVERLOADED, 0);
	clear_recs();
	assert_int_equal(login(e, GW_WB1, "a3", "vip", 1), 0); /* a known one is fine */
}

/* ---- v2 rules: helpers ---------------------------------------------------- */

static struct disp_engine *make2(const struct disp_skill_conf *sk, uint32_t n, uint32_t hb_ms)
{
	struct disp_conf conf = {
	        .skills = sk,
	        .nb_skills = n,
	        .max_agents = 32,
	        .max_sessions = 512,
	        .backlog_max = 8,
	        .text_pool_bytes = 1 << 20,
	        .heartbeat_timeout_ms = hb_ms,
	        .seed = 7,
	        .emit = on_emit,
	};
	struct disp_engine *e;

	nrec = nemit = nerrors = 0;
	record_light = false;
	e = disp_create(&conf);
	assert_non_null(e);
	return e;
}

static void done2(struct disp_engine *e)
{
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

/* Log in with skills given as "name:level name:level". */
static int login2(struct disp_engine *e, uint32_t gw, const char *id, const char *list,
                  uint32_t cap, uint64_t now)
{
	static char buf[8][32];
	struct disp_skill_level lv[8];
	struct disp_login req = {
	        .agent_id = S(id), .tenant = S(""), .skills = lv, .max_sessions = cap};
	const char *p = list;

	while (*p && req.nb_skills < 8) {
		char *b = buf[req.nb_skills];
		unsigned n = 0;

		while (*p && *p != ':' && *p != ' ' && n < 31)
			b[n++] = *p++;
		b[n] = '\0';
		lv[req.nb_skills].skill = S(b);
		lv[req.nb_skills].level = 3;
		if (*p == ':')
			lv[req.nb_skills].level = (uint32_t)strtoul(p + 1, (char **)&p, 10);
		while (*p == ' ')
			p++;
		req.nb_skills++;
	}
	return disp_agent_login(e, gw, &req, now);
}

static uint64_t open2(struct disp_engine *e, uint64_t ref, const char *skill, uint32_t prio,
                      uint64_t now)
{
	struct disp_open req = {.open_ref = ref,
	                        .customer_id = S("cust"),
	                        .tenant = S(""),
	                        .skill = S(skill),
	                        .priority = prio,
	                        .question = S("help")};

	if (disp_session_open(e, GW_WEB, &req, now) != 0)
		return 0;
	return sid_of(ref);
}

/* The agent the last ASSIGNED (agent side) of session sid went to, or "". */
static const char *assignee(uint64_t sid)
{
	const char *who = "";

	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_ASSIGNED && recs[i].to_agent &&
		    (sid == 0 || recs[i].session_id == sid))
			who = recs[i].agent_id;
	return who;
}

static const struct rec *find_sla(enum disp_sla_kind kind)
{
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_SLA_ALERT && recs[i].sla == kind)
			return &recs[i];
	return NULL;
}

static unsigned count_sla(enum disp_sla_kind kind)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nrec; i++)
		n += recs[i].kind == DISP_OUT_SLA_ALERT && recs[i].sla == kind;
	return n;
}

static int close2(struct disp_engine *e, uint32_t gw, uint64_t sid, const char *agent, uint64_t now)
{
	return disp_agent_close(e, gw, sid, S(agent), S("notes"), now);
}

/* ---- rule 1: strategies --------------------------------------------------- */

static void test_strategy_longest_idle(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .strategy = DISP_STRATEGY_LONGEST_IDLE}};
	struct disp_engine *e = make2(sk, 1, 0);
	uint64_t s1;

	(void)state;
	login2(e, GW_WB1, "a", "x", 2, 100);
	login2(e, GW_WB1, "b", "x", 2, 200);
	clear_recs();
	s1 = open2(e, 1, "x", 0, 300);
	assert_string_equal(assignee(s1), "a"); /* idle since 100 */
	close2(e, GW_WB1, s1, "a", 400);        /* a idle since 400 now */
	clear_recs();
	assert_string_equal(assignee(open2(e, 2, "x", 0, 500)), "b");
	clear_recs();
	assert_string_equal(assignee(open2(e, 3, "x", 0, 600)), "a"); /* idle beats busy */
	done2(e);
}

/*
 * least-loaded: the lowest load first; within a load, the agent whose load
 * changed (or who became eligible) earliest; within the same millisecond,
 * in the order of those changes, not of the agents' ids or indexes.
 */
static void test_strategy_least_loaded_order(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x"}}; /* least-loaded: the default */
	struct disp_engine *e = make2(sk, 1, 0);
	uint64_t s[3];

	(void)state;
	login2(e, GW_WB1, "a", "x", 3, 100);
	login2(e, GW_WB1, "b", "x", 3, 100);
	login2(e, GW_WB1, "c", "x", 3, 100);
	for (unsigned i = 0; i < 3; i++) {
		clear_recs();
		s[i] = open2(e, i + 1, "x", 0, 200);
		assert_string_equal(assignee(s[i]), i == 0 ? "a" : i == 1 ? "b" : "c");
	}
	/* All at 1 since 200. In one millisecond c's load falls to 0, then a's. */
	assert_int_equal(close2(e, GW_WB1, s[2], "c", 300), 0);
	assert_int_equal(close2(e, GW_WB1, s[0], "a", 300), 0);
	clear_recs();
	/* 0 beats 1 although b's load is older; c before a: its change came first. */
	assert_string_equal(assignee(open2(e, 10, "x", 0, 400)), "c");
	clear_recs();
	assert_string_equal(assignee(open2(e, 11, "x", 0, 400)), "a");
	/* All at 1 again: b's since 200, then c and a (400, in that order). */
	clear_recs();
	assert_string_equal(assignee(open2(e, 12, "x", 0, 500)), "b");
	clear_recs();
	assert_string_equal(assignee(open2(e, 13, "x", 0, 500)), "c");
	clear_recs();
	assert_string_equal(assignee(open2(e, 14, "x", 0, 500)), "a");
	done2(e);
}

/*
 * Two least-loaded skills: the first one's places live in struct agent, the
 * second's in the ask array; agents in one or both, unlinked from the head,
 * the middle and the tail of their lists. Invariants after every step.
 */
static void test_strategy_least_loaded_two_skills(void **state)
{
	struct disp_skill_conf sk[] = {
	        {.name = "r", .strategy = DISP_STRATEGY_ROUND_ROBIN}, {.name = "x"}, {.name = "y"}};
	struct disp_engine *e = make2(sk, 3, 0);
	uint64_t sa, sc, sq;

	(void)state;
	login2(e, GW_WB1, "a", "y x", 2, 100);
	login2(e, GW_WB1, "b", "y r", 2, 100);
	login2(e, GW_WB1, "c", "x y", 2, 100);
	assert_int_equal(disp_check_invariants(e), 0);
	clear_recs();
	sa = open2(e, 1, "y", 0, 200);
	assert_string_equal(assignee(sa), "a");
	clear_recs();
	sc = open2(e, 2, "x", 0, 210);
	assert_string_equal(assignee(sc), "c");
	clear_recs();
	assert_string_equal(assignee(open2(e, 3, "y", 0, 220)), "b");
	assert_int_equal(disp_check_invariants(e), 0);
	/* All at 1: y lists a, c, b; x lists a, c. c leaves the middle of y, the tail of x. */
	assert_int_equal(close2(e, GW_WB1, sc, "c", 230), 0);
	assert_int_equal(disp_check_invariants(e), 0);
	clear_recs();
	assert_string_equal(assignee(open2(e, 4, "y", 0, 240)), "c");
	clear_recs();
	assert_string_equal(assignee(open2(e, 5, "x", 0, 250)), "a"); /* 200 before c's 240 */
	assert_int_equal(disp_check_invariants(e), 0);
	clear_recs();
	assert_string_equal(assignee(open2(e, 6, "y", 0, 260)), "b");
	clear_recs();
	assert_string_equal(assignee(open2(e, 7, "x", 0, 270)), "c");
	assert_int_equal(disp_check_invariants(e), 0);
	/* Everyone full: it waits, and a's close hands it to a. */
	clear_recs();
	sq = open2(e, 8, "y", 0, 280);
	assert_string_equal(assignee(sq), "");
	clear_recs();
	assert_int_equal(close2(e, GW_WB1, sa, "a", 290), 0);
	assert_string_equal(assignee(sq), "a");
	done2(e);
}

/* A new login replaces an agent's only skill: it serves the new one, not the old. */
static void test_relogin_changes_only_skill(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x"}, {.name = "y"}};
	struct disp_engine *e = make2(sk, 2, 0);
	uint64_t s1, s2, s3;

	(void)state;
	login2(e, GW_WB1, "a", "x", 2, 100);
	clear_recs();
	s1 = open2(e, 1, "x", 0, 200);
	assert_string_equal(assignee(s1), "a");
	/* Now y only: a new x session waits, a y one is a's. */
	assert_int_equal(login2(e, GW_WB1, "a", "y", 2, 210), 0);
	assert_int_equal(disp_check_invariants(e), 0);
	clear_recs();
	s2 = open2(e, 2, "x", 0, 220);
	assert_string_equal(assignee(s2), "");
	clear_recs();
	assert_string_equal(assignee(open2(e, 3, "y", 0, 230)), "a");
	assert_int_equal(disp_check_invariants(e), 0);
	/* Both (still full), then x alone with room: it takes the waiting x session. */
	assert_int_equal(login2(e, GW_WB1, "a", "y x", 2, 240), 0);
	clear_recs();
	assert_int_equal(login2(e, GW_WB1, "a", "x", 3, 250), 0);
	assert_string_equal(assignee(s2), "a");
	assert_int_equal(disp_check_invariants(e), 0);
	/* A close re-files it in x only: a new y session waits. */
	assert_int_equal(close2(e, GW_WB1, s1, "a", 260), 0);
	clear_recs();
	s3 = open2(e, 4, "y", 0, 270);
	assert_string_equal(assignee(s3), "");
	clear_recs();
	assert_string_equal(assignee(open2(e, 5, "x", 0, 280)), "a");
	done2(e);
}

static void test_strategy_round_robin(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .strategy = DISP_STRATEGY_ROUND_ROBIN}};
	struct disp_engine *e = make2(sk, 1, 0);
	static const char *const want[] = {"a", "b", "c", "a", "b", "c"};

	(void)state;
	login2(e, GW_WB1, "a", "x", 3, 100);
	login2(e, GW_WB1, "b", "x", 3, 100);
	login2(e, GW_WB1, "c", "x", 3, 100);
	for (unsigned i = 0; i < 6; i++) {
		clear_recs();
		assert_string_equal(assignee(open2(e, i + 1, "x", 0, 200 + i)), want[i]);
	}
	done2(e);
}

static void test_strategy_best_skill(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .strategy = DISP_STRATEGY_BEST_SKILL}};
	struct disp_engine *e = make2(sk, 1, 0);
	static const char *const want[] = {"b", "c", "a"};

	(void)state;
	login2(e, GW_WB1, "a", "x:2", 1, 100);
	login2(e, GW_WB1, "b", "x:5", 1, 100);
	login2(e, GW_WB1, "c", "x:4", 1, 100);
	for (unsigned i = 0; i < 3; i++) {
		clear_recs();
		assert_string_equal(assignee(open2(e, i + 1, "x", 0, 200 + i)), want[i]);
	}
	done2(e);
}

static void test_strategy_fewest_today(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .strategy = DISP_STRATEGY_FEWEST_TODAY}};
	struct disp_engine *e = make2(sk, 1, 0);
	uint64_t s1;

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 100);
	login2(e, GW_WB1, "b", "x", 2, 150);
	clear_recs();
	s1 = open2(e, 1, "x", 0, 200);
	assert_string_equal(assignee(s1), "a");
	close2(e, GW_WB1, s1, "a", 300);
	clear_recs();
	/* a is free but served one today; b none. */
	assert_string_equal(assignee(open2(e, 2, "x", 0, 400)), "b");
	clear_recs();
	assert_string_equal(assignee(open2(e, 3, "x", 0, 500)), "a"); /* one each, a less loaded */
	done2(e);
}

static void test_strategy_random(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .strategy = DISP_STRATEGY_RANDOM}};
	struct disp_engine *e = make2(sk, 1, 0);
	unsigned got[3] = {0};

	(void)state;
	login2(e, GW_WB1, "a", "x", 200, 100);
	login2(e, GW_WB1, "b", "x", 200, 100);
	login2(e, GW_WB1, "c", "x", 200, 100);
	for (unsigned i = 0; i < 300; i++) {
		const char *who;

		clear_recs();
		who = assignee(open2(e, i + 1, "x", 0, 200 + i));
		assert_true(who[0] >= 'a' && who[0] <= 'c');
		got[who[0] - 'a']++;
	}
	for (unsigned i = 0; i < 3; i++)
		assert_in_range(got[i], 60, 140);
	done2(e);
}

/* ---- rule 2: fairness across an agent's skills ---------------------------- */

static void test_fair_across_skills(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x"}, {.name = "y"}};
	struct disp_engine *e = make2(sk, 2, 0);
	uint64_t order[4];
	uint64_t now = 500;

	(void)state;
	order[1] = open2(e, 1, "y", 0, 100);
	order[2] = open2(e, 2, "x", 0, 200);
	order[3] = open2(e, 3, "x", 0, 300);
	order[0] = open2(e, 4, "y", 9, 400); /* the newest, but of a higher priority (9 -> 7) */
	clear_recs();
	login2(e, GW_WB1, "a", "x y", 1, now);
	/* Priority first, then the longest waiting across both skills. */
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(recs[nrec - 1].kind, DISP_OUT_ASSIGNED);
		assert_int_equal(recs[nrec - 2].session_id, order[i]);
		assert_string_equal(assignee(order[i]), "a");
		clear_recs();
		close2(e, GW_WB1, order[i], "a", now += 10);
	}
	assert_int_equal(count_kind(DISP_OUT_ASSIGNED), 0);
	done2(e);
}

/* ---- rule 1: position, ETA and their updates ------------------------------ */

static void test_position_eta_updates(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .eta_step_ms = 1000}};
	struct disp_engine *e = make2(sk, 1, 0);
	uint64_t s0, s[3];

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 100);
	s0 = open2(e, 1, "x", 0, 200);
	for (unsigned i = 0; i < 3; i++) {
		clear_recs();
		s[i] = open2(e, 10 + i, "x", 0, 300 + i);
		assert_int_equal(recs[0].position, i + 1);
		/* one online slot, mean handling 180 s by default */
		assert_int_equal(recs[0].eta_ms, (i + 1) * 180000u);
	}
	clear_recs();
	disp_tick(e, 400); /* nothing moved since they were told */
	assert_int_equal(count_kind(DISP_OUT_QUEUED), 0);
	clear_recs();
	close2(e, GW_WB1, s0, "a", 1000);
	assert_string_equal(assignee(s[0]), "a");
	assert_int_equal(count_kind(DISP_OUT_QUEUED), 0); /* lazily, on the tick */
	clear_recs();
	disp_tick(e, 1001);
	assert_int_equal(count_kind(DISP_OUT_QUEUED), 2);
	for (unsigned i = 0; i < nrec; i++) {
		uint32_t pos = recs[i].session_id == s[1] ? 1 : 2;

		assert_true(recs[i].session_id == s[1] || recs[i].session_id == s[2]);
		assert_int_equal(recs[i].position, pos);
		assert_int_equal(recs[i].gw, GW_WEB);
		/* the mean handling time moved: 180000 - 180000/8 + 800/8 */
		assert_int_equal(recs[i].eta_ms, pos * (180000u - 22500u + 100u));
	}
	clear_recs();
	disp_tick(e, 1002);
	assert_int_equal(count_kind(DISP_OUT_QUEUED), 0);
	done2(e);
}

/* ---- rule 3: overflow, queue full, closed --------------------------------- */

static void test_overflow_after_wait(void **state)
{
	struct disp_skill_conf sk[] = {
	        {.name = "x", .nb_overflow = 1, .overflow = {{.after_ms = 5000, .to_skill = "y"}}},
	        {.name = "y"}};
	struct disp_engine *e = make2(sk, 2, 0);
	uint64_t s1, s2, sy;

	(void)state;
	login2(e, GW_WB1, "b", "y", 1, 100);
	clear_recs();
	s1 = open2(e, 1, "x", 0, 1000);
	assert_int_equal(recs[0].position, 1); /* y's agent is not offered x yet */
	clear_recs();
	disp_tick(e, 5999);
	assert_int_equal(count_kind(DISP_OUT_ASSIGNED), 0);
	disp_tick(e, 6000);
	assert_string_equal(assignee(s1), "b");
	/* b busy when the next one's step comes; it takes it when it frees. */
	s2 = open2(e, 2, "x", 0, 7000);
	sy = open2(e, 3, "y", 0, 8000);
	clear_recs();
	disp_tick(e, 13000);
	assert_int_equal(count_kind(DISP_OUT_ASSIGNED), 0);
	close2(e, GW_WB1, s1, "b", 13001);
	assert_string_equal(assignee(s2), "b"); /* waited longer than y's own customer */
	clear_recs();
	close2(e, GW_WB1, s2, "b", 13002);
	assert_string_equal(assignee(sy), "b");
	done2(e);
}

static void test_queue_full_and_closed_leave_message(void **state)
{
	struct disp_skill_conf sk[] = {
	        {.name = "x", .queue_capacity = 1},
	        {.name = "h",
	         .hours = {.open_min = 9 * 60, .close_min = 18 * 60, .utc_offset_min = 480}},
	        {.name = "n",
	         .hours = {.open_min = 22 * 60,
	                   .close_min = 2 * 60,
	                   .days = 1u << 1,
	                   .utc_offset_min = 480}},
	};
	struct disp_engine *e = make2(sk, 3, 0);
	struct disp_skill_figures f;
	const uint64_t H = 3600000, D = 24 * H; /* day 0 (1970-01-01) is a Thursday */

	(void)state;
	open2(e, 1, "x", 0, 100);
	clear_recs();
	assert_int_equal(open2(e, 2, "x", 0, 200), 0);
	assert_int_equal(nrec, 1);
	assert_int_equal(recs[0].kind, DISP_OUT_BUSY);
	assert_true(recs[0].leave_message);
	assert_string_equal(recs[0].reason, "queue full");
	assert_int_equal(disp_skill_figures_get(e, S("x"), &f, 300), 0);
	assert_int_equal(f.left_message, 1);
	assert_int_equal(f.offered, 1);

	/* 9:00-18:00 at UTC+8: 11:00 UTC is 19:00 local (closed), 3:00 UTC 11:00 (open). */
	disp_tick(e, 11 * H); /* x's customer's QUEUE_WAIT alert */
	clear_recs();
	assert_int_equal(open2(e, 3, "h", 0, 11 * H), 0);
	assert_string_equal(recs[0].reason, "closed");
	assert_true(recs[0].leave_message);
	clear_recs();
	assert_int_not_equal(open2(e, 4, "h", 0, D + 3 * H), 0);
	disp_skill_figures_get(e, S("h"), &f, D + 3 * H);
	assert_int_equal(f.left_message, 1);

	/* 22:00-02:00 on Mondays (day 4 is Monday): Monday 23:00 and Tuesday 01:00 local
	 * are open, Tuesday 23:00 and Wednesday 03:00 closed. Local = UTC + 8 h. */
	clear_recs();
	assert_int_not_equal(open2(e, 5, "n", 0, 4 * D + 23 * H - 8 * H), 0);
	assert_int_not_equal(open2(e, 6, "n", 0, 5 * D + 1 * H - 8 * H), 0);
	assert_int_equal(count_kind(DISP_OUT_BUSY), 0);
	assert_int_equal(open2(e, 7, "n", 0, 5 * D + 23 * H - 8 * H), 0);
	assert_int_equal(open2(e, 8, "n", 0, 6 * D + 3 * H - 8 * H), 0);
	assert_int_equal(count_kind(DISP_OUT_BUSY), 2);
	done2(e);
}

/* ---- rule 4: breaks -------------------------------------------------------- */

/* n agents in x; how many of them get a break, asking one after the other. */
static unsigned breaks_granted(unsigned n)
{
	struct disp_skill_conf sk[] = {{.name = "x"}};
	struct disp_engine *e = make2(sk, 1, 0);
	unsigned granted = 0;
	char id[16];

	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "a%u", i);
		login2(e, GW_WB1, id, "x", 1, 100);
	}
	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "a%u", i);
		clear_recs();
		assert_int_equal(
		        disp_agent_state(e, GW_WB1, S(id), DISP_AGENT_BREAK_REQUESTED, 200), 0);
		assert_int_equal(nrec, 1);
		if (recs[0].granted) {
			assert_int_equal(recs[0].state, DISP_AGENT_ON_BREAK);
			granted++;
		} else {
			char want[96];

			assert_int_equal(recs[0].state, DISP_AGENT_READY);
			snprintf(want, sizeof(want),
			         "break cap: %u of %u agents of x already on break", granted, n);
			assert_string_equal(recs[0].reason, want);
		}
	}
	done2(e);
	return granted;
}

static void test_break_cap_edges(void **state)
{
	(void)state;
	assert_int_equal(breaks_granted(1), 0); /* never empties a group */
	assert_int_equal(breaks_granted(2), 1);
	assert_int_equal(breaks_granted(4), 1); /* floor gives 0: at least one of 2+ */
	assert_int_equal(breaks_granted(5), 1);
	assert_int_equal(breaks_granted(6), 1);
	assert_int_equal(breaks_granted(10), 2);
	assert_int_equal(breaks_granted(15), 3);
}

static void test_break_cap_every_group(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x"}, {.name = "y"}};
	struct disp_engine *e = make2(sk, 2, 0);
	char id[16];

	(void)state;
	/* x: 5 agents, y: those 5 and 5 more. */
	for (unsigned i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "a%u", i);
		login2(e, GW_WB1, id, i < 5 ? "x y" : "y", 1, 100);
	}
	disp_agent_state(e, GW_WB1, S("a0"), DISP_AGENT_BREAK_REQUESTED, 200);
	clear_recs();
	/* y could take a second break (2 of 10), x not (1 of 5). */
	disp_agent_state(e, GW_WB1, S("a1"), DISP_AGENT_BREAK_REQUESTED, 300);
	assert_false(recs[0].granted);
	assert_string_equal(recs[0].reason, "break cap: 1 of 5 agents of x already on break");
	clear_recs();
	disp_agent_state(e, GW_WB1, S("a7"), DISP_AGENT_BREAK_REQUESTED, 300);
	assert_true(recs[0].granted);
	clear_recs();
	disp_agent_state(e, GW_WB1, S("a8"), DISP_AGENT_BREAK_REQUESTED, 300);
	assert_false(recs[0].granted);
	/* READY ends a break: room for another. */
	disp_agent_state(e, GW_WB1, S("a0"), DISP_AGENT_READY, 400);
	clear_recs();
	disp_agent_state(e, GW_WB1, S("a1"), DISP_AGENT_BREAK_REQUESTED, 500);
	assert_true(recs[0].granted);
	done2(e);
}

static void test_break_drain_and_overrun(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .break_max_ms = 1000}};
	struct disp_engine *e = make2(sk, 1, 1000000);
	struct disp_agent_figures af;
	uint64_t s1, s2;
	const struct rec *r;

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 100);
	login2(e, GW_WB2, "b", "x", 1, 100);
	s1 = open2(e, 1, "x", 0, 200);
	assert_string_equal(assignee(s1), "a");
	clear_recs();
	disp_agent_state(e, GW_WB1, S("a"), DISP_AGENT_BREAK_REQUESTED, 300);
	assert_int_equal(recs[0].state, DISP_AGENT_BREAK_REQUESTED);
	assert_true(recs[0].granted);
	/* No new customer for a while it drains. */
	clear_recs();
	s2 = open2(e, 2, "x", 0, 400);
	assert_string_equal(assignee(s2), "b");
	clear_recs();
	close2(e, GW_WB1, s1, "a", 500);
	assert_int_equal(recs[nrec - 1].kind, DISP_OUT_AGENT_STATE);
	assert_int_equal(recs[nrec - 1].state, DISP_AGENT_ON_BREAK);
	assert_true(recs[nrec - 1].granted);
	/* The clock runs from the grant (300). */
	clear_recs();
	disp_tick(e, 1299);
	assert_null(find_sla(DISP_SLA_BREAK_OVERRUN));
	disp_tick(e, 1300);
	r = find_sla(DISP_SLA_BREAK_OVERRUN);
	assert_non_null(r);
	assert_int_equal(r->gw, GW_WB1);
	assert_string_equal(r->agent_id, "a");
	assert_string_equal(r->skill, "x");
	clear_recs();
	disp_tick(e, 100000);
	assert_null(find_sla(DISP_SLA_BREAK_OVERRUN)); /* once */
	disp_agent_figures_get(e, S("a"), &af, 100000);
	assert_int_equal(af.sla_alerts[DISP_SLA_BREAK_OVERRUN], 1);
	assert_int_equal(af.state, DISP_AGENT_ON_BREAK);
	done2(e);
}

/* ---- rule 6: disconnect by heartbeat -------------------------------------- */

static void test_heartbeat_disconnect_requeues_front(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x"}};
	struct disp_engine *e = make2(sk, 1, 5000);
	uint64_t s1, s2, sb;
	const struct rec *ag = NULL;

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 1000);
	login2(e, GW_WB2, "b", "x", 1, 1000);
	s1 = open2(e, 1, "x", 0, 1100);
	sb = open2(e, 2, "x", 0, 1200);
	assert_string_equal(assignee(s1), "a");
	assert_string_equal(assignee(sb), "b");
	disp_customer_message(e, GW_WEB, s1, 1, S("where is my parcel"), S(""), 1300);
	disp_agent_message(e, GW_WB1, s1, S("a"), 2, S("checking"), S(""), false, 1400);
	s2 = open2(e, 3, "x", 0, 2000); /* waits */
	disp_agent_heartbeat(e, GW_WB2, S("b"), 4000);
	clear_recs();
	disp_tick(e, 6399);
	assert_int_equal(nrec, 0);
	disp_tick(e, 6400); /* a silent since 1400 */
	assert_int_equal(nrec, 2);
	assert_int_equal(recs[0].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[0].gw, GW_WEB);
	assert_int_equal(recs[0].session_id, s1);
	assert_int_equal(recs[0].position, 1); /* in front of s2 */
	/* and s2, who moved back, is told on the same tick */
	assert_int_equal(recs[1].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[1].session_id, s2);
	assert_int_equal(recs[1].position, 2);
	clear_recs();
	close2(e, GW_WB2, sb, "b", 7000);
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_ASSIGNED && recs[i].to_agent)
			ag = &recs[i];
	assert_non_null(ag);
	assert_int_equal(ag->session_id, s1);
	assert_string_equal(ag->agent_id, "b");
	assert_true(ag->transferred);
	assert_int_equal(ag->waited_ms, 7000 - 1100);
	assert_int_equal(ag->nb_backlog, 2);
	assert_string_equal(ag->backlog[0].text, "where is my parcel");
	assert_string_equal(ag->backlog[1].text, "checking");
	assert_string_equal(ag->backlog[1].agent_id, "a");
	done2(e);
}

/* ---- rule 7: transfer ------------------------------------------------------ */

static void test_transfer_with_backlog(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x"}, {.name = "expert"}};
	struct disp_engine *e = make2(sk, 2, 0);
	struct disp_skill_figures f;
	struct disp_agent_figures af;
	const struct rec *ag = NULL;
	uint64_t s1;

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 100);
	login2(e, GW_WB2, "b", "expert", 1, 100);
	s1 = open2(e, 1, "x", 0, 200);
	disp_customer_message(e, GW_WEB, s1, 1, S("refund?"), S(""), 300);
	clear_recs();
	expect_error(disp_transfer(e, GW_WB1, s1, S("a"), S("expert"), false, S("r"), 400), -EPERM,
	             DISP_ERR_CONSENT_REQUIRED, s1);
	clear_recs();
	expect_error(disp_transfer(e, GW_WB1, s1, S("a"), S("nope"), true, S("r"), 400), -EINVAL,
	             DISP_ERR_UNKNOWN_SKILL, s1);
	clear_recs();
	expect_error(disp_transfer(e, GW_WB2, s1, S("b"), S("x"), true, S("r"), 400), -EPERM,
	             DISP_ERR_FORBIDDEN, s1);
	clear_recs();
	assert_int_equal(disp_transfer(e, GW_WB1, s1, S("a"), S("expert"), true, S("r"), 500), 0);
	assert_int_equal(recs[0].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[0].gw, GW_WB1);
	assert_int_equal(recs[0].close_reason, DISP_CLOSE_TRANSFERRED);
	assert_int_equal(recs[1].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[1].gw, GW_WEB);
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_ASSIGNED && recs[i].to_agent)
			ag = &recs[i];
	assert_non_null(ag);
	assert_string_equal(ag->agent_id, "b");
	assert_string_equal(ag->skill, "expert");
	assert_true(ag->transferred);
	assert_int_equal(ag->nb_backlog, 1);
	assert_string_equal(ag->backlog[0].text, "refund?");
	disp_skill_figures_get(e, S("x"), &f, 600);
	assert_int_equal(f.transferred_out, 1);
	assert_int_equal(f.served, 0);
	disp_agent_figures_get(e, S("a"), &af, 600);
	assert_int_equal(af.transferred, 1);
	assert_int_equal(af.load, 0);
	done2(e);
}

/* ---- rule 8: service-level clocks ----------------------------------------- */

static void test_sla_first_response_and_reply(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x",
	                                .first_response_ms = 1000,
	                                .reply_overdue_ms = 2000,
	                                .hold_max_ms = 3000}};
	struct disp_engine *e = make2(sk, 1, 100000);
	struct disp_skill_figures f;
	const struct rec *r;
	uint64_t s1;

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 100);
	s1 = open2(e, 1, "x", 0, 1000);
	clear_recs();
	disp_tick(e, 1999);
	assert_null(find_sla(DISP_SLA_FIRST_RESPONSE));
	disp_tick(e, 2000);
	r = find_sla(DISP_SLA_FIRST_RESPONSE);
	assert_non_null(r);
	assert_int_equal(r->gw, GW_WB1);
	assert_int_equal(r->session_id, s1);
	assert_string_equal(r->agent_id, "a");
	disp_tick(e, 9000);
	assert_int_equal(count_sla(DISP_SLA_FIRST_RESPONSE), 1);

	/* REPLY_OVERDUE from the oldest unanswered customer message. */
	disp_agent_message(e, GW_WB1, s1, S("a"), 1, S("hi"), S(""), false, 10000);
	disp_customer_message(e, GW_WEB, s1, 2, S("q1"), S(""), 11000);
	disp_customer_message(e, GW_WEB, s1, 3, S("q2"), S(""), 12000);
	clear_recs();
	disp_tick(e, 12999);
	assert_null(find_sla(DISP_SLA_REPLY_OVERDUE));
	disp_tick(e, 13000);
	assert_int_equal(count_sla(DISP_SLA_REPLY_OVERDUE), 1);
	disp_tick(e, 20000);
	assert_int_equal(count_sla(DISP_SLA_REPLY_OVERDUE), 1);
	/* Answered; a new question is a new episode. */
	disp_agent_message(e, GW_WB1, s1, S("a"), 4, S("done"), S(""), false, 21000);
	disp_customer_message(e, GW_WEB, s1, 5, S("q3"), S(""), 22000);
	disp_agent_message(e, GW_WB1, s1, S("a"), 6, S("ok"), S(""), false, 23000);
	disp_tick(e, 30000);
	assert_int_equal(count_sla(DISP_SLA_REPLY_OVERDUE), 1); /* answered in time */

	/* HOLD_OVERDUE: a "please wait" longer than 3000. */
	clear_recs();
	disp_agent_message(e, GW_WB1, s1, S("a"), 7, S("wait"), S(""), true, 31000);
	disp_agent_message(e, GW_WB1, s1, S("a"), 8, S("still"), S(""), true, 32000);
	disp_tick(e, 33999);
	assert_null(find_sla(DISP_SLA_HOLD_OVERDUE));
	disp_tick(e, 34000);
	r = find_sla(DISP_SLA_HOLD_OVERDUE);
	assert_non_null(r);
	assert_int_equal(r->elapsed_ms, 3000);
	disp_agent_message(e, GW_WB1, s1, S("a"), 9, S("back"), S(""), false, 35000);
	disp_tick(e, 50000);
	assert_int_equal(count_sla(DISP_SLA_HOLD_OVERDUE), 1);
	disp_skill_figures_get(e, S("x"), &f, 50000);
	assert_int_equal(f.sla_alerts[DISP_SLA_FIRST_RESPONSE], 1);
	assert_int_equal(f.sla_alerts[DISP_SLA_REPLY_OVERDUE], 1);
	assert_int_equal(f.sla_alerts[DISP_SLA_HOLD_OVERDUE], 1);
	done2(e);
}

static void test_sla_queue_wait_and_idle(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .sla_answer_ms = 1000},
	                               {.name = "y", .idle_alert_ms = 5000}};
	struct disp_engine *e = make2(sk, 2, 1000000);
	const struct rec *r;
	struct disp_skill_figures f;
	uint64_t s1;

	(void)state;
	s1 = open2(e, 1, "x", 0, 1000);
	clear_recs();
	disp_tick(e, 1999);
	assert_null(find_sla(DISP_SLA_QUEUE_WAIT));
	disp_tick(e, 2000);
	r = find_sla(DISP_SLA_QUEUE_WAIT);
	assert_non_null(r);
	assert_int_equal(r->gw, GW_WEB); /* to the customer's gateway */
	assert_int_equal(r->session_id, s1);
	assert_int_equal(r->elapsed_ms, 1000);
	assert_string_equal(r->skill, "x");
	disp_tick(e, 5000);
	assert_int_equal(count_sla(DISP_SLA_QUEUE_WAIT), 1);
	/* Served late: counts against the service level. */
	login2(e, GW_WB1, "a", "x", 1, 6000);
	disp_skill_figures_get(e, S("x"), &f, 6000);
	assert_int_equal(f.answered, 1);
	assert_int_equal(f.answered_in_target, 0);

	/* IDLE_NO_INFLOW: y's agent READY with room, nothing for 5 s; once. */
	clear_recs();
	login2(e, GW_WB2, "b", "y", 2, 10000);
	disp_tick(e, 14999);
	assert_null(find_sla(DISP_SLA_IDLE_NO_INFLOW));
	disp_tick(e, 15000);
	r = find_sla(DISP_SLA_IDLE_NO_INFLOW);
	assert_non_null(r);
	assert_int_equal(r->gw, GW_WB2);
	assert_string_equal(r->agent_id, "b");
	disp_tick(e, 40000);
	assert_int_equal(count_sla(DISP_SLA_IDLE_NO_INFLOW), 1);
	/* An assignment re-arms it. */
	open2(e, 2, "y", 0, 41000);
	clear_recs();
	disp_tick(e, 45999);
	assert_null(find_sla(DISP_SLA_IDLE_NO_INFLOW));
	disp_tick(e, 46000);
	assert_non_null(find_sla(DISP_SLA_IDLE_NO_INFLOW));
	done2(e);
}

static void test_reroute_unanswered(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .reroute_ms = 2000}};
	struct disp_engine *e = make2(sk, 1, 1000000);
	const struct rec *ag = NULL;
	uint64_t s1;

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 100);
	s1 = open2(e, 1, "x", 0, 1000);
	assert_string_equal(assignee(s1), "a");
	login2(e, GW_WB2, "b", "x", 1, 1500);
	disp_customer_message(e, GW_WEB, s1, 1, S("hello?"), S(""), 1600);
	clear_recs();
	disp_tick(e, 2999);
	assert_int_equal(nrec, 0);
	disp_tick(e, 3000);
	assert_int_equal(recs[0].kind, DISP_OUT_CLOSED);
	assert_int_equal(recs[0].gw, GW_WB1);
	assert_int_equal(recs[0].close_reason, DISP_CLOSE_REROUTED);
	assert_int_equal(recs[1].kind, DISP_OUT_QUEUED);
	assert_int_equal(recs[1].gw, GW_WEB);
	for (unsigned i = 0; i < nrec; i++)
		if (recs[i].kind == DISP_OUT_ASSIGNED && recs[i].to_agent)
			ag = &recs[i];
	assert_non_null(ag);
	assert_string_equal(ag->agent_id, "b");
	assert_true(ag->transferred);
	assert_int_equal(ag->nb_backlog, 1);
	done2(e);
}

/* ---- rule 9: wrap-up ------------------------------------------------------ */

static void test_wrap_up_keeps_slot(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .wrap_up_ms = 5000}};
	struct disp_engine *e = make2(sk, 1, 1000000);
	uint64_t s1, s2, s3;

	(void)state;
	login2(e, GW_WB1, "a", "x", 1, 100);
	s1 = open2(e, 1, "x", 0, 1000);
	s2 = open2(e, 2, "x", 0, 1100);
	clear_recs();
	disp_session_end(e, GW_WEB, s1, 1, false, S(""), 2000);
	assert_int_equal(count_kind(DISP_OUT_CLOSED), 2);
	assert_int_equal(count_kind(DISP_OUT_ASSIGNED), 0); /* slot still busy */
	clear_recs();
	expect_error(disp_customer_message(e, GW_WEB, s1, 1, S("x"), S(""), 2100), -EINVAL,
	             DISP_ERR_UNKNOWN_SESSION, s1);
	/* The notes free the slot. */
	clear_recs();
	assert_int_equal(close2(e, GW_WB1, s1, "a", 3000), 0);
	assert_string_equal(assignee(s2), "a");
	/* Or the wrap-up time passing does. */
	s3 = open2(e, 3, "x", 0, 3100);
	disp_session_end(e, GW_WEB, s2, 1, false, S(""), 4000);
	clear_recs();
	disp_tick(e, 8999);
	assert_int_equal(count_kind(DISP_OUT_ASSIGNED), 0);
	disp_tick(e, 9000);
	assert_string_equal(assignee(s3), "a");
	/* Late notes for the wrapped-up session are still accepted. */
	clear_recs();
	assert_int_equal(close2(e, GW_WB1, s2, "a", 9100), 0);
	assert_int_equal(nrec, 0);
	done2(e);
}

/* ---- rule 10: figures on a small scripted day ----------------------------- */

static void test_figures_scripted_day(void **state)
{
	struct disp_skill_conf sk[] = {{.name = "x", .sla_answer_ms = 60000}};
	struct disp_engine *e = make2(sk, 1, 100000000);
	const uint64_t M = 60000, T0 = 1000000;
	struct disp_agent_figures af;
	struct disp_skill_figures f;
	uint64_t s[4];
	uint64_t fig_total = 0;

	(void)state;
	/* Two customers wait before anyone is there. */
	s[0] = open2(e, 1, "x", 0, T0);
	s[1] = open2(e, 2, "x", 0, T0 + 30 * 1000);
	disp_skill_figures_get(e, S("x"), &f, T0 + 50 * 1000);
	assert_int_equal(f.longest_wait_ms, 50 * 1000);
	assert_int_equal(f.waiting, 2);
	/* The agent comes at +2 min: s0 waited 2 min (late), s1 1.5 min (late). */
	login2(e, GW_WB1, "a", "x", 2, T0 + 2 * M);
	disp_agent_message(e, GW_WB1, s[0], S("a"), 1, S("hi"), S(""), false, T0 + 2 * M + 500);
	close2(e, GW_WB1, s[0], "a", T0 + 10 * M);
	disp_session_end(e, GW_WEB, s[1], 1, false, S(""), T0 + 20 * M);
	/* Idle 20..30, then two quick ones, answered at once. */
	s[2] = open2(e, 3, "x", 0, T0 + 30 * M);
	s[3] = open2(e, 4, "x", 0, T0 + 30 * M);
	disp_session_end(e, GW_WEB, s[2], 3, true, S(""), T0 + 40 * M);
	disp_session_end(e, GW_WEB, s[3], 1, false, S(""), T0 + 50 * M);
	/* A break (two agents so that it is allowed) of 5 minutes, then the hour ends. */
	login2(e, GW_WB2, "b", "x", 1, T0 + 50 * M);
	disp_agent_state(e, GW_WB1, S("a"), DISP_AGENT_BREAK_REQUESTED, T0 + 50 * M);
	disp_agent_state(e, GW_WB1, S("a"), DISP_AGENT_READY, T0 + 55 * M);

	assert_int_equal(disp_agent_figures_get(e, S("a"), &af, T0 + 62 * M), 0);
	assert_int_equal(af.online_ms, 60 * M);
	assert_int_equal(af.serving_ms, 18 * M + 20 * M);
	assert_int_equal(af.break_ms, 5 * M);
	assert_int_equal(af.ready_idle_ms, 10 * M + 7 * M);
	assert_int_equal(af.served, 4);
	assert_int_equal(af.customers_per_hour, 4);
	assert_int_equal(af.service_ratio_pct, (38 + 17) * 100 / 60);
	assert_int_equal(af.agent_closed, 1);
	assert_int_equal(af.complaints, 1);
	assert_int_equal(af.ratings[1], 2);
	for (unsigned i = 0; i < DISP_HIST_BUCKETS; i++)
		fig_total += af.handling_ms[i];
	assert_int_equal(fig_total, 4);
	assert_int_equal(af.first_response_ms[9], 1); /* 500 ms: bucket [256, 512) */

	assert_int_equal(disp_skill_figures_get(e, S("x"), &f, T0 + 62 * M), 0);
	assert_int_equal(f.offered, 4);
	assert_int_equal(f.answered, 4);
	assert_int_equal(f.answered_in_target, 2); /* service level 50% */
	assert_int_equal(f.served, 4);
	assert_int_equal(f.agent_closed, 1);
	assert_int_equal(f.waiting, 0);
	assert_int_equal(f.agents_online, 2);
	assert_int_equal(f.agents_ready, 2);
	assert_int_equal(f.agents_on_break, 0);
	assert_true(disp_footprint(e) > 0);
	done2(e);
}

/* ---- randomized ----------------------------------------------------------- */

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)(((rng * 2685821657736338717ull) >> 32) % n);
}

static void assert_stats_same_but_one_error(const struct disp_stats *a, const struct disp_stats *b)
{
	uint64_t more = 0;

	for (int c = 0; c < DISP_ERR_MAX; c++)
		more += b->errors[c] - a->errors[c];
	assert_int_equal(more, 1);
	assert_int_equal(a->sessions_opened, b->sessions_opened);
	assert_int_equal(a->sessions_queued, b->sessions_queued);
	assert_int_equal(a->sessions_assigned, b->sessions_assigned);
	assert_int_equal(a->sessions_closed, b->sessions_closed);
	assert_int_equal(a->sessions_abandoned, b->sessions_abandoned);
	assert_int_equal(a->sessions_busy, b->sessions_busy);
	assert_int_equal(a->delivered_to_agent, b->delivered_to_agent);
	assert_int_equal(a->delivered_to_customer, b->delivered_to_customer);
	assert_int_equal(a->agents_ready, b->agents_ready);
	assert_int_equal(a->sessions_open, b->sessions_open);
	assert_int_equal(a->sessions_waiting, b->sessions_waiting);
	assert_int_equal(a->sessions_busy_queue_full, b->sessions_busy_queue_full);
	assert_memory_equal(a->ratings, b->ratings, sizeof(a->ratings));
	assert_int_equal(a->complaints, b->complaints);
	assert_int_equal(a->backlog_dropped, b->backlog_dropped);
}

#define R_AGENTS 12
#define R_IDS    48

/*
 * What the randomized driver remembers from the answers, so that most of its
 * requests are the right ones (the right gateway, the serving agent) and the
 * rest are plausible mistakes.
 */
struct r_session {
	uint64_t id;
	uint32_t gw;
	int agent; /* the agent it was last assigned to, -1 none */
};

static struct r_session r_ids[R_IDS];
static uint32_t r_agent_gw[R_AGENTS];

static int r_agent_index(struct disp_str id)
{
	/* ids are "ag<n>" */
	int n = 0;

	if (id.len < 3)
		return -1;
	for (uint32_t i = 2; i < id.len; i++)
		n = n * 10 + (id.ptr[i] - '0');
	return n < R_AGENTS ? n : -1;
}

static void r_track(const struct disp_out *o)
{
	switch (o->kind) {
	case DISP_OUT_QUEUED: {
		unsigned slot = rnd(R_IDS);

		for (unsigned i = 0; i < R_IDS; i++) {
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
		for (unsigned i = 0; i < R_IDS; i++)
			if (r_ids[i].id == o->session_id)
				r_ids[i].agent = r_agent_index(o->agent_id);
		break;
	case DISP_OUT_CLOSED:
		/* Mostly forget it; a few stay to be used stale. */
		for (unsigned i = 0; i < R_IDS; i++)
			if (r_ids[i].id == o->session_id && rnd(16))
				r_ids[i].id = 0;
		break;
	case DISP_OUT_AGENT_STATE: {
		int a = r_agent_index(o->agent_id);

		if (a >= 0)
			r_agent_gw[a] = o->gateway_id;
		break;
	}
	default:
		break;
	}
}

/* Mostly a session the driver knows of, sometimes an empty slot (id 0). */
static const struct r_session *r_pick(void)
{
	const struct r_session *r = &r_ids[rnd(R_IDS)];

	for (unsigned i = 0; i < 32 && r->id == 0; i++)
		r = &r_ids[rnd(R_IDS)];
	return r;
}

static void test_random_invariants(void **state)
{
	static const struct disp_skill_conf rs[] = {
	        {.name = "s0", .queue_capacity = 6},
	        {.name = "s1", .queue_capacity = 4},
	        {.name = "s2", .tenant = "t1", .queue_capacity = 5},
	        {.name = "s3", .queue_capacity = 8},
	};
	static const char *const skill_names[] = {"s0", "s1", "s2", "s3", "zz"};
	static const char *const texts[] = {
	        "ok", "客服你好", "", "\xed\xa0\x80",
	        "a longer message that takes a bigger block of the pool: more than 64 bytes"};
	struct disp_conf conf = {.skills = rs,
	                         .nb_skills = 4,
	                         .max_agents = 10,
	                         .max_sessions = 64,
	                         .backlog_max = 3,
	                         .text_pool_bytes = 5 * 4096,
	                         .agent_text_max = 10,
	                         .customer_text_max = 100,
	                         .emit = on_emit};
	const char *seed_env = getenv("SURGE_SEED");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
	struct disp_engine *e;
	struct disp_stats st;
	uint64_t now = 1000;

	(void)state;
	printf("test_random_invariants: seed %llu (SURGE_SEED to replay)\n",
	       (unsigned long long)seed);
	rng = seed * 2654435761u + 1;
	memset(r_ids, 0, sizeof(r_ids));
	memset(r_agent_gw, 0, sizeof(r_agent_gw));
	nrec = nemit = nerrors = 0;
	record_light = true;
	e = disp_create(&conf);
	assert_non_null(e);

	for (unsigned op = 0; op < 200000; op++) {
		const struct r_session *rs_ = r_pick();
		int ai = rs_->agent >= 0 && rnd(8) ? rs_->agent : (int)rnd(R_AGENTS);
		uint32_t cust_gw = rnd(8) ? rs_->gw : 1 + rnd(4);
		uint32_t agent_gw = rnd(8) ? r_agent_gw[ai] : 1 + rnd(4);
		uint64_t sid = rs_->id;
		struct disp_stats before, after;
		unsigned emits0 = nemit, err0 = nerrors, busy0;
		int rc = 0, kind = (int)rnd(1000);
		char agent[16];

		if (rnd(16) == 0)
			sid ^= 1ull << (32 + rnd(2)); /* a stale or forged generation */
		snprintf(agent, sizeof(agent), "ag%d", ai);
		now += rnd(50);
		/* Timers due now fire here, so that the request below causes only its own answers.
		 */
		disp_tick(e, now);
		emits0 = nemit;
		err0 = nerrors;
		disp_stats_get(e, &before);
		busy0 = (unsigned)before.sessions_busy;

		if (kind < 40) {
			struct disp_skill_level lv[3];
			struct disp_login req = {.agent_id = S(agent),
			                         .tenant = S(rnd(2) ? "t1" : ""),
			                         .skills = lv,
			                         .nb_skills = 1 + rnd(3),
			                         .max_sessions = rnd(8) ? 1 + rnd(4) : 0};

			for (uint32_t i = 0; i < req.nb_skills; i++)
				lv[i].skill = S(skill_names[rnd(rnd(20) ? 4 : 5)]);
			/* Agents have a home workbench gateway (3 or 4) and sometimes move. */
			rc = disp_agent_login(e, rnd(10) ? 3 + (uint32_t)ai % 2 : 1 + rnd(4), &req,
			                      now);
		} else if (kind < 80) {
			static const enum disp_agent_state want[] = {
			        DISP_AGENT_READY, DISP_AGENT_READY, DISP_AGENT_BREAK_REQUESTED,
			        DISP_AGENT_OFFLINE_REQUESTED, DISP_AGENT_ON_BREAK};
			rc = disp_agent_state(e, agent_gw, S(agent), want[rnd(5)], now);
		} else if (kind < 90) {
			rc = disp_agent_heartbeat(e, agent_gw, S(agent), now);
		} else if (kind < 260) {
			char cid[16];
			struct disp_open req = {.open_ref = op,
			                        .tenant = S(rnd(2) ? "t1" : "t2"),
			                        .skill = S(skill_names[rnd(rnd(20) ? 4 : 5)]),
			                        .question = S(texts[rnd(rnd(20) ? 3 : 5)]),
			                        .bot_transcript = S(texts[rnd(3)])};

			snprintf(cid, sizeof(cid), "c%u", rnd(1000));
			req.customer_id = S(cid);
			rc = disp_session_open(e, 1 + rnd(2), &req, now);
		} else if (kind < 500) {
			rc = disp_customer_message(e, cust_gw, sid, op,
			                           S(texts[rnd(rnd(20) ? 3 : 5)]),
			                           S(rnd(4) ? "" : "att"), now);
		} else if (kind < 780) {
			rc = disp_agent_message(e, agent_gw, sid, S(agent), op,
			                        S(texts[rnd(rnd(20) ? 3 : 5)]),
			                        S(rnd(4) ? "" : "att"), rnd(2), now);
		} else if (kind < 860) {
			rc = disp_session_end(e, cust_gw, sid, rnd(rnd(20) ? 4 : 9), rnd(2), S("c"),
			                      now);
		} else if (kind < 980) {
			rc = disp_agent_close(e, agent_gw, sid, S(agent), S(rnd(8) ? "notes" : ""),
			                      now);
		} else if (kind < 998) {
			rc = disp_transfer(e, agent_gw, sid, S(agent), S("s1"), rnd(2), S("r"),
			                   now);
		} else {
			uint32_t gw = 1 + rnd(4);

			disp_gateway_down(e, gw, now);
			/* Its customers' sessions are gone without a word to them. */
			for (unsigned i = 0; i < R_IDS; i++)
				if (r_ids[i].gw == gw && rnd(4))
					r_ids[i].id = 0;
		}

		int inv = disp_check_invariants(e);
		if (inv != 0)
			fail_msg("invariant %d broken after op %u (kind %d) seed %llu", inv, op,
			         kind, (unsigned long long)seed);
		disp_stats_get(e, &after);
		if (rc == 0) {
			assert_int_equal(nerrors, err0);
		} else if (rc == -EBUSY && after.sessions_busy == busy0 + 1u) {
			assert_int_equal(nemit, emits0 + 1); /* the Busy, and nothing else */
			assert_int_equal(nerrors, err0);
			assert_int_equal(after.sessions_open, before.sessions_open);
		} else {
			/* A refusal: exactly one ERROR and nothing else changed. */
			assert_true(rc < 0);
			assert_int_equal(nemit, emits0 + 1);
			assert_int_equal(nerrors, err0 + 1);
			assert_stats_same_but_one_error(&before, &after);
		}
	}
	disp_stats_get(e, &st);
	printf("test_random_invariants: opened %llu assigned %llu closed %llu abandoned %llu "
	       "busy %llu (queue full %llu) delivered %llu/%llu backlog dropped %llu errors %u\n",
	       (unsigned long long)st.sessions_opened, (unsigned long long)st.sessions_assigned,
	       (unsigned long long)st.sessions_closed, (unsigned long long)st.sessions_abandoned,
	       (unsigned long long)st.sessions_busy,
	       (unsigned long long)st.sessions_busy_queue_full,
	       (unsigned long long)st.delivered_to_agent,
	       (unsigned long long)st.delivered_to_customer, (unsigned long long)st.backlog_dropped,
	       nerrors);
	for (int c = 0; c < DISP_ERR_MAX; c++)
		printf("%s%llu", c ? " " : "test_random_invariants: errors by code ",
		       (unsigned long long)st.errors[c]);
	printf("\n");
	record_light = false;
	disp_destroy(e);
	/* The run reached the interesting states, not only refusals. */
	assert_true(st.sessions_assigned > 5000);
	assert_true(st.delivered_to_agent > 5000 && st.delivered_to_customer > 5000);
	assert_true(st.sessions_busy_queue_full > 0 &&
	            st.sessions_busy > st.sessions_busy_queue_full);
	assert_true(st.sessions_closed > st.sessions_abandoned);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_create_refuses_bad_conf),
	        cmocka_unit_test_setup_teardown(test_login_ready, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_login_refusals, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_assigns_free_agent, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_queues_in_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_login_pulls_fifo_and_capacity, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_capacity_then_queue, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_least_loaded, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_customer_message_delivered_once, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_backlog_in_assigned, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_backlog_limit_while_queued, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_agent_message_delivered, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_agent_text_code_points, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_customer_text_limit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_invalid_utf8, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wrong_gateway_forbidden, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_other_agents_session_forbidden, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_stale_session_unknown, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_end_while_queued_abandoned, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_end_rating_counted, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_agent_close, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_customer_sessions, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_queue_full_busy, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_and_skill_on_open, setup, teardown),
	        cmocka_unit_test(test_pool_exhaustion_busy),
	        cmocka_unit_test(test_no_slot_busy),
	        cmocka_unit_test_setup_teardown(test_offline_drain, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_break_drain_and_bad_state, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_gateway_down_requeues_front, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_gateway_down_order_of_several, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_gateway_down_order_beyond_hand, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_relogin_other_gateway, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_transfer_consent, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_too_many_agents, setup, teardown),
	        cmocka_unit_test(test_strategy_longest_idle),
	        cmocka_unit_test(test_strategy_least_loaded_order),
	        cmocka_unit_test(test_strategy_least_loaded_two_skills),
	        cmocka_unit_test(test_relogin_changes_only_skill),
	        cmocka_unit_test(test_strategy_round_robin),
	        cmocka_unit_test(test_strategy_best_skill),
	        cmocka_unit_test(test_strategy_fewest_today),
	        cmocka_unit_test(test_strategy_random),
	        cmocka_unit_test(test_fair_across_skills),
	        cmocka_unit_test(test_position_eta_updates),
	        cmocka_unit_test(test_overflow_after_wait),
	        cmocka_unit_test(test_queue_full_and_closed_leave_message),
	        cmocka_unit_test(test_break_cap_edges),
	        cmocka_unit_test(test_break_cap_every_group),
	        cmocka_unit_test(test_break_drain_and_overrun),
	        cmocka_unit_test(test_heartbeat_disconnect_requeues_front),
	        cmocka_unit_test(test_transfer_with_backlog),
	        cmocka_unit_test(test_sla_first_response_and_reply),
	        cmocka_unit_test(test_sla_queue_wait_and_idle),
	        cmocka_unit_test(test_reroute_unanswered),
	        cmocka_unit_test(test_wrap_up_keeps_slot),
	        cmocka_unit_test(test_figures_scripted_day),
	        cmocka_unit_test(test_random_invariants),
	};

	return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
