/* SPDX-License-Identifier: MIT */
/*
 * gw_rules_check: the dispatcher's service rules, over the wire, against a
 * running router configured by tests/integration/rules.sh (short clocks):
 *
 *   queue     sessions of a group with no agent queue at positions 1, 2, 3;
 *             an agent logging in takes the first
 *   breaks    five agents of a group: with a 20% cap one break is granted,
 *             the next denied with a reason
 *   reroute   an agent's gateway falls silent (no heartbeat): its session goes back to the
 *             queue (the customer is told) and reaches another agent with
 *             the conversation so far as backlog, marked transferred
 *   transfer  without the customer's consent: CONSENT_REQUIRED, nothing
 *             changes; with it: the old agent loses the session, an agent of
 *             the new group gets it, transferred, with the backlog
 *   clocks    FIRST_RESPONSE, REPLY_OVERDUE, HOLD_OVERDUE and QUEUE_WAIT
 *             alerts, each once, after the configured time
 *
 * Each wait is bounded. Ends with "N passed, N failed"; exits 1 on failure.
 *   gw_rules_check --router IP[:PORT]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "itest.h"

#define CUSTOMER_GW 1u
#define AGENT_GW    2u
#define SILENT_GW   21u /* the agent gateway that falls silent */
#define MAX_EVENTS  4096u

/* What a gateway received, flattened. */
struct event {
	uint32_t gw;
	Surge__V1__Envelope__BodyCase kind;
	uint64_t session_id;
	uint64_t open_ref;
	uint32_t position;
	char agent_id[64];
	int code;     /* Error.code, SessionClosed.reason, SlaAlert.kind, AgentStateResult.state */
	bool granted; /* AgentStateResult */
	bool transferred;
	size_t nb_backlog;
	char backlog0[64]; /* first backlog text */
	uint64_t elapsed_ms;
	uint64_t at_ns;
};

static struct event events[MAX_EVENTS];
static unsigned nb_events;
static struct gw_client *cgw, *agw, *sgw;
static bool silent; /* sgw no longer polled nor flushed */

static void copy_id(char *dst, const char *src)
{
	snprintf(dst, 64, "%s", src ? src : "");
}

static void on_envelope(struct gw_client *c, const Surge__V1__Envelope *env, uint64_t rx_ns,
                        void *ctx)
{
	struct event *e;

	(void)ctx;
	if (nb_events == MAX_EVENTS)
		return;
	e = &events[nb_events++];
	memset(e, 0, sizeof(*e));
	e->gw = gw_id(c);
	e->kind = env->body_case;
	e->at_ns = rx_ns;
	switch (env->body_case) {
	case SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED:
		e->session_id = env->session_queued->session_id;
		e->open_ref = env->session_queued->open_ref;
		e->position = env->session_queued->position;
		break;
	case SURGE__V1__ENVELOPE__BODY_ASSIGNED:
		e->session_id = env->assigned->session_id;
		copy_id(e->agent_id, env->assigned->agent_id);
		e->transferred = env->assigned->transferred;
		e->nb_backlog = env->assigned->n_backlog;
		if (env->assigned->n_backlog)
			copy_id(e->backlog0, env->assigned->backlog[0]->text);
		break;
	case SURGE__V1__ENVELOPE__BODY_DELIVER:
		e->session_id = env->deliver->session_id;
		copy_id(e->agent_id, env->deliver->agent_id);
		break;
	case SURGE__V1__ENVELOPE__BODY_SESSION_CLOSED:
		e->session_id = env->session_closed->session_id;
		e->code = env->session_closed->reason;
		copy_id(e->agent_id, env->session_closed->agent_id);
		break;
	case SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT:
		copy_id(e->agent_id, env->agent_state_result->agent_id);
		e->code = env->agent_state_result->state;
		e->granted = env->agent_state_result->granted;
		printf("# %s: state %d granted %d %s\n", e->agent_id, e->code, e->granted,
		       env->agent_state_result->reason);
		break;
	case SURGE__V1__ENVELOPE__BODY_SLA_ALERT:
		e->session_id = env->sla_alert->session_id;
		copy_id(e->agent_id, env->sla_alert->agent_id);
		e->code = env->sla_alert->kind;
		e->elapsed_ms = env->sla_alert->elapsed_ms;
		break;
	case SURGE__V1__ENVELOPE__BODY_BUSY:
		e->open_ref = env->busy->open_ref;
		break;
	case SURGE__V1__ENVELOPE__BODY_ERROR:
		e->code = env->error->code;
		e->open_ref = env->error->ref;
		printf("# error %d: %s (ref %" PRIu64 ")\n", e->code, env->error->detail,
		       env->error->ref);
		break;
	default:
		break;
	}
}

/*
 * Agents stay connected by heartbeats (rules.sh sets a 1.5 s heartbeat
 * timeout); those of the silent gateway stop when it falls silent.
 */
static struct {
	struct gw_client *c;
	char id[32];
} agents[64];
static unsigned nb_agents;
static uint64_t next_heartbeat_ns;

static void heartbeats(void)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__AgentHeartbeat h = SURGE__V1__AGENT_HEARTBEAT__INIT;
	uint64_t now = gw_now_ns();

	if (now < next_heartbeat_ns)
		return;
	next_heartbeat_ns = now + 300000000ull;
	env.body_case = SURGE__V1__ENVELOPE__BODY_AGENT_HEARTBEAT;
	env.agent_heartbeat = &h;
	for (unsigned i = 0; i < nb_agents; i++) {
		if (silent && agents[i].c == sgw)
			continue;
		h.agent_id = agents[i].id;
		gw_add(agents[i].c, &env);
	}
}

static void flush_all(void)
{
	gw_flush(cgw);
	gw_flush(agw);
	if (!silent)
		gw_flush(sgw);
}

static void pump(uint64_t wait_ns)
{
	struct gw_client *cs[3] = {cgw, agw, sgw};

	heartbeats();
	flush_all();
	gw_poll_set(cs, silent ? 2 : 3, wait_ns, on_envelope, NULL);
	flush_all();
}

static void pump_1ms(void *ctx)
{
	(void)ctx;
	pump(1000000);
}

static void settle(unsigned ms)
{
	itest_settle(ms, pump_1ms, NULL);
}

/* Matching rule for find(): zero / empty fields match anything. */
struct want {
	uint32_t gw;
	Surge__V1__Envelope__BodyCase kind;
	uint64_t session_id;
	uint64_t open_ref;
	const char *agent_id;
	int code; /* -1: any */
};

static int find_from(unsigned from, const struct want *w)
{
	for (unsigned i = from; i < nb_events; i++) {
		const struct event *e = &events[i];

		if (w->gw && e->gw != w->gw)
			continue;
		if (e->kind != w->kind)
			continue;
		if (w->session_id && e->session_id != w->session_id)
			continue;
		if (w->open_ref && e->open_ref != w->open_ref)
			continue;
		if (w->agent_id && strcmp(w->agent_id, e->agent_id))
			continue;
		if (w->code >= 0 && e->code != w->code)
			continue;
		return (int)i;
	}
	return -1;
}

/* On a failure: what arrived since `from`, to see what happened instead. */
static void dump_from(unsigned from)
{
	for (unsigned i = from; i < nb_events; i++)
		printf("#   gw %u kind %d session %" PRIu64 " agent %s code %d\n", events[i].gw,
		       events[i].kind, events[i].session_id, events[i].agent_id, events[i].code);
}

/* A search for wait_for(): where it starts, what it wants, what it found. */
struct search {
	unsigned from;
	struct want w;
	int found;
};

static bool search_found(void *ctx)
{
	struct search *sr = ctx;

	sr->found = find_from(sr->from, &sr->w);
	return sr->found >= 0;
}

static const struct event *wait_for(unsigned from, struct want w)
{
	struct search sr = {from, w, -1};

	return itest_wait(search_found, &sr, pump_1ms, NULL) ? &events[sr.found] : NULL;
}

static unsigned count_from(unsigned from, struct want w)
{
	unsigned n = 0;
	int i;

	while ((i = find_from(from, &w)) >= 0) {
		n++;
		from = (unsigned)i + 1;
	}
	return n;
}

/* ---- requests ------------------------------------------------------------ */

/* Logs the agent in and keeps it alive with heartbeats. */
static void login(struct gw_client *c, const char *agent, const char *skill, uint32_t capacity)
{
	if (nb_agents < 64) {
		agents[nb_agents].c = c;
		snprintf(agents[nb_agents].id, sizeof(agents[nb_agents].id), "%s", agent);
		nb_agents++;
	}
	itest_login(c, agent, skill, capacity);
}

static void open_session(uint64_t ref, const char *customer, const char *skill)
{
	itest_open(cgw, ref, customer, skill, SURGE__V1__CHANNEL__WEB, "我的订单在哪里?");
}

static void transfer(uint64_t session, const char *agent, const char *to, bool consented)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__Transfer t = SURGE__V1__TRANSFER__INIT;

	t.session_id = session;
	t.agent_id = (char *)agent;
	t.to_skill = (char *)to;
	t.customer_consented = consented;
	t.reason = "needs a presale expert";
	env.body_case = SURGE__V1__ENVELOPE__BODY_TRANSFER;
	env.transfer = &t;
	gw_add(agw, &env);
}

/* ---- scenarios ----------------------------------------------------------- */

static void scenario_queue(void)
{
	unsigned from = nb_events;
	const struct event *q[3], *a;

	printf("# queue: positions and assignment on login\n");
	open_session(101, "q-cust-1", "presale");
	open_session(102, "q-cust-2", "presale");
	open_session(103, "q-cust-3", "presale");
	for (unsigned i = 0; i < 3; i++)
		q[i] = wait_for(from,
		                (struct want){.gw = CUSTOMER_GW,
		                              .kind = SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED,
		                              .open_ref = 101 + i,
		                              .code = -1});
	check(q[0] && q[1] && q[2], "three sessions queued");
	if (!q[0] || !q[1] || !q[2])
		return;
	check(q[0]->position == 1 && q[1]->position == 2 && q[2]->position == 3,
	      "positions 1, 2, 3 (got %u, %u, %u)", q[0]->position, q[1]->position, q[2]->position);
	login(agw, "q-agent", "presale", 1);
	a = wait_for(from, (struct want){.gw = AGENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_ASSIGNED,
	                                 .agent_id = "q-agent",
	                                 .code = -1});
	check(a && a->session_id == q[0]->session_id,
	      "the agent logging in takes the first in the queue");
	a = wait_for(from, (struct want){.gw = CUSTOMER_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_ASSIGNED,
	                                 .session_id = q[0]->session_id,
	                                 .code = -1});
	check(a && !strcmp(a->agent_id, "q-agent"), "the customer is told which agent");
}

static void scenario_breaks(void)
{
	unsigned from = nb_events;
	const struct event *r;
	char id[32];

	printf("# breaks: the 20%% cap among 5 agents\n");
	for (unsigned i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "b-agent-%u", i);
		login(agw, id, "aftersale", 2);
	}
	for (unsigned i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "b-agent-%u", i);
		wait_for(from, (struct want){.kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
		                             .agent_id = id,
		                             .code = SURGE__V1__AGENT_STATE_KIND__READY});
	}
	from = nb_events;
	itest_agent_state(agw, "b-agent-0", SURGE__V1__AGENT_STATE_KIND__BREAK_REQUESTED);
	r = wait_for(from, (struct want){.kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
	                                 .agent_id = "b-agent-0",
	                                 .code = -1});
	check(r && r->granted, "first break of 5 agents granted");
	from = nb_events;
	itest_agent_state(agw, "b-agent-1", SURGE__V1__AGENT_STATE_KIND__BREAK_REQUESTED);
	r = wait_for(from, (struct want){.kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
	                                 .agent_id = "b-agent-1",
	                                 .code = -1});
	check(r && !r->granted, "second break denied (20%% of 5 is 1)");
	check(r && r->code == SURGE__V1__AGENT_STATE_KIND__READY,
	      "the denied agent stays READY (state %d)", r ? r->code : -1);
	from = nb_events;
	itest_agent_state(agw, "b-agent-0", SURGE__V1__AGENT_STATE_KIND__READY);
	wait_for(from, (struct want){.kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
	                             .agent_id = "b-agent-0",
	                             .code = SURGE__V1__AGENT_STATE_KIND__READY});
	from = nb_events;
	itest_agent_state(agw, "b-agent-1", SURGE__V1__AGENT_STATE_KIND__BREAK_REQUESTED);
	r = wait_for(from, (struct want){.kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
	                                 .agent_id = "b-agent-1",
	                                 .code = -1});
	check(r && r->granted, "after the first break ends, the next is granted");
}

/* Returns the session id that ends up with r-agent-2, for the transfer scenario. */
static uint64_t scenario_reroute(void)
{
	unsigned from = nb_events;
	const struct event *q, *a, *re, *d;

	printf("# reroute: an agent's gateway falls silent\n");
	login(sgw, "r-agent-1", "general", 1);
	if (!wait_for(from, (struct want){.gw = SILENT_GW,
	                                  .kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
	                                  .agent_id = "r-agent-1",
	                                  .code = -1}))
		check(false, "r-agent-1 logged in");
	open_session(201, "r-cust", "general");
	q = wait_for(from, (struct want){.gw = CUSTOMER_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED,
	                                 .open_ref = 201,
	                                 .code = -1});
	a = wait_for(from, (struct want){.gw = SILENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_ASSIGNED,
	                                 .agent_id = "r-agent-1",
	                                 .code = -1});
	check(q && a && a->session_id == q->session_id, "session assigned to r-agent-1");
	if (!q || !a)
		return 0;
	itest_customer_says(cgw, q->session_id, 1, "first question before the drop");
	itest_customer_says(cgw, q->session_id, 2, "second question before the drop");
	d = wait_for(from, (struct want){.gw = SILENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_DELIVER,
	                                 .session_id = q->session_id,
	                                 .code = -1});
	check(d != NULL, "messages reach r-agent-1");
	settle(100);
	login(agw, "r-agent-2", "general", 1);
	wait_for(from, (struct want){.gw = AGENT_GW,
	                             .kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
	                             .agent_id = "r-agent-2",
	                             .code = -1});
	from = nb_events;
	silent = true; /* the gateway of r-agent-1 is gone: no frame, no ack */
	re = wait_for(from, (struct want){.gw = CUSTOMER_GW,
	                                  .kind = SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED,
	                                  .session_id = q->session_id,
	                                  .code = -1});
	check(re != NULL, "the customer is told the session is queued again");
	if (!re)
		dump_from(from);
	a = wait_for(from, (struct want){.gw = AGENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_ASSIGNED,
	                                 .session_id = q->session_id,
	                                 .code = -1});
	check(a && !strcmp(a->agent_id, "r-agent-2"), "r-agent-2 gets the session");
	check(a && a->transferred, "marked transferred");
	check(a && a->nb_backlog >= 2 && !strcmp(a->backlog0, "first question before the drop"),
	      "with the conversation so far as backlog (%zu messages)", a ? a->nb_backlog : 0);
	return q->session_id;
}

static void scenario_transfer(uint64_t session)
{
	unsigned from = nb_events;
	const struct event *e, *a, *c;

	printf("# transfer: consent required\n");
	if (!session) {
		check(false, "a session to transfer");
		return;
	}
	login(agw, "t-agent", "vip", 1);
	wait_for(from, (struct want){.gw = AGENT_GW,
	                             .kind = SURGE__V1__ENVELOPE__BODY_AGENT_STATE_RESULT,
	                             .agent_id = "t-agent",
	                             .code = -1});
	from = nb_events;
	transfer(session, "r-agent-2", "vip", false);
	e = wait_for(from, (struct want){.gw = AGENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_ERROR,
	                                 .code = SURGE__V1__ERROR_CODE__CONSENT_REQUIRED});
	check(e != NULL, "transfer without consent: Error CONSENT_REQUIRED");
	settle(200);
	check(count_from(from, (struct want){.kind = SURGE__V1__ENVELOPE__BODY_ASSIGNED,
	                                     .session_id = session,
	                                     .code = -1}) == 0,
	      "and nothing changes");
	from = nb_events;
	transfer(session, "r-agent-2", "vip", true);
	c = wait_for(from, (struct want){.gw = AGENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_SESSION_CLOSED,
	                                 .session_id = session,
	                                 .agent_id = "r-agent-2",
	                                 .code = SURGE__V1__CLOSE_REASON__TRANSFERRED});
	check(c != NULL, "with consent: r-agent-2 gets SessionClosed TRANSFERRED");
	a = wait_for(from, (struct want){.gw = AGENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_ASSIGNED,
	                                 .session_id = session,
	                                 .agent_id = "t-agent",
	                                 .code = -1});
	check(a && a->transferred && a->nb_backlog >= 2,
	      "t-agent gets it, transferred, with the backlog");
}

static void scenario_clocks(void)
{
	unsigned from = nb_events;
	const struct event *q, *a, *al, *q2;

	printf("# clocks: FIRST_RESPONSE, REPLY_OVERDUE, HOLD_OVERDUE, QUEUE_WAIT\n");
	login(agw, "s-agent", "sla", 1);
	open_session(301, "s-cust-1", "sla");
	q = wait_for(from, (struct want){.gw = CUSTOMER_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED,
	                                 .open_ref = 301,
	                                 .code = -1});
	a = wait_for(from, (struct want){.gw = AGENT_GW,
	                                 .kind = SURGE__V1__ENVELOPE__BODY_ASSIGNED,
	                                 .agent_id = "s-agent",
	                                 .code = -1});
	check(q && a, "s-agent has a session");
	if (!q || !a)
		return;
	/* first_response_ms is 600 in rules.sh */
	al = wait_for(from, (struct want){.gw = AGENT_GW,
	                                  .kind = SURGE__V1__ENVELOPE__BODY_SLA_ALERT,
	                                  .session_id = q->session_id,
	                                  .code = SURGE__V1__SLA_KIND__FIRST_RESPONSE});
	check(al && al->elapsed_ms >= 600 && (al->at_ns - a->at_ns) >= 500000000ull,
	      "FIRST_RESPONSE after 600 ms without an answer (elapsed %" PRIu64 " ms)",
	      al ? al->elapsed_ms : 0);

	from = nb_events;
	itest_agent_says(agw, q->session_id, "s-agent", 1, "您好", false);
	/* the answer first, so the next question is the one left unanswered */
	wait_for(from, (struct want){.gw = CUSTOMER_GW,
	                             .kind = SURGE__V1__ENVELOPE__BODY_DELIVER,
	                             .session_id = q->session_id,
	                             .code = -1});
	from = nb_events;
	itest_customer_says(cgw, q->session_id, 11, "还在吗?");
	al = wait_for(from, (struct want){.gw = AGENT_GW,
	                                  .kind = SURGE__V1__ENVELOPE__BODY_SLA_ALERT,
	                                  .session_id = q->session_id,
	                                  .code = SURGE__V1__SLA_KIND__REPLY_OVERDUE});
	check(al && al->elapsed_ms >= 800, "REPLY_OVERDUE after 800 ms (elapsed %" PRIu64 " ms)",
	      al ? al->elapsed_ms : 0);
	if (!al)
		dump_from(from);

	from = nb_events;
	itest_agent_says(agw, q->session_id, "s-agent", 2, "请稍等, 我查一下", true);
	al = wait_for(from, (struct want){.gw = AGENT_GW,
	                                  .kind = SURGE__V1__ENVELOPE__BODY_SLA_ALERT,
	                                  .session_id = q->session_id,
	                                  .code = SURGE__V1__SLA_KIND__HOLD_OVERDUE});
	check(al && al->elapsed_ms >= 1000,
	      "HOLD_OVERDUE after a 1000 ms \"please wait\" (elapsed %" PRIu64 " ms)",
	      al ? al->elapsed_ms : 0);

	from = nb_events;
	open_session(302, "s-cust-2", "sla");
	q2 = wait_for(from, (struct want){.gw = CUSTOMER_GW,
	                                  .kind = SURGE__V1__ENVELOPE__BODY_SESSION_QUEUED,
	                                  .open_ref = 302,
	                                  .code = -1});
	check(q2 && q2->position == 1, "a second customer waits (s-agent is full)");
	al = q2 ? wait_for(from, (struct want){.gw = CUSTOMER_GW,
	                                       .kind = SURGE__V1__ENVELOPE__BODY_SLA_ALERT,
	                                       .session_id = q2->session_id,
	                                       .code = SURGE__V1__SLA_KIND__QUEUE_WAIT})
	        : NULL;
	check(al && al->elapsed_ms >= 700,
	      "QUEUE_WAIT after the 700 ms target (elapsed %" PRIu64 " ms)",
	      al ? al->elapsed_ms : 0);
	settle(1500);
	check(count_from(0, (struct want){.kind = SURGE__V1__ENVELOPE__BODY_SLA_ALERT,
	                                  .session_id = q->session_id,
	                                  .code = SURGE__V1__SLA_KIND__FIRST_RESPONSE}) == 1,
	      "each alert fires once");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {ITEST_OPT_ROUTER, {NULL, 0, NULL, 0}};
	struct itest_args args = {.cgw = CUSTOMER_GW, .agw = AGENT_GW};
	uint64_t session;
	int opt;

	while ((opt = getopt_long(argc, argv, "r:", opts, NULL)) != -1)
		if (itest_option(opt, optarg, &args) <= 0)
			goto out_usage;
	if (!args.have_router)
		goto out_usage;
	cgw = gw_open(CUSTOMER_GW, &args.router, NULL);
	agw = gw_open(AGENT_GW, &args.router, NULL);
	sgw = gw_open(SILENT_GW, &args.router, NULL);
	if (!cgw || !agw || !sgw) {
		perror("gw_open");
		return 1;
	}
	scenario_queue();
	scenario_breaks();
	session = scenario_reroute();
	scenario_transfer(session);
	scenario_clocks();
	gw_close(cgw);
	gw_close(agw);
	gw_close(sgw);
	return itest_report();

out_usage:
	fprintf(stderr, "usage: gw_rules_check --router IP[:PORT]\n");
	return 2;
}
