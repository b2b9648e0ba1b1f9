/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the integration gateway programs
 * (tests/integration/gw_*.c). The Makefile builds each of those files as its
 * own program, so everything here is static; `static inline` keeps
 * -Wunused-function quiet in the programs that do not use a helper.
 *
 * Output is TAP-like: one "ok - ..." / "not ok - ..." line per check, then
 * "N passed, N failed" (itest_report).
 */
#ifndef SURGE_ITEST_H
#define SURGE_ITEST_H

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#define ITEST_WAIT_NS 5000000000ull /* the longest any single wait may take */

static unsigned itest_passed, itest_failed;

/* Prints "ok - <what>" or "not ok - <what>" and counts it. */
__attribute__((format(printf, 2, 3))) static inline void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s - ", ok ? "ok" : "not ok");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (ok)
		itest_passed++;
	else
		itest_failed++;
}

/* Prints the closing "N passed, N failed" line; returns the exit status (1 on any failure). */
static inline int itest_report(void)
{
	printf("%u passed, %u failed\n", itest_passed, itest_failed);
	return itest_failed ? 1 : 0;
}

/* ---- options ------------------------------------------------------------- */

/* The options every program shares, filled by itest_option(). */
struct itest_args {
	struct sockaddr_in router;
	bool have_router;
	uint32_t cgw, agw; /* customer and agent gateway ids */
};

#define ITEST_OPT_ROUTER                                                                           \
	{                                                                                          \
		"router", required_argument, NULL, 'r'                                             \
	}
#define ITEST_OPT_CUSTOMER_GW                                                                      \
	{                                                                                          \
		"customer-gw", required_argument, NULL, 'c'                                        \
	}
#define ITEST_OPT_AGENT_GW                                                                         \
	{                                                                                          \
		"agent-gw", required_argument, NULL, 'a'                                           \
	}

/*
 * Takes one getopt result if it is a shared option: 'r' (--router
 * IP[:PORT], default port GW_DEFAULT_PORT), 'c' (--customer-gw ID) or 'a'
 * (--agent-gw ID). Returns 1 when taken, 0 when opt is none of them,
 * -EINVAL on an unparsable router address.
 */
static inline int itest_option(int opt, const char *arg, struct itest_args *a)
{
	switch (opt) {
	case 'r':
		a->have_router = gw_parse_addr(arg, GW_DEFAULT_PORT, &a->router) == 0;
		return a->have_router ? 1 : -EINVAL;
	case 'c':
		a->cgw = (uint32_t)strtoul(arg, NULL, 10);
		return 1;
	case 'a':
		a->agw = (uint32_t)strtoul(arg, NULL, 10);
		return 1;
	default:
		return 0;
	}
}

/* A router was given and the two gateway ids are set and distinct. */
static inline bool itest_args_ok(const struct itest_args *a)
{
	return a->have_router && a->cgw != 0 && a->agw != 0 && a->cgw != a->agw;
}

/* ---- pumping and waiting ------------------------------------------------- */

/* Polls both gateways up to wait_ns, then flushes what the callbacks queued. */
static inline void itest_pump2(struct gw_client *a, struct gw_client *b, uint64_t wait_ns,
                               gw_envelope_fn *fn, void *ctx)
{
	struct gw_client *cs[2] = {a, b};

	gw_poll_set(cs, 2, wait_ns, fn, ctx);
	gw_flush(a);
	gw_flush(b);
}

/*
 * Calls pump(pump_ctx) until done(done_ctx), for at most ITEST_WAIT_NS.
 * Returns whether done() became true in time.
 */
static inline bool itest_wait(bool (*done)(void *done_ctx), void *done_ctx,
                              void (*pump)(void *pump_ctx), void *pump_ctx)
{
	uint64_t end = gw_now_ns() + ITEST_WAIT_NS;

	while (!done(done_ctx)) {
		if (gw_now_ns() >= end)
			return false;
		pump(pump_ctx);
	}
	return true;
}

/* Calls pump(ctx) for ms milliseconds, to catch anything late (duplicates, strays). */
static inline void itest_settle(unsigned ms, void (*pump)(void *ctx), void *ctx)
{
	uint64_t end = gw_now_ns() + (uint64_t)ms * 1000000u;

	while (gw_now_ns() < end)
		pump(ctx);
}

/* ---- requests ------------------------------------------------------------ */
/* Each queues one envelope on c (see gw_add) and returns what gw_add returned. */

/* AgentLogin with one skill at level 3. */
static inline int itest_login(struct gw_client *c, const char *agent, const char *skill,
                              uint32_t capacity)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__AgentLogin l = SURGE__V1__AGENT_LOGIN__INIT;
	Surge__V1__SkillLevel s = SURGE__V1__SKILL_LEVEL__INIT;
	Surge__V1__SkillLevel *skills[1] = {&s};

	s.skill = (char *)skill;
	s.level = 3;
	l.agent_id = (char *)agent;
	l.skills = skills;
	l.n_skills = 1;
	l.max_sessions = capacity;
	env.body_case = SURGE__V1__ENVELOPE__BODY_AGENT_LOGIN;
	env.agent_login = &l;
	return gw_add(c, &env);
}

static inline int itest_agent_state(struct gw_client *c, const char *agent,
                                    Surge__V1__AgentStateKind want)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__AgentState s = SURGE__V1__AGENT_STATE__INIT;

	s.agent_id = (char *)agent;
	s.state = want;
	env.body_case = SURGE__V1__ENVELOPE__BODY_AGENT_STATE;
	env.agent_state = &s;
	return gw_add(c, &env);
}

static inline int itest_open(struct gw_client *c, uint64_t ref, const char *customer,
                             const char *skill, Surge__V1__Channel channel, const char *question)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__SessionOpen o = SURGE__V1__SESSION_OPEN__INIT;

	o.open_ref = ref;
	o.customer_id = (char *)customer;
	o.skill = (char *)skill;
	o.channel = channel;
	o.question = (char *)question;
	env.body_case = SURGE__V1__ENVELOPE__BODY_SESSION_OPEN;
	env.session_open = &o;
	return gw_add(c, &env);
}

static inline int itest_customer_says(struct gw_client *c, uint64_t session, uint64_t msg_id,
                                      const char *text)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__CustomerMessage m = SURGE__V1__CUSTOMER_MESSAGE__INIT;

	m.session_id = session;
	m.msg_id = msg_id;
	m.text = (char *)text;
	env.body_case = SURGE__V1__ENVELOPE__BODY_CUSTOMER_MESSAGE;
	env.customer_message = &m;
	return gw_add(c, &env);
}

static inline int itest_agent_says(struct gw_client *c, uint64_t session, const char *agent,
                                   uint64_t msg_id, const char *text, bool hold)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__AgentMessage m = SURGE__V1__AGENT_MESSAGE__INIT;

	m.session_id = session;
	m.agent_id = (char *)agent;
	m.msg_id = msg_id;
	m.text = (char *)text;
	m.hold = hold;
	env.body_case = SURGE__V1__ENVELOPE__BODY_AGENT_MESSAGE;
	env.agent_message = &m;
	return gw_add(c, &env);
}

static inline int itest_end(struct gw_client *c, uint64_t session, Surge__V1__Rating rating)
{
	Surge__V1__Envelope env = SURGE__V1__ENVELOPE__INIT;
	Surge__V1__SessionEnd e = SURGE__V1__SESSION_END__INIT;

	e.session_id = session;
	e.rating = rating;
	env.body_case = SURGE__V1__ENVELOPE__BODY_SESSION_END;
	env.session_end = &e;
	return gw_add(c, &env);
}

#endif /* SURGE_ITEST_H */
