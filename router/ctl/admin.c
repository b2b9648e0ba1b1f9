/* SPDX-License-Identifier: MIT */
/*
 * The admin endpoint: HTTP on 127.0.0.1:admin.port (libmicrohttpd, its own
 * thread). The worker lcore owns every piece of state, so the HTTP thread
 * never reads it: it posts one command in a mailbox and sleeps until the
 * worker, which looks at the mailbox on its 1 ms tick, has answered. The
 * worker never waits on the HTTP thread and takes no lock: one atomic load
 * per tick when nobody asks.
 *
 *   GET  /metrics                   every counter, Prometheus text
 *   GET  /healthz                   200 "ok", or 503 and why (store failed,
 *                                   worker not answering)
 *   POST /api/v1/erase?customer=ID  erase a customer's data (docs/store.md)
 *
 * Mailbox states: IDLE -> POSTED (HTTP thread) -> TAKEN (worker; an erasure
 * waits there for its tombstone to be durable) -> DONE (worker) -> IDLE
 * (HTTP thread, after taking the answer). A command the worker has not
 * taken within ADMIN_TAKE_MS is withdrawn (POSTED -> IDLE by CAS) and
 * answered 503; once taken it is always finished by the worker, and an
 * answer nobody waited for any more is dropped by the next request.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "router_pvt.h"

#define ADMIN_TAKE_MS  2000u  /* the worker ticks every 1 ms: this long means it is stuck */
#define ADMIN_DONE_MS  30000u /* an erasure's tombstone durable: a sync, seconds at worst */
#define ADMIN_CONN_MAX 16u

enum admin_state { ADM_IDLE, ADM_POSTED, ADM_TAKEN, ADM_DONE };
enum admin_op { OP_METRICS = 1, OP_HEALTH, OP_ERASE };

struct rt_admin {
	struct MHD_Daemon *mhd;
	_Atomic int state;
	_Atomic bool stopping; /* the worker ticks no more: answer at once */
	/* The command: written by the HTTP thread before POSTED. */
	enum admin_op op;
	char customer[DISP_NAME_MAX];
	/* The answer: written by the worker before DONE. */
	unsigned status;
	char *body; /* malloc'd, handed to the HTTP thread */
	size_t body_len;
	uint64_t ticket; /* TAKEN erasure: done when this ticket is durable */
};

static char *dup_text(const char *s, size_t *len)
{
	char *p = strdup(s);

	*len = p ? strlen(p) : 0;
	return p;
}

/* Answer: the status and, formatted, the body. */
__attribute__((format(printf, 3, 4))) static void answer(struct rt_admin *a, unsigned status,
                                                         const char *fmt, ...)
{
	char *body = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above */
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	a->status = status;
	a->body = n >= 0 ? body : NULL;
	a->body_len = n >= 0 ? (size_t)n : 0;
	/* R: pairs with the HTTP thread's acquire load of DONE. */
	atomic_store_explicit(&a->state, ADM_DONE, memory_order_release);
}

static void serve_metrics(struct rt_admin *a, const struct rt_router *rt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f) {
		answer(a, 500, "{\"error\": \"out of memory\"}\n");
		return;
	}
	rt_dump_stats(rt, f);
	if (fclose(f) != 0) {
		free(buf);
		answer(a, 500, "{\"error\": \"out of memory\"}\n");
		return;
	}
	a->status = 200;
	a->body = buf;
	a->body_len = len;
	atomic_store_explicit(&a->state, ADM_DONE, memory_order_release);
}

static void serve_erase(struct rt_admin *a, struct rt_router *rt)
{
	struct disp_str id = {a->customer, (uint32_t)strlen(a->customer)};
	uint32_t open;
	int rc;

	if (!rt->store) {
		answer(a, 409, "{\"error\": \"no session store configured: nothing is kept\"}\n");
		return;
	}
	if (rt->store_failed) {
		answer(a, 503,
		       "{\"error\": \"the session store failed: nothing can be written\"}\n");
		return;
	}
	/*
	 * An open session would go on writing the customer's messages after the
	 * tombstone, and a checkpoint keeps open sessions whole: erase once it
	 * has ended.
	 */
	open = disp_customer_sessions(rt->disp, id);
	if (open) {
		answer(a, 409,
		       "{\"error\": \"the customer has %u open session(s): erase after they "
		       "end\"}\n",
		       open);
		return;
	}
	rc = rt_store_erase_live(rt, a->customer, &a->ticket);
	if (rc < 0) {
		answer(a, 503, "{\"error\": \"the tombstone was not appended: %s\"}\n",
		       strerror(-rc));
		return;
	}
	atomic_store_explicit(&a->state, ADM_TAKEN, memory_order_relaxed);
}

void rt_admin_serve(struct rt_router *rt)
{
	struct rt_admin *a = rt->admin;
	int st;

	if (!a)
		return;
	/* A: pairs with the HTTP thread's release store of POSTED. */
	st = atomic_load_explicit(&a->state, memory_order_acquire);
	if (st == ADM_TAKEN) {
		if (rt->store_durable >= a->ticket) {
			rt->admin_erasures++;
			answer(a, 200,
			       "{\"erased\": true, \"note\": \"gone from memory now; the log's "
			       "records "
			       "are scrubbed after the next checkpoint\"}\n");
		} else if (rt->store_failed) {
			answer(a, 503,
			       "{\"error\": \"the session store failed before the tombstone was "
			       "durable\"}\n");
		}
		return;
	}
	if (st != ADM_POSTED ||
	    !atomic_compare_exchange_strong_explicit(&a->state, &st, ADM_TAKEN,
	                                             memory_order_acquire, memory_order_relaxed))
		return;
	switch (a->op) {
	case OP_METRICS:
		serve_metrics(a, rt);
		break;
	case OP_HEALTH:
		if (rt->store_failed)
			answer(a, 503, "store failed: nothing is acknowledged\n");
		else
			answer(a, 200, "ok\n");
		break;
	case OP_ERASE:
		serve_erase(a, rt);
		break;
	}
}

/* ---- the HTTP thread ---------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};

	nanosleep(&ts, NULL);
}

/*
 * Post a command and wait for the worker's answer into *status, *body
 * (malloc'd or NULL: out of memory), *len.
 */
static void ask_worker(struct rt_admin *a, unsigned *status, char **body, size_t *len)
{
	unsigned waited = 0;
	int st = ADM_POSTED;

	/* R: pairs with the worker's acquire load. */
	atomic_store_explicit(&a->state, ADM_POSTED, memory_order_release);
	for (;;) {
		bool stopping = atomic_load_explicit(&a->stopping, memory_order_relaxed);

		sleep_ms(1);
		waited++;
		st = atomic_load_explicit(&a->state, memory_order_acquire);
		if (st == ADM_DONE)
			break;
		if (st == ADM_POSTED && (waited >= ADMIN_TAKE_MS || stopping) &&
		    atomic_compare_exchange_strong_explicit(
		            &a->state, &st, ADM_IDLE, memory_order_relaxed, memory_order_relaxed)) {
			*status = 503;
			*body = dup_text("router worker not answering\n", len);
			return;
		}
		if (st == ADM_TAKEN && (waited >= ADMIN_TAKE_MS + ADMIN_DONE_MS || stopping)) {
			/*
			 * Still the worker's: it will set DONE, and the next request
			 * takes that answer away (take_stale) before posting.
			 */
			*status = 504;
			*body = dup_text("{\"error\": \"no answer in time; the erasure may still "
			                 "complete\"}\n",
			                 len);
			return;
		}
	}
	*status = a->status;
	*body = a->body;
	*len = a->body_len;
	atomic_store_explicit(&a->state, ADM_IDLE, memory_order_relaxed);
}

/* An answer the worker gave after its asker gave up: dropped, the mailbox free again. */
static bool mailbox_free(struct rt_admin *a)
{
	int st = atomic_load_explicit(&a->state, memory_order_acquire);

	if (st == ADM_DONE) {
		free(a->body);
		atomic_store_explicit(&a->state, ADM_IDLE, memory_order_relaxed);
		return true;
	}
	return st == ADM_IDLE;
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                               const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!body)
		return MHD_NO; /* out of memory: drop the connection */
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	size_t len;
	char *body = dup_text(text, &len);

	return respond(c, status, body, len, "application/json");
}

/* A customer id as the wire takes it: 1..63 bytes, no control characters. */
static bool customer_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n >= DISP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
			return false;
	return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	static int started;
	struct rt_admin *a = cls;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	unsigned status;
	char *body;
	size_t len;

	(void)version;
	(void)upload_data;
	if (!*con_cls) {
		/* First call: headers only. Answer on the next one. */
		*con_cls = &started;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0; /* no command takes a body: ignore it */
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0) {
		if (!get)
			return respond_text(c, 405, "{\"error\": \"GET only\"}\n");
		if (!mailbox_free(a))
			return respond_text(c, 503,
			                    "{\"error\": \"an earlier command is running\"}\n");
		a->op = url[1] == 'm' ? OP_METRICS : OP_HEALTH;
		ask_worker(a, &status, &body, &len);
		return respond(c, status, body, len,
		               url[1] == 'm' ? "text/plain; version=0.0.4" : "text/plain");
	}
	if (strcmp(url, "/api/v1/erase") == 0) {
		const char *id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "customer");

		if (!post)
			return respond_text(c, 405, "{\"error\": \"POST only\"}\n");
		if (!customer_ok(id))
			return respond_text(c, 400,
			                    "{\"error\": \"customer: 1 to 63 bytes, no control "
			                    "characters\"}\n");
		if (!mailbox_free(a))
			return respond_text(c, 503,
			                    "{\"error\": \"an earlier command is running\"}\n");
		a->op = OP_ERASE;
		snprintf(a->customer, sizeof(a->customer), "%s", id);
		ask_worker(a, &status, &body, &len);
		return respond(c, status, body, len, "application/json");
	}
	return respond_text(c, 404, "{\"error\": \"no such endpoint\"}\n");
}

int rt_admin_start(struct rt_router *rt, uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct rt_admin *a;

	if (!port)
		return 0;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	/* One internal thread: connections are served one at a time, as the mailbox is. */
	a->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, port, NULL,
	                          NULL, on_request, a, MHD_OPTION_SOCK_ADDR, &sin,
	                          MHD_OPTION_CONNECTION_LIMIT, ADMIN_CONN_MAX,
	                          MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (!a->mhd) {
		free(a);
		return -EADDRINUSE;
	}
	rt->admin = a;
	return 0;
}

void rt_admin_stop(struct rt_router *rt)
{
	struct rt_admin *a = rt->admin;

	if (!a)
		return;
	atomic_store_explicit(&a->stopping, true, memory_order_relaxed);
	MHD_stop_daemon(a->mhd);
	mailbox_free(a);
	free(a);
	rt->admin = NULL;
}
