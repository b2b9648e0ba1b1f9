/* SPDX-License-Identifier: MIT */
/*
 * A login when memory runs out. A least-loaded skill's queue entries are
 * reserved at login, so that no later request allocates; when that reserve
 * cannot grow, the login is refused OVERLOADED ("out of memory for
 * agents") and nothing else changes: the agent takes no session, the
 * engine's invariants hold, and the same login succeeds once memory is
 * back. aligned_alloc (what the reserve grows with) is replaced here so
 * that it fails on demand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

#define GW_AGENTS 7
#define GW_WEB    1
#define AGENTS    4096u

static bool fail_aligned;      /* aligned_alloc fails while set */
static unsigned aligned_fails; /* calls it failed */

/* The process's aligned_alloc: the engine's included. */
void *aligned_alloc(size_t align, size_t size)
{
	void *p = NULL;

	if (fail_aligned) {
		aligned_fails++;
		errno = ENOMEM;
		return NULL;
	}
	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	return p;
}

static unsigned overloaded, assigned;
static char detail[128];

static void on_emit(void *ctx, const struct disp_out *o)
{
	(void)ctx;
	if (o->kind == DISP_OUT_ERROR && o->error == DISP_ERR_OVERLOADED) {
		size_t n = o->detail.len < sizeof(detail) - 1 ? o->detail.len : sizeof(detail) - 1;

		overloaded++;
		memcpy(detail, o->detail.ptr, n);
		detail[n] = '\0';
	}
	if (o->kind == DISP_OUT_ASSIGNED && o->to_agent)
		assigned++;
}

static int login(struct disp_engine *e, uint32_t i, uint64_t now)
{
	char id[16];
	struct disp_skill_level lv[1] = {{.skill = {"chat", 4}, .level = 3}};
	struct disp_login req = {.skills = lv, .nb_skills = 1, .max_sessions = 4};

	snprintf(id, sizeof(id), "a%u", i);
	req.agent_id = (struct disp_str){id, (uint32_t)strlen(id)};
	return disp_agent_login(e, GW_AGENTS, &req, now);
}

static void test_login_refused_when_the_reserve_cannot_grow(void **state)
{
	struct disp_skill_conf skill = {.name = "chat"};
	struct disp_conf conf = {.skills = &skill,
	                         .nb_skills = 1,
	                         .max_agents = AGENTS,
	                         .max_sessions = 1024,
	                         .emit = on_emit};
	struct disp_open open = {
	        .open_ref = 1, .customer_id = {"c1", 2}, .skill = {"chat", 4}, .channel = 1};
	struct disp_engine *e = disp_create(&conf);
	struct disp_stats before, after;
	uint32_t i;
	int rc = 0;

	(void)state;
	assert_non_null(e);
	assert_int_equal(login(e, 0, 1000), 0);
	/* Log more agents in until one needs the reserve to grow, with memory gone. */
	fail_aligned = true;
	for (i = 1; i < AGENTS && rc == 0; i++) {
		disp_stats_get(e, &before);
		rc = login(e, i, 1000);
	}
	fail_aligned = false;
	assert_int_equal(rc, -EBUSY);
	assert_true(aligned_fails > 0);
	assert_int_equal(overloaded, 1);
	assert_string_equal(detail, "out of memory for agents");
	i--;
	disp_stats_get(e, &after);
	assert_int_equal(after.agents_ready, before.agents_ready);
	assert_int_equal(disp_check_invariants(e), 0);

	/* The refused agent takes nothing: the session goes to one logged in. */
	assert_int_equal(disp_session_open(e, GW_WEB, &open, 1100), 0);
	assert_int_equal(assigned, 1);
	assert_int_equal(disp_check_invariants(e), 0);

	/* Memory back: the same login goes through. */
	assert_int_equal(login(e, i, 1200), 0);
	disp_stats_get(e, &after);
	assert_int_equal(after.agents_ready, before.agents_ready + 1);
	assert_int_equal(overloaded, 1);
	assert_int_equal(disp_check_invariants(e), 0);
	disp_destroy(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_login_refused_when_the_reserve_cannot_grow),
	};

	return cmocka_run_group_tests_name("dispatch_oom", tests, NULL, NULL);
}
