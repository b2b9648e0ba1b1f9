/* SPDX-License-Identifier: MIT */
/*
 * ctl configuration: the router's YAML file, read with libyaml.
 *
 * One table per kind of mapping (the sections of the file, a gateway, a key
 * of a gateway, a skill group) drives the defaults, the parsing of every
 * scalar, range checks and --help, as Redis's standardConfig table does;
 * tests/unit/test_config.c checks that docs/configuration.md names every key
 * of the tables. Only what a table cannot say is written by hand: the lists
 * (dpdk.eal, gateways, skills, keys, hours.days, overflow), the times of day
 * and rules that span entries (overflow targets, checked once every skill
 * group is read).
 *
 * The text is read twice. A first pass over libyaml's events reports syntax
 * errors and refuses anchors and aliases: a value reachable from two places
 * would make "file:line: key" ambiguous, and refusing them costs nothing.
 * The second pass loads the node tree, whose marks give the line numbers.
 *
 * The first error ends the parse; cfg is written only when the whole file is
 * valid.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "ctl.h"

#define CFG_PATH_MAX  192        /* "gateways[255].keys[1].hex" and the like */
#define CFG_FILE_MAX  (1u << 20) /* a configuration larger than this is a mistake */
#define CFG_ECHO_MAX  40         /* bytes of a bad value quoted back in a message */
#define CFG_REQUIRED  1u         /* cfg_key.flags: the key must be given */
#define CFG_MS_MIN    100u       /* shortest timer where 0 is not "off" */
#define CFG_MS_MAX    86400000u  /* longest timer: a day */
#define CFG_EVERY_DAY 0x7fu      /* disp_hours.days: bit 0 Sunday .. bit 6 Saturday */

/* ---- tables -------------------------------------------------------------- */

struct cfg_ctx;
struct cfg_key;

/* Parses a CFG_CUSTOM value, or checks a value once set; 0 or -EINVAL (message set). */
typedef int cfg_hook_fn(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                        const char *path, void *base);

enum cfg_type {
	CFG_UINT,   /* unsigned decimal integer, field of k->size bytes */
	CFG_MS,     /* the same, in milliseconds */
	CFG_BOOL,   /* true / false / yes / no */
	CFG_IPV4,   /* dotted quad, stored as uint32_t in network order */
	CFG_ENUM,   /* one of k->enums, stored as int */
	CFG_STRING, /* char[k->size], length k->min..k->max */
	CFG_CUSTOM, /* k->parse does the work */
};

struct cfg_enum_val {
	const char *name;
	int value;
};

struct cfg_key {
	const char *section; /* "router"…, or the list of an entry: "gateways[]" */
	const char *name;    /* the key inside it */
	enum cfg_type type;
	unsigned int flags;               /* CFG_REQUIRED */
	size_t offset;                    /* of the field in the section's struct */
	size_t size;                      /* of the field */
	uint64_t def;                     /* numeric default */
	const char *def_str;              /* string default, or how a custom default reads */
	uint64_t min, max;                /* range of a number, or of a string's length */
	const struct cfg_enum_val *enums; /* CFG_ENUM: its names, NULL-terminated */
	const char *type_name;            /* CFG_CUSTOM: its type for --help */
	cfg_hook_fn *parse;               /* CFG_CUSTOM: reads the value */
	cfg_hook_fn *check;               /* extra rule on the value once set, or NULL */
	const char *help;                 /* one line for --help and the docs */
};

#define FIELD(st, f) .offset = offsetof(st, f), .size = sizeof(((st *)0)->f)

#define CFG_NUM(sec, key, ty, st, f, d, lo, hi, h)                                                 \
	{                                                                                          \
		.section = sec, .name = key, .type = ty, FIELD(st, f), .def = d, .min = lo,        \
		.max = hi, .help = h                                                               \
	}

/* A gateway's key as written in the file, before it lands in wire_gateway_conf. */
struct cfg_key_entry {
	uint32_t id;
	uint8_t key[32];
};

static cfg_hook_fn cfg_check_unicast, cfg_parse_eal, cfg_check_gw_id, cfg_parse_allow,
        cfg_parse_keys, cfg_parse_hex, cfg_check_ms_or_off, cfg_parse_hours, cfg_parse_hhmm,
        cfg_parse_days, cfg_parse_utc_offset, cfg_parse_overflow, cfg_parse_policy,
        cfg_parse_store_key;

static const struct cfg_enum_val cfg_log_levels[] = {
        {"error", 0}, {"warning", 1}, {"info", 2}, {"debug", 3}, {NULL, 0},
};

static const struct cfg_enum_val cfg_roles[] = {
        {"customer", WIRE_ROLE_CUSTOMER},
        {"agent", WIRE_ROLE_AGENT},
        {"both", WIRE_ROLE_BOTH},
        {NULL, 0},
};

static const struct cfg_enum_val cfg_strategies[] = {
        {"least-loaded", DISP_STRATEGY_LEAST_LOADED},
        {"longest-idle", DISP_STRATEGY_LONGEST_IDLE},
        {"round-robin", DISP_STRATEGY_ROUND_ROBIN},
        {"best-skill", DISP_STRATEGY_BEST_SKILL},
        {"fewest-today", DISP_STRATEGY_FEWEST_TODAY},
        {"random", DISP_STRATEGY_RANDOM},
        {NULL, 0},
};

_Static_assert(sizeof(enum wire_role) == sizeof(int), "CFG_ENUM stores an int");
_Static_assert(sizeof(enum disp_strategy) == sizeof(int), "CFG_ENUM stores an int");
_Static_assert(DISP_STRATEGY_MAX == 6, "a strategy without a name in cfg_strategies");

/* Sections of struct ctl_config, in the order --help prints them. */
static const char *const cfg_sections[] = {"router", "dpdk",  "limits", "timers",
                                           "log",    "store", "admin"};
#define CFG_NB_SECTIONS (sizeof(cfg_sections) / sizeof(cfg_sections[0]))

#define CC struct ctl_config
static const struct cfg_key cfg_keys[] = {
        {.section = "router",
         .name = "address",
         .type = CFG_IPV4,
         FIELD(CC, ip),
         .check = cfg_check_unicast,
         .flags = CFG_REQUIRED,
         .help = "the router's IPv4 address on its DPDK port"},
        CFG_NUM("router", "port", CFG_UINT, CC, udp_port, 7700, 1, 65535,
                "UDP port the gateways send to"),
        CFG_NUM("router", "mtu", CFG_UINT, CC, mtu, 1500, 576, 9000, "IP MTU of the port"),

        {.section = "dpdk",
         .name = "eal",
         .type = CFG_CUSTOM,
         FIELD(CC, eal_args),
         .type_name = "strings",
         .def_str = "[]",
         .parse = cfg_parse_eal,
         .help = "EAL arguments; those after -- on the command line are appended"},
        CFG_NUM("dpdk", "port_id", CFG_UINT, CC, port_id, 0, 0, 1023, "DPDK port to serve on"),
        CFG_NUM("dpdk", "mbufs", CFG_UINT, CC, nb_mbufs, 8191, 511, 16777215,
                "mbufs in the packet pool"),
        CFG_NUM("dpdk", "rx_desc", CFG_UINT, CC, rx_desc, 1024, 64, 16384,
                "receive descriptors of the port's queue"),
        CFG_NUM("dpdk", "tx_desc", CFG_UINT, CC, tx_desc, 1024, 64, 16384,
                "transmit descriptors of the port's queue"),

        CFG_NUM("limits", "max_agents", CFG_UINT, CC, max_agents, 1024, 1, 1048576,
                "agents known at once"),
        CFG_NUM("limits", "max_sessions", CFG_UINT, CC, max_sessions, 65536, 1, 16777216,
                "open sessions (queued or assigned) at once"),
        CFG_NUM("limits", "backlog_max", CFG_UINT, CC, backlog_max, 64, 1, 4096,
                "messages held per open session"),
        /* dispatch takes the pool in bytes as a uint32_t */
        CFG_NUM("limits", "text_pool_mb", CFG_UINT, CC, text_pool_mb, 64, 1, 4095,
                "MiB for held text (questions, transcripts, backlog)"),
        CFG_NUM("limits", "agent_text_max", CFG_UINT, CC, agent_text_max, 200, 1, 65535,
                "code points of an agent message"),
        CFG_NUM("limits", "customer_text_max", CFG_UINT, CC, customer_text_max, 2000, 1, 65535,
                "code points of a customer message"),
        CFG_NUM("limits", "envelopes_per_frame", CFG_UINT, CC, envelopes_per_frame,
                WIRE_MAX_ENVELOPES, 1, WIRE_MAX_ENVELOPES, "envelopes accepted in one frame"),

        CFG_NUM("timers", "heartbeat_timeout_ms", CFG_MS, CC, heartbeat_timeout_ms, 30000, 100,
                86400000, "an agent silent this long is disconnected"),
        CFG_NUM("timers", "gateway_timeout_ms", CFG_MS, CC, gateway_timeout_ms, 30000, 100,
                86400000, "a gateway silent this long is down"),
        CFG_NUM("timers", "stats_interval_ms", CFG_MS, CC, stats_interval_ms, 0, 0, 86400000,
                "counters to the log this often; 0 = never"),

        CFG_NUM("admin", "port", CFG_UINT, CC, admin_port, 0, 0, 65535,
                "HTTP admin endpoint on 127.0.0.1 (metrics, health, erasure); 0 = none"),

        {.section = "log",
         .name = "level",
         .type = CFG_ENUM,
         FIELD(CC, log_level),
         .def = 2,
         .enums = cfg_log_levels,
         .help = "messages of this level and above are logged"},

        {.section = "store",
         .name = "dir",
         .type = CFG_STRING,
         FIELD(CC, store_dir),
         .def_str = "/var/lib/surge",
         .min = 0,
         .max = sizeof(((CC *)0)->store_dir) - 1,
         .help = "data directory of the session store; \"\" runs without a store (acks then "
                 "mean processed, not durable)"},
        {.section = "store",
         .name = "durability",
         .type = CFG_CUSTOM,
         FIELD(CC, store_policy),
         .type_name = "policy",
         .def_str = "sync",
         .parse = cfg_parse_policy,
         .help = "when a frame is acknowledged: sync (after fdatasync), interval:<ms> (after "
                 "the write; fdatasync every <ms>), none (benchmarks only)"},
        CFG_NUM("store", "commit_delay_us", CFG_UINT, CC, store_commit_delay_us, 1000, 0, 10000,
                "sync: after a batch is durable, hold the next one while it is smaller, up to "
                "this many us: fewer fdatasyncs under load, and writers answering their acks "
                "share one"),
        CFG_NUM("store", "segment_mb", CFG_UINT, CC, store_segment_mb, 64, 1, 4096,
                "size of a log segment file, MiB"),
        CFG_NUM("store", "checkpoint_mb", CFG_UINT, CC, store_checkpoint_mb, 256, 1, 1048576,
                "checkpoint the live state after this much log, MiB"),
        CFG_NUM("store", "retention_days", CFG_UINT, CC, store_retention_days, 7, 0, 3650,
                "keep checkpointed segments (transcripts) this many days"),
        CFG_NUM("store", "ring_mb", CFG_UINT, CC, store_ring_mb, 16, 1, 1024,
                "records waiting for the store thread, per worker, MiB (rounded up to a "
                "power of 2)"),
        CFG_NUM("store", "history_customers", CFG_UINT, CC, store_history_customers, 1000000, 1,
                100000000, "customers whose last 3 consultations are held in memory"),
        {.section = "store",
         .name = "key_hex",
         .type = CFG_CUSTOM,
         FIELD(CC, store_key),
         .type_name = "hex",
         .def_str = "none",
         .parse = cfg_parse_store_key,
         .help = "encrypt records at rest (AES-256-GCM) with this 256-bit key, 64 hex digits"},
};
#undef CC

#define GW struct wire_gateway_conf
static const struct cfg_key cfg_gw_keys[] = {
        {.section = "gateways[]",
         .name = "id",
         .type = CFG_UINT,
         FIELD(GW, id),
         .min = 0,
         .max = UINT32_MAX,
         .check = cfg_check_gw_id,
         .flags = CFG_REQUIRED,
         .help = "Packet.gateway_id of the gateway; 0 is reserved"},
        {.section = "gateways[]",
         .name = "name",
         .type = CFG_STRING,
         FIELD(GW, name),
         .min = 1,
         .max = sizeof(((GW *)0)->name) - 1,
         .flags = CFG_REQUIRED,
         .help = "name in logs and metrics"},
        {.section = "gateways[]",
         .name = "role",
         .type = CFG_ENUM,
         FIELD(GW, role),
         .enums = cfg_roles,
         .flags = CFG_REQUIRED,
         .help = "which envelopes it may send"},
        {.section = "gateways[]",
         .name = "plaintext",
         .type = CFG_BOOL,
         FIELD(GW, plaintext),
         .def = 0,
         .help = "accepts unencrypted frames; if false a key is needed"},
        {.section = "gateways[]",
         .name = "allow",
         .type = CFG_CUSTOM,
         FIELD(GW, allow_net),
         .type_name = "ipv4/len",
         .def_str = "any",
         .parse = cfg_parse_allow,
         .help = "source network allowed to speak as this gateway"},
        {.section = "gateways[]",
         .name = "keys",
         .type = CFG_CUSTOM,
         FIELD(GW, key),
         .type_name = "list",
         .def_str = "[]",
         .parse = cfg_parse_keys,
         .help = "AES-256-GCM keys, {id, hex} each"},
};
#undef GW

#define KE struct cfg_key_entry
static const struct cfg_key cfg_gw_key_keys[] = {
        {.section = "gateways[].keys[]",
         .name = "id",
         .type = CFG_UINT,
         FIELD(KE, id),
         .min = 0,
         .max = 1,
         .flags = CFG_REQUIRED,
         .help = "Packet.key_id that selects this key"},
        {.section = "gateways[].keys[]",
         .name = "hex",
         .type = CFG_CUSTOM,
         FIELD(KE, key),
         .type_name = "hex",
         .def_str = "required",
         .parse = cfg_parse_hex,
         .flags = CFG_REQUIRED,
         .help = "the 256-bit key as exactly 64 hex digits"},
};
#undef KE

#define SK struct disp_skill_conf
static const struct cfg_key cfg_skill_keys[] = {
        {.section = "skills[]",
         .name = "name",
         .type = CFG_STRING,
         FIELD(SK, name),
         .min = 1,
         .max = DISP_NAME_MAX - 1,
         .flags = CFG_REQUIRED,
         .help = "skill group named by SessionOpen.skill"},
        {.section = "skills[]",
         .name = "tenant",
         .type = CFG_STRING,
         FIELD(SK, tenant),
         .def_str = "",
         .min = 0,
         .max = DISP_NAME_MAX - 1,
         .help = "shop or business line owning it; empty = platform"},
        CFG_NUM("skills[]", "queue_capacity", CFG_UINT, SK, queue_capacity, 1000, 1, 1000000,
                "waiting sessions before customers get Busy"),
        CFG_NUM("skills[]", "sla_answer_ms", CFG_MS, SK, sla_answer_ms, 60000, 1, 86400000,
                "service-level target: answered within"),
        {.section = "skills[]",
         .name = "strategy",
         .type = CFG_ENUM,
         FIELD(SK, strategy),
         .def = DISP_STRATEGY_LEAST_LOADED,
         .enums = cfg_strategies,
         .help = "how an agent is picked among the eligible"},
        CFG_NUM("skills[]", "wrap_up_ms", CFG_MS, SK, wrap_up_ms, 0, 0, CFG_MS_MAX,
                "slot stays busy after a close until notes or this"),
        /* 0 would read as the engine's default (20), not as "no breaks" */
        CFG_NUM("skills[]", "break_cap_pct", CFG_UINT, SK, break_cap_pct, 20, 1, 100,
                "on break + break pending <= this % of online agents"),
        CFG_NUM("skills[]", "break_max_ms", CFG_MS, SK, break_max_ms, 1200000, CFG_MS_MIN,
                CFG_MS_MAX, "BREAK_OVERRUN alert after a break this long"),
        CFG_NUM("skills[]", "first_response_ms", CFG_MS, SK, first_response_ms, 60000, CFG_MS_MIN,
                CFG_MS_MAX, "FIRST_RESPONSE alert: no agent reply after assignment"),
        CFG_NUM("skills[]", "reply_overdue_ms", CFG_MS, SK, reply_overdue_ms, 60000, CFG_MS_MIN,
                CFG_MS_MAX, "REPLY_OVERDUE alert: a customer message unanswered"),
        CFG_NUM("skills[]", "hold_max_ms", CFG_MS, SK, hold_max_ms, 180000, CFG_MS_MIN, CFG_MS_MAX,
                "HOLD_OVERDUE alert: a \"please wait\" lasting longer"),
        CFG_NUM("skills[]", "idle_alert_ms", CFG_MS, SK, idle_alert_ms, 900000, CFG_MS_MIN,
                CFG_MS_MAX, "IDLE_NO_INFLOW alert: READY with room, nothing assigned"),
        {.section = "skills[]",
         .name = "reroute_ms",
         .type = CFG_MS,
         FIELD(SK, reroute_ms),
         .def = 0,
         .min = 0,
         .max = CFG_MS_MAX,
         .check = cfg_check_ms_or_off,
         .help = "re-route when the first message is unanswered; 0 = off, else >= 100"},
        CFG_NUM("skills[]", "eta_step_ms", CFG_MS, SK, eta_step_ms, 10000, CFG_MS_MIN, CFG_MS_MAX,
                "SessionQueued again when the ETA moves more than this"),
        {.section = "skills[]",
         .name = "hours",
         .type = CFG_CUSTOM,
         FIELD(SK, hours),
         .type_name = "mapping",
         .def_str = "always",
         .parse = cfg_parse_hours,
         .help = "service hours {open, close, days, utc_offset}"},
        {.section = "skills[]",
         .name = "overflow",
         .type = CFG_CUSTOM,
         FIELD(SK, overflow),
         .type_name = "list",
         .def_str = "[]",
         .parse = cfg_parse_overflow,
         .help = "steps {after_ms, to} widening to other groups"},
};
#undef SK

#define HO struct disp_hours
static const struct cfg_key cfg_hours_keys[] = {
        {.section = "skills[].hours",
         .name = "open",
         .type = CFG_CUSTOM,
         FIELD(HO, open_min),
         .type_name = "HH:MM",
         .def_str = "00:00",
         .parse = cfg_parse_hhmm,
         .help = "local time the group opens"},
        {.section = "skills[].hours",
         .name = "close",
         .type = CFG_CUSTOM,
         FIELD(HO, close_min),
         .type_name = "HH:MM",
         .def_str = "00:00",
         .parse = cfg_parse_hhmm,
         .help = "local time it closes; = open: all day; < open: past midnight"},
        {.section = "skills[].hours",
         .name = "days",
         .type = CFG_CUSTOM,
         FIELD(HO, days),
         .def = CFG_EVERY_DAY,
         .type_name = "days",
         .def_str = "all",
         .parse = cfg_parse_days,
         .help = "weekdays it opens: sun, mon, tue, wed, thu, fri, sat"},
        {.section = "skills[].hours",
         .name = "utc_offset",
         .type = CFG_CUSTOM,
         FIELD(HO, utc_offset_min),
         .def = 480,
         .type_name = "+HH:MM",
         .def_str = "+08:00",
         .parse = cfg_parse_utc_offset,
         .help = "local time = UTC + this, within -14:00..+14:00"},
};
#undef HO

#define OV struct disp_overflow
static const struct cfg_key cfg_overflow_keys[] = {
        {.section = "skills[].overflow[]",
         .name = "after_ms",
         .type = CFG_MS,
         FIELD(OV, after_ms),
         .min = 0,
         .max = CFG_MS_MAX,
         .flags = CFG_REQUIRED,
         .help = "wait after which the step applies; increasing"},
        {.section = "skills[].overflow[]",
         .name = "to",
         .type = CFG_STRING,
         FIELD(OV, to_skill),
         .min = 1,
         .max = DISP_NAME_MAX - 1,
         .flags = CFG_REQUIRED,
         .help = "skill group whose agents may then serve too"},
};
#undef OV

#define NB(tab) (sizeof(tab) / sizeof((tab)[0]))
/* cfg_parse_map tracks the keys seen in a 64-bit mask. */
_Static_assert(NB(cfg_keys) <= 64 && NB(cfg_gw_keys) <= 64 && NB(cfg_skill_keys) <= 64 &&
                       NB(cfg_hours_keys) <= 64 && NB(cfg_overflow_keys) <= 64,
               "a table is too long for its seen-mask");

/* ---- errors -------------------------------------------------------------- */

struct cfg_ctx {
	const char *name;     /* of the file, for messages */
	yaml_document_t *doc; /* being walked */
	char *err;            /* the message of the first error */
	size_t errlen;
	struct ctl_config *cfg; /* being filled */
};

__attribute__((format(printf, 4, 0))) static int
cfg_vfail(struct cfg_ctx *c, size_t line, const char *path, const char *fmt, va_list ap)
{
	int n;

	if (!c->err || c->errlen == 0)
		return -EINVAL;
	if (path)
		n = snprintf(c->err, c->errlen, "%s:%zu: %s: ", c->name, line, path);
	else
		n = snprintf(c->err, c->errlen, "%s:%zu: ", c->name, line);
	if (n >= 0 && (size_t)n < c->errlen)
		/* clang-analyzer 14 loses track of va_start in the caller */
		// NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
		vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	return -EINVAL;
}

/* An error at a line; returns -EINVAL. */
__attribute__((format(printf, 4, 5))) static int
cfg_fail_line(struct cfg_ctx *c, size_t line, const char *path, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = cfg_vfail(c, line, path, fmt, ap);
	va_end(ap);
	return rc;
}

/* An error at a node (at line 1 without one); returns -EINVAL. */
__attribute__((format(printf, 4, 5))) static int cfg_fail(struct cfg_ctx *c, const yaml_node_t *at,
                                                          const char *path, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = cfg_vfail(c, at ? at->start_mark.line + 1 : 1, path, fmt, ap);
	va_end(ap);
	return rc;
}

/* A value fit to quote back: at most CFG_ECHO_MAX bytes, controls as '?'. */
static const char *cfg_echo(const char *s, size_t len, char *buf, size_t cap)
{
	size_t n = len < cap - 4 ? len : cap - 4;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	if (n < len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* ---- nodes --------------------------------------------------------------- */

static yaml_node_t *cfg_node(struct cfg_ctx *c, int index)
{
	return yaml_document_get_node(c->doc, index);
}

static const char *cfg_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

/* An empty value ("key:" alone), ~ or null: an absent list or section. */
static bool cfg_is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = (const char *)n->data.scalar.value;
	return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0;
}

/* The text of a scalar node; refuses other nodes and embedded NUL bytes. */
static int cfg_scalar(struct cfg_ctx *c, const yaml_node_t *n, const char *path,
                      const char *expected, const char **s, size_t *len)
{
	*s = "";
	*len = 0;
	if (n->type != YAML_SCALAR_NODE)
		return cfg_fail(c, n, path, "expected %s, not %s", expected, cfg_kind(n));
	*s = (const char *)n->data.scalar.value;
	*len = n->data.scalar.length;
	if (strlen(*s) != *len)
		return cfg_fail(c, n, path, "contains a nul byte");
	return 0;
}

/* The value of `key` in mapping `map`, or NULL. */
static yaml_node_t *cfg_map_get(struct cfg_ctx *c, const yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = cfg_node(c, p->key);

		if (k && k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, key) == 0)
			return cfg_node(c, p->value);
	}
	return NULL;
}

/* ---- scalars ------------------------------------------------------------- */

/* Decimal only, no sign and no leading zero (YAML 1.1 reads 010 as octal). */
static bool cfg_parse_dec(const char *s, size_t len, uint64_t *out, bool *overflow)
{
	uint64_t v = 0;

	*overflow = false;
	if (len == 0 || (len > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned int d = (unsigned int)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - d) / 10)
			*overflow = true;
		else
			v = v * 10 + d;
	}
	*out = v;
	return true;
}

static int cfg_uint(struct cfg_ctx *c, const struct cfg_key *k, const yaml_node_t *n,
                    const char *path, uint64_t *out)
{
	char echo[CFG_ECHO_MAX];
	const char *s;
	size_t len;
	bool overflow;
	int rc;

	rc = cfg_scalar(c, n, path, "an unsigned integer", &s, &len);
	if (rc)
		return rc;
	if (!cfg_parse_dec(s, len, out, &overflow))
		return cfg_fail(c, n, path, "expected an unsigned integer, got \"%s\"",
		                cfg_echo(s, len, echo, sizeof(echo)));
	if (overflow || *out < k->min || *out > k->max)
		return cfg_fail(c, n, path, "%s is out of range %llu..%llu",
		                cfg_echo(s, len, echo, sizeof(echo)), (unsigned long long)k->min,
		                (unsigned long long)k->max);
	return 0;
}

static void cfg_store_uint(void *field, size_t size, uint64_t v)
{
	switch (size) {
	case 1: {
		uint8_t x = (uint8_t)v;
		memcpy(field, &x, 1);
		break;
	}
	case 2: {
		uint16_t x = (uint16_t)v;
		memcpy(field, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;
		memcpy(field, &x, 4);
		break;
	}
	default:
		memcpy(field, &v, 8);
		break;
	}
}

static int cfg_bool(struct cfg_ctx *c, const yaml_node_t *n, const char *path, bool *out)
{
	char echo[CFG_ECHO_MAX];
	const char *s;
	size_t len;
	int rc;

	rc = cfg_scalar(c, n, path, "true or false", &s, &len);
	if (rc)
		return rc;
	if (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0)
		*out = true;
	else if (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0)
		*out = false;
	else
		return cfg_fail(c, n, path, "expected true or false, got \"%s\"",
		                cfg_echo(s, len, echo, sizeof(echo)));
	return 0;
}

static int cfg_ipv4(struct cfg_ctx *c, const yaml_node_t *n, const char *path, uint32_t *out)
{
	char echo[CFG_ECHO_MAX];
	const char *s;
	size_t len;
	int rc;

	rc = cfg_scalar(c, n, path, "an IPv4 address", &s, &len);
	if (rc)
		return rc;
	if (inet_pton(AF_INET, s, out) != 1)
		return cfg_fail(c, n, path, "expected an IPv4 address, got \"%s\"",
		                cfg_echo(s, len, echo, sizeof(echo)));
	return 0;
}

static int cfg_enum(struct cfg_ctx *c, const struct cfg_key *k, const yaml_node_t *n,
                    const char *path, int *out)
{
	char echo[CFG_ECHO_MAX], names[128];
	const struct cfg_enum_val *e;
	const char *s;
	size_t len, used = 0;
	int rc;

	rc = cfg_scalar(c, n, path, "a name", &s, &len);
	if (rc)
		return rc;
	for (e = k->enums; e->name; e++) {
		if (strcmp(s, e->name) == 0) {
			*out = e->value;
			return 0;
		}
	}
	names[0] = '\0';
	for (e = k->enums; e->name && used < sizeof(names); e++)
		used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
		                         e == k->enums ? "" : ", ", e->name);
	return cfg_fail(c, n, path, "expected one of %s, got \"%s\"", names,
	                cfg_echo(s, len, echo, sizeof(echo)));
}

/* A string into char[cap]; refuses control characters (names reach logs and metrics). */
static int cfg_string(struct cfg_ctx *c, const yaml_node_t *n, const char *path, size_t min,
                      size_t max, char *out, size_t cap)
{
	const char *s = "";
	size_t len = 0;
	int rc;

	if (!cfg_is_null(n)) {
		rc = cfg_scalar(c, n, path, "a string", &s, &len);
		if (rc)
			return rc;
	}
	if (len < min)
		return cfg_fail(c, n, path, "must not be empty");
	if (len > max || len >= cap)
		return cfg_fail(c, n, path, "too long: %zu bytes (at most %zu)", len,
		                max < cap ? max : cap - 1);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return cfg_fail(c, n, path, "contains a control character");
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

/* Set the field of `k` in `base` from node `val`. */
static int cfg_set(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val, const char *path,
                   void *base)
{
	void *field = (char *)base + k->offset;
	uint64_t u = 0;
	uint32_t ip = 0;
	bool b = false;
	int rc, e = 0;

	switch (k->type) {
	case CFG_UINT:
	case CFG_MS:
		rc = cfg_uint(c, k, val, path, &u);
		if (rc == 0)
			cfg_store_uint(field, k->size, u);
		break;
	case CFG_BOOL:
		rc = cfg_bool(c, val, path, &b);
		if (rc == 0)
			memcpy(field, &b, sizeof(b));
		break;
	case CFG_IPV4:
		rc = cfg_ipv4(c, val, path, &ip);
		if (rc == 0)
			memcpy(field, &ip, sizeof(ip));
		break;
	case CFG_ENUM:
		rc = cfg_enum(c, k, val, path, &e);
		if (rc == 0)
			memcpy(field, &e, sizeof(e));
		break;
	case CFG_STRING:
		rc = cfg_string(c, val, path, k->min, k->max, field, k->size);
		break;
	default:
		rc = k->parse(c, k, val, path, base);
		break;
	}
	if (rc == 0 && k->check)
		rc = k->check(c, k, val, path, base);
	return rc;
}

static void cfg_apply_defaults(const struct cfg_key *tab, size_t n, void *base)
{
	for (size_t i = 0; i < n; i++) {
		const struct cfg_key *k = &tab[i];
		void *field = (char *)base + k->offset;
		bool b = k->def != 0;
		int e = (int)k->def;

		switch (k->type) {
		case CFG_UINT:
		case CFG_MS:
		case CFG_IPV4:
			cfg_store_uint(field, k->size, k->def);
			break;
		case CFG_BOOL:
			memcpy(field, &b, sizeof(b));
			break;
		case CFG_ENUM:
			memcpy(field, &e, sizeof(e));
			break;
		case CFG_STRING:
			snprintf(field, k->size, "%s", k->def_str ? k->def_str : "");
			break;
		default:
			/* custom fields default to zero (the caller cleared them) or to a
			 * number that fits them */
			if (k->def && k->size <= sizeof(uint64_t))
				cfg_store_uint(field, k->size, k->def);
			break;
		}
	}
}

/* ---- mappings ------------------------------------------------------------ */

/* Edit distance of two short names, to suggest a key for a misspelt one. */
static size_t cfg_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* The closest of `names` to `word` if close enough to be a typo, else NULL. */
static const char *cfg_suggest(const char *word, const char *const *names, size_t n)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (size_t i = 0; i < n; i++) {
		size_t d = cfg_distance(word, names[i]);

		if (d < best_d && d < strlen(names[i])) {
			best = names[i];
			best_d = d;
		}
	}
	return best;
}

static int cfg_unknown(struct cfg_ctx *c, const yaml_node_t *at, const char *path, const char *what,
                       const char *word, const char *const *names, size_t n)
{
	const char *s = cfg_suggest(word, names, n);

	if (s)
		return cfg_fail(c, at, path, "unknown %s (did you mean %s?)", what, s);
	return cfg_fail(c, at, path, "unknown %s", what);
}

/* The text of a mapping key, which must be a plain string. */
static int cfg_key_name(struct cfg_ctx *c, const yaml_node_t *kn, const char *prefix,
                        const char **name)
{
	size_t len;

	*name = "";
	if (kn->type != YAML_SCALAR_NODE)
		return cfg_fail(c, kn, prefix, "a key must be a name, not %s", cfg_kind(kn));
	return cfg_scalar(c, kn, prefix, "a name", name, &len);
}

/* Build a key path into buf[CFG_PATH_MAX]; a cut one ends in "...". */
__attribute__((format(printf, 2, 3))) static void cfg_pathf(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, CFG_PATH_MAX, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	if (n >= CFG_PATH_MAX)
		memcpy(buf + CFG_PATH_MAX - 4, "...", 4);
}

static void cfg_path(char *buf, const char *prefix, const char *name)
{
	cfg_pathf(buf, "%s.%.64s", prefix, name);
}

/*
 * Parse mapping `map` with the keys of `tab` that belong to `section` into
 * `base`; `*seen` gets bit i for tab[i]. prefix names the mapping in messages.
 */
static int cfg_parse_map(struct cfg_ctx *c, yaml_node_t *map, const char *prefix,
                         const struct cfg_key *tab, size_t n, const char *section, void *base,
                         uint64_t *seen)
{
	const char *names[64];
	size_t nb_names = 0;
	yaml_node_pair_t *p;

	if (cfg_is_null(map))
		return 0;
	if (map->type != YAML_MAPPING_NODE)
		return cfg_fail(c, map, prefix, "expected a mapping of keys, not %s",
		                cfg_kind(map));
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = cfg_node(c, p->key), *vn = cfg_node(c, p->value);
		char path[CFG_PATH_MAX];
		const char *name;
		size_t i;
		int rc;

		if (!kn || !vn)
			return cfg_fail(c, map, prefix, "malformed mapping");
		rc = cfg_key_name(c, kn, prefix, &name);
		if (rc)
			return rc;
		cfg_path(path, prefix, name);
		for (i = 0; i < n; i++)
			if (strcmp(tab[i].section, section) == 0 && strcmp(tab[i].name, name) == 0)
				break;
		if (i == n) {
			for (size_t j = 0; j < n; j++)
				if (strcmp(tab[j].section, section) == 0)
					names[nb_names++] = tab[j].name;
			return cfg_unknown(c, kn, path, "key", name, names, nb_names);
		}
		if (*seen & (1ull << i))
			return cfg_fail(c, kn, path, "duplicate key");
		*seen |= 1ull << i;
		rc = cfg_set(c, &tab[i], vn, path, base);
		if (rc)
			return rc;
	}
	return 0;
}

/* Every required key of `section` must be in `seen`; reported at node `at`. */
static int cfg_check_required(struct cfg_ctx *c, const yaml_node_t *at, const char *prefix,
                              const struct cfg_key *tab, size_t n, const char *section,
                              uint64_t seen)
{
	char path[CFG_PATH_MAX];

	for (size_t i = 0; i < n; i++) {
		if (strcmp(tab[i].section, section) != 0 || !(tab[i].flags & CFG_REQUIRED) ||
		    (seen & (1ull << i)))
			continue;
		cfg_path(path, prefix, tab[i].name);
		return cfg_fail(c, at, path, "missing required key");
	}
	return 0;
}

/* ---- custom keys and checks ---------------------------------------------- */

static int cfg_check_unicast(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                             const char *path, void *base)
{
	uint32_t ip;

	memcpy(&ip, (char *)base + k->offset, sizeof(ip));
	ip = ntohl(ip);
	if (ip == 0 || ip >= 0xe0000000u || (ip >> 24) == 127)
		return cfg_fail(c, val, path, "not a unicast address the port can own");
	return 0;
}

static int cfg_parse_eal(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                         const char *path, void *base)
{
	struct ctl_config *cfg = base;
	yaml_node_item_t *it;

	(void)k;
	cfg->nb_eal_args = 0;
	if (cfg_is_null(val))
		return 0;
	if (val->type != YAML_SEQUENCE_NODE)
		return cfg_fail(c, val, path, "expected a list of strings, not %s", cfg_kind(val));
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *n = cfg_node(c, *it);
		char ipath[CFG_PATH_MAX];
		int rc;

		cfg_pathf(ipath, "%s[%u]", path, cfg->nb_eal_args);
		if (!n)
			return cfg_fail(c, val, ipath, "malformed list");
		if (cfg->nb_eal_args == CTL_MAX_EAL_ARGS)
			return cfg_fail(c, n, ipath, "too many eal arguments (at most %d)",
			                CTL_MAX_EAL_ARGS);
		rc = cfg_string(c, n, ipath, 1, CTL_ARG_LEN - 1, cfg->eal_args[cfg->nb_eal_args],
		                CTL_ARG_LEN);
		if (rc)
			return rc;
		cfg->nb_eal_args++;
	}
	return 0;
}

static int cfg_check_gw_id(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                           const char *path, void *base)
{
	const struct wire_gateway_conf *gw = base;

	(void)k;
	if (gw->id == 0)
		return cfg_fail(c, val, path, "gateway id 0 is reserved");
	return 0;
}

/* "a.b.c.d/len", "a.b.c.d" (a /32) or "any". */
static int cfg_parse_allow(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                           const char *path, void *base)
{
	struct wire_gateway_conf *gw = base;
	char echo[CFG_ECHO_MAX], addr[16], net_str[16];
	const char *s, *slash;
	uint64_t len = 32;
	uint32_t net, mask;
	size_t n;
	bool overflow;
	int rc;

	(void)k;
	rc = cfg_scalar(c, val, path, "an IPv4 network", &s, &n);
	if (rc)
		return rc;
	if (strcmp(s, "any") == 0) {
		gw->allow_net = 0;
		gw->allow_mask = 0;
		return 0;
	}
	slash = strchr(s, '/');
	if (slash && (!cfg_parse_dec(slash + 1, n - (size_t)(slash + 1 - s), &len, &overflow) ||
	              overflow || len > 32))
		return cfg_fail(c, val, path, "bad prefix length in \"%s\" (expected 0..32)",
		                cfg_echo(s, n, echo, sizeof(echo)));
	n = slash ? (size_t)(slash - s) : n;
	if (n >= sizeof(addr))
		goto bad_address;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, &net) != 1)
		goto bad_address;
	mask = len ? htonl(~0u << (32 - len)) : 0;
	if (net & ~mask) {
		uint32_t fixed = net & mask;

		inet_ntop(AF_INET, &fixed, net_str, sizeof(net_str));
		return cfg_fail(c, val, path, "host bits set in \"%s\" (the network is %s/%u)",
		                cfg_echo(s, strlen(s), echo, sizeof(echo)), net_str,
		                (unsigned int)len);
	}
	/* wire reads allow_net 0 as "any": a /len of 0.0.0.0 would silently allow all */
	if (net == 0 && len != 0)
		return cfg_fail(c, val, path, "0.0.0.0/%u is not a usable network (use any)",
		                (unsigned int)len);
	gw->allow_net = net;
	gw->allow_mask = mask;
	return 0;

bad_address:
	return cfg_fail(c, val, path, "expected an IPv4 network such as 10.0.0.0/24, got \"%s\"",
	                cfg_echo(s, strlen(s), echo, sizeof(echo)));
}

static int cfg_hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* A key is a secret: never quoted back in a message. */
static int cfg_parse_hex(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                         const char *path, void *base)
{
	uint8_t *key = (uint8_t *)base + k->offset;
	const char *s;
	size_t len;
	int rc;

	rc = cfg_scalar(c, val, path, "64 hex digits", &s, &len);
	if (rc)
		return rc;
	if (len != 2 * k->size)
		return cfg_fail(c, val, path, "expected exactly %zu hex digits, got %zu characters",
		                2 * k->size, len);
	for (size_t i = 0; i < k->size; i++) {
		int hi = cfg_hex_digit(s[2 * i]), lo = cfg_hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return cfg_fail(c, val, path,
			                "expected exactly %zu hex digits, "
			                "found a character that is not one",
			                2 * k->size);
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int cfg_parse_store_key(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                               const char *path, void *base)
{
	int rc = cfg_parse_hex(c, k, val, path, base);

	if (rc == 0)
		((struct ctl_config *)base)->store_has_key = true;
	return rc;
}

/* "sync", "none" or "interval:<ms>": the policy and, for interval, its period. */
static int cfg_parse_policy(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                            const char *path, void *base)
{
	struct ctl_config *cfg = base;
	const char *s;
	size_t len;
	int rc;

	(void)k;
	rc = cfg_scalar(c, val, path, "sync, interval:<ms> or none", &s, &len);
	if (rc)
		return rc;
	if (len == 4 && memcmp(s, "sync", 4) == 0) {
		cfg->store_policy = CTL_STORE_SYNC;
		return 0;
	}
	if (len == 4 && memcmp(s, "none", 4) == 0) {
		cfg->store_policy = CTL_STORE_NONE;
		return 0;
	}
	if (len > 9 && len < 20 && memcmp(s, "interval:", 9) == 0) {
		uint64_t ms = 0;
		size_t i;

		for (i = 9; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			ms = ms * 10 + (uint64_t)(s[i] - '0');
		if (i == len && ms >= 1 && ms <= 60000) {
			cfg->store_policy = CTL_STORE_INTERVAL;
			cfg->store_interval_ms = (uint32_t)ms;
			return 0;
		}
	}
	return cfg_fail(c, val, path, "expected sync, none or interval:<ms> with 1..60000 ms");
}

static int cfg_parse_keys(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                          const char *path, void *base)
{
	struct wire_gateway_conf *gw = base;
	const char *section = cfg_gw_key_keys[0].section;
	yaml_node_item_t *it;
	size_t idx = 0;

	(void)k;
	memset(gw->key, 0, sizeof(gw->key));
	memset(gw->has_key, 0, sizeof(gw->has_key));
	if (cfg_is_null(val))
		return 0;
	if (val->type != YAML_SEQUENCE_NODE)
		return cfg_fail(c, val, path, "expected a list of {id, hex} keys, not %s",
		                cfg_kind(val));
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++, idx++) {
		yaml_node_t *n = cfg_node(c, *it);
		struct cfg_key_entry e;
		char ipath[CFG_PATH_MAX], idpath[CFG_PATH_MAX];
		uint64_t seen = 0;
		int rc;

		cfg_pathf(ipath, "%s[%zu]", path, idx);
		if (!n)
			return cfg_fail(c, val, ipath, "malformed list");
		memset(&e, 0, sizeof(e));
		rc = cfg_parse_map(c, n, ipath, cfg_gw_key_keys, NB(cfg_gw_key_keys), section, &e,
		                   &seen);
		if (rc == 0)
			rc = cfg_check_required(c, n, ipath, cfg_gw_key_keys, NB(cfg_gw_key_keys),
			                        section, seen);
		if (rc) {
			memset(&e, 0, sizeof(e)); /* no copy of a key left behind */
			return rc;
		}
		if (gw->has_key[e.id]) {
			uint32_t id = e.id;

			memset(&e, 0, sizeof(e));
			cfg_path(idpath, ipath, "id");
			return cfg_fail(c, cfg_map_get(c, n, "id"), idpath, "duplicate key id %u",
			                id);
		}
		memcpy(gw->key[e.id], e.key, sizeof(e.key));
		gw->has_key[e.id] = true;
		memset(&e, 0, sizeof(e));
	}
	return 0;
}

/* ---- skill groups -------------------------------------------------------- */

/* A timer where 0 means off: 0, or at least CFG_MS_MIN. */
static int cfg_check_ms_or_off(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                               const char *path, void *base)
{
	uint32_t v;

	memcpy(&v, (char *)base + k->offset, sizeof(v));
	if (v != 0 && v < CFG_MS_MIN)
		return cfg_fail(c, val, path, "%u is out of range: 0 (off) or %u..%llu", v,
		                CFG_MS_MIN, (unsigned long long)k->max);
	return 0;
}

/* "HH:MM", 00:00..23:59, as minutes after midnight. */
static bool cfg_clock(const char *s, size_t len, unsigned int *minutes)
{
	static const size_t digit[] = {0, 1, 3, 4};
	unsigned int h, m;

	if (len != 5 || s[2] != ':')
		return false;
	for (size_t i = 0; i < sizeof(digit) / sizeof(digit[0]); i++)
		if (s[digit[i]] < '0' || s[digit[i]] > '9')
			return false;
	h = (unsigned int)(s[0] - '0') * 10 + (unsigned int)(s[1] - '0');
	m = (unsigned int)(s[3] - '0') * 10 + (unsigned int)(s[4] - '0');
	if (h > 23 || m > 59)
		return false;
	*minutes = h * 60 + m;
	return true;
}

static int cfg_parse_hhmm(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                          const char *path, void *base)
{
	char echo[CFG_ECHO_MAX];
	unsigned int minutes;
	uint16_t v;
	const char *s;
	size_t len;
	int rc;

	rc = cfg_scalar(c, val, path, "a time as HH:MM", &s, &len);
	if (rc)
		return rc;
	if (!cfg_clock(s, len, &minutes))
		return cfg_fail(c, val, path, "expected a time as HH:MM (00:00..23:59), got \"%s\"",
		                cfg_echo(s, len, echo, sizeof(echo)));
	v = (uint16_t)minutes;
	memcpy((char *)base + k->offset, &v, sizeof(v));
	return 0;
}

/* Bit d of disp_hours.days is weekday d, Sunday first as in struct tm. */
static const char *const cfg_day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static int cfg_parse_days(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                          const char *path, void *base)
{
	char echo[CFG_ECHO_MAX], ipath[CFG_PATH_MAX];
	yaml_node_item_t *it;
	uint8_t days = 0;
	size_t idx = 0;

	if (cfg_is_null(val))
		goto none;
	if (val->type != YAML_SEQUENCE_NODE)
		return cfg_fail(c, val, path, "expected a list of days such as [mon, tue], not %s",
		                cfg_kind(val));
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++, idx++) {
		yaml_node_t *n = cfg_node(c, *it);
		const char *s;
		size_t len, d;
		int rc;

		cfg_pathf(ipath, "%s[%zu]", path, idx);
		if (!n)
			return cfg_fail(c, val, ipath, "malformed list");
		rc = cfg_scalar(c, n, ipath, "a day", &s, &len);
		if (rc)
			return rc;
		for (d = 0; d < 7; d++)
			if (strcmp(s, cfg_day_names[d]) == 0)
				break;
		if (d == 7)
			return cfg_fail(
			        c, n, ipath,
			        "expected one of sun, mon, tue, wed, thu, fri, sat, got \"%s\"",
			        cfg_echo(s, len, echo, sizeof(echo)));
		if (days & (1u << d))
			return cfg_fail(c, n, ipath, "duplicate day %s", cfg_day_names[d]);
		days |= (uint8_t)(1u << d);
	}
	if (days) {
		memcpy((char *)base + k->offset, &days, sizeof(days));
		return 0;
	}
none:
	/* 0 would read as every day: the opposite of what an empty list says */
	return cfg_fail(c, val, path,
	                "at least one day is required (leave days out for every day)");
}

static int cfg_parse_utc_offset(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                                const char *path, void *base)
{
	char echo[CFG_ECHO_MAX];
	unsigned int minutes;
	int16_t v;
	const char *s;
	size_t len;
	int rc;

	rc = cfg_scalar(c, val, path, "an offset as +HH:MM", &s, &len);
	if (rc)
		return rc;
	if (len != 6 || (s[0] != '+' && s[0] != '-') || !cfg_clock(s + 1, len - 1, &minutes))
		return cfg_fail(c, val, path, "expected an offset as +HH:MM or -HH:MM, got \"%s\"",
		                cfg_echo(s, len, echo, sizeof(echo)));
	if (minutes > 14 * 60)
		return cfg_fail(c, val, path, "%s is out of range -14:00..+14:00", s);
	v = (int16_t)(s[0] == '-' ? -(int)minutes : (int)minutes);
	memcpy((char *)base + k->offset, &v, sizeof(v));
	return 0;
}

static int cfg_parse_hours(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                           const char *path, void *base)
{
	struct disp_hours *hours = (struct disp_hours *)((char *)base + k->offset);
	uint64_t seen = 0;

	return cfg_parse_map(c, val, path, cfg_hours_keys, NB(cfg_hours_keys),
	                     cfg_hours_keys[0].section, hours, &seen);
}

/* The steps of one group; their targets are checked once every group is read. */
static int cfg_parse_overflow(struct cfg_ctx *c, const struct cfg_key *k, yaml_node_t *val,
                              const char *path, void *base)
{
	struct disp_skill_conf *sk = base;
	const char *section = cfg_overflow_keys[0].section;
	yaml_node_item_t *it;

	(void)k;
	memset(sk->overflow, 0, sizeof(sk->overflow));
	sk->nb_overflow = 0;
	if (cfg_is_null(val))
		return 0;
	if (val->type != YAML_SEQUENCE_NODE)
		return cfg_fail(c, val, path, "expected a list of {after_ms, to} steps, not %s",
		                cfg_kind(val));
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *n = cfg_node(c, *it);
		struct disp_overflow step;
		char ipath[CFG_PATH_MAX], kpath[CFG_PATH_MAX];
		uint32_t nb = sk->nb_overflow;
		uint64_t seen = 0;
		int rc;

		cfg_pathf(ipath, "%s[%u]", path, nb);
		if (!n)
			return cfg_fail(c, val, ipath, "malformed list");
		if (nb == DISP_MAX_OVERFLOW)
			return cfg_fail(c, n, ipath, "too many overflow steps (at most %d)",
			                DISP_MAX_OVERFLOW);
		memset(&step, 0, sizeof(step));
		rc = cfg_parse_map(c, n, ipath, cfg_overflow_keys, NB(cfg_overflow_keys), section,
		                   &step, &seen);
		if (rc == 0)
			rc = cfg_check_required(c, n, ipath, cfg_overflow_keys,
			                        NB(cfg_overflow_keys), section, seen);
		if (rc)
			return rc;
		if (nb > 0 && step.after_ms <= sk->overflow[nb - 1].after_ms) {
			cfg_path(kpath, ipath, "after_ms");
			return cfg_fail(c, cfg_map_get(c, n, "after_ms"), kpath,
			                "%u is not after the previous step's %u (after_ms must "
			                "increase)",
			                step.after_ms, sk->overflow[nb - 1].after_ms);
		}
		for (uint32_t j = 0; j < nb; j++) {
			if (strcmp(sk->overflow[j].to_skill, step.to_skill) == 0) {
				cfg_path(kpath, ipath, "to");
				return cfg_fail(c, cfg_map_get(c, n, "to"), kpath,
				                "duplicate target \"%s\" (as %s[%u])",
				                step.to_skill, path, j);
			}
		}
		sk->overflow[nb] = step;
		sk->nb_overflow = nb + 1;
	}
	return 0;
}

/*
 * Every overflow target must be another group of the file (it may come later
 * in the list). A target of another tenant is allowed: a shop's group may
 * widen to the platform's; the dispatcher's tenant rule still decides which of
 * its agents may serve.
 */
static int cfg_check_overflow(struct cfg_ctx *c, yaml_node_t *seq)
{
	const struct ctl_config *cfg = c->cfg;
	const char *names[CTL_MAX_SKILLS];
	uint32_t i;

	for (i = 0; i < cfg->nb_skills; i++)
		names[i] = cfg->skills[i].name;
	for (i = 0; i < cfg->nb_skills; i++) {
		const struct disp_skill_conf *sk = &cfg->skills[i];
		/* every entry of the list became a group, in order */
		yaml_node_t *n = cfg_node(c, seq->data.sequence.items.start[i]);
		yaml_node_t *ov = n ? cfg_map_get(c, n, "overflow") : NULL;

		for (uint32_t j = 0; j < sk->nb_overflow; j++) {
			const char *to = sk->overflow[j].to_skill;
			yaml_node_t *step = NULL, *at = ov;
			char path[CFG_PATH_MAX], what[DISP_NAME_MAX + 16];
			uint32_t t;

			if (ov && ov->type == YAML_SEQUENCE_NODE)
				step = cfg_node(c, ov->data.sequence.items.start[j]);
			if (step)
				at = cfg_map_get(c, step, "to");
			cfg_pathf(path, "skills[%u].overflow[%u].to", i, j);
			if (strcmp(to, sk->name) == 0)
				return cfg_fail(c, at, path, "overflow to its own group \"%s\"",
				                to);
			for (t = 0; t < cfg->nb_skills; t++)
				if (strcmp(to, cfg->skills[t].name) == 0)
					break;
			if (t == cfg->nb_skills) {
				snprintf(what, sizeof(what), "skill group \"%s\"", to);
				return cfg_unknown(c, at, path, what, to, names, cfg->nb_skills);
			}
		}
	}
	return 0;
}

/* ---- lists of gateways and skills ----------------------------------------- */

static int cfg_parse_gateways(struct cfg_ctx *c, yaml_node_t *seq)
{
	struct ctl_config *cfg = c->cfg;
	const char *section = cfg_gw_keys[0].section;
	yaml_node_item_t *it;

	if (cfg_is_null(seq))
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE)
		return cfg_fail(c, seq, "gateways", "expected a list of gateways, not %s",
		                cfg_kind(seq));
	for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
		yaml_node_t *n = cfg_node(c, *it);
		struct wire_gateway_conf *gw;
		char prefix[CFG_PATH_MAX], path[CFG_PATH_MAX];
		uint64_t seen = 0;
		int rc;

		cfg_pathf(prefix, "gateways[%u]", cfg->nb_gateways);
		if (!n)
			return cfg_fail(c, seq, prefix, "malformed list");
		if (cfg->nb_gateways == CTL_MAX_GATEWAYS)
			return cfg_fail(c, n, prefix, "too many gateways (at most %d)",
			                CTL_MAX_GATEWAYS);
		gw = &cfg->gateways[cfg->nb_gateways];
		memset(gw, 0, sizeof(*gw));
		cfg_apply_defaults(cfg_gw_keys, NB(cfg_gw_keys), gw);
		rc = cfg_parse_map(c, n, prefix, cfg_gw_keys, NB(cfg_gw_keys), section, gw, &seen);
		if (rc == 0)
			rc = cfg_check_required(c, n, prefix, cfg_gw_keys, NB(cfg_gw_keys), section,
			                        seen);
		if (rc)
			return rc;
		for (uint32_t j = 0; j < cfg->nb_gateways; j++) {
			if (cfg->gateways[j].id == gw->id) {
				cfg_path(path, prefix, "id");
				return cfg_fail(c, cfg_map_get(c, n, "id"), path,
				                "duplicate gateway id %u (as gateways[%u])", gw->id,
				                j);
			}
			/* names label the metrics: two alike would merge two gateways' figures */
			if (strcmp(cfg->gateways[j].name, gw->name) == 0) {
				cfg_path(path, prefix, "name");
				return cfg_fail(c, cfg_map_get(c, n, "name"), path,
				                "duplicate gateway name \"%s\" (as gateways[%u])",
				                gw->name, j);
			}
		}
		if (!gw->plaintext && !gw->has_key[0] && !gw->has_key[1])
			return cfg_fail(c, n, prefix,
			                "no key and plaintext is false: the gateway cannot be "
			                "reached, since AEAD needs a key");
		cfg->nb_gateways++;
	}
	return 0;
}

static int cfg_parse_skills(struct cfg_ctx *c, yaml_node_t *seq)
{
	struct ctl_config *cfg = c->cfg;
	const char *section = cfg_skill_keys[0].section;
	yaml_node_item_t *it;

	if (cfg_is_null(seq))
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE)
		return cfg_fail(c, seq, "skills", "expected a list of skill groups, not %s",
		                cfg_kind(seq));
	for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
		yaml_node_t *n = cfg_node(c, *it);
		struct disp_skill_conf *sk;
		char prefix[CFG_PATH_MAX], path[CFG_PATH_MAX];
		uint64_t seen = 0;
		int rc;

		cfg_pathf(prefix, "skills[%u]", cfg->nb_skills);
		if (!n)
			return cfg_fail(c, seq, prefix, "malformed list");
		if (cfg->nb_skills == CTL_MAX_SKILLS)
			return cfg_fail(c, n, prefix, "too many skills (at most %d)",
			                CTL_MAX_SKILLS);
		sk = &cfg->skills[cfg->nb_skills];
		memset(sk, 0, sizeof(*sk));
		cfg_apply_defaults(cfg_skill_keys, NB(cfg_skill_keys), sk);
		cfg_apply_defaults(cfg_hours_keys, NB(cfg_hours_keys), &sk->hours);
		rc = cfg_parse_map(c, n, prefix, cfg_skill_keys, NB(cfg_skill_keys), section, sk,
		                   &seen);
		if (rc == 0)
			rc = cfg_check_required(c, n, prefix, cfg_skill_keys, NB(cfg_skill_keys),
			                        section, seen);
		if (rc)
			return rc;
		for (uint32_t j = 0; j < cfg->nb_skills; j++) {
			if (strcmp(cfg->skills[j].name, sk->name) == 0) {
				cfg_path(path, prefix, "name");
				return cfg_fail(c, cfg_map_get(c, n, "name"), path,
				                "duplicate skill name \"%s\" (as skills[%u])",
				                sk->name, j);
			}
		}
		cfg->nb_skills++;
	}
	return cfg_check_overflow(c, seq);
}

/* ---- the document -------------------------------------------------------- */

static int cfg_parse_root(struct cfg_ctx *c, yaml_node_t *root)
{
	const char *names[CFG_NB_SECTIONS + 2];
	yaml_node_t *section_key[CFG_NB_SECTIONS] = {NULL}; /* where a section is named */
	yaml_node_t *gw_key = NULL, *skill_key = NULL;
	yaml_node_pair_t *p;
	uint64_t seen = 0;
	size_t s;
	int rc;

	if (!root || cfg_is_null(root))
		return cfg_fail(c, root, NULL,
		                "configuration is empty (router.address, a gateway "
		                "and a skill are required)");
	if (root->type != YAML_MAPPING_NODE)
		return cfg_fail(c, root, NULL, "expected a mapping of sections at the top, not %s",
		                cfg_kind(root));
	for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = cfg_node(c, p->key), *vn = cfg_node(c, p->value);
		char path[CFG_PATH_MAX];
		const char *name;

		if (!kn || !vn)
			return cfg_fail(c, root, NULL, "malformed mapping");
		rc = cfg_key_name(c, kn, NULL, &name);
		if (rc)
			return rc;
		cfg_pathf(path, "%.64s", name);
		if (strcmp(name, "gateways") == 0) {
			if (gw_key)
				return cfg_fail(c, kn, path, "duplicate section");
			gw_key = kn;
			rc = cfg_parse_gateways(c, vn);
		} else if (strcmp(name, "skills") == 0) {
			if (skill_key)
				return cfg_fail(c, kn, path, "duplicate section");
			skill_key = kn;
			rc = cfg_parse_skills(c, vn);
		} else {
			for (s = 0; s < CFG_NB_SECTIONS; s++)
				if (strcmp(name, cfg_sections[s]) == 0)
					break;
			if (s == CFG_NB_SECTIONS) {
				memcpy(names, cfg_sections, sizeof(cfg_sections));
				names[CFG_NB_SECTIONS] = "gateways";
				names[CFG_NB_SECTIONS + 1] = "skills";
				return cfg_unknown(c, kn, path, "section", name, names,
				                   CFG_NB_SECTIONS + 2);
			}
			if (section_key[s])
				return cfg_fail(c, kn, path, "duplicate section");
			section_key[s] = kn;
			rc = cfg_parse_map(c, vn, cfg_sections[s], cfg_keys, NB(cfg_keys),
			                   cfg_sections[s], c->cfg, &seen);
		}
		if (rc)
			return rc;
	}
	for (s = 0; s < CFG_NB_SECTIONS; s++) {
		const yaml_node_t *at = section_key[s] ? section_key[s] : root;

		rc = cfg_check_required(c, at, cfg_sections[s], cfg_keys, NB(cfg_keys),
		                        cfg_sections[s], seen);
		if (rc)
			return rc;
	}
	if (c->cfg->nb_gateways == 0)
		return cfg_fail(c, gw_key ? gw_key : root, "gateways",
		                "at least one gateway is required");
	if (c->cfg->nb_skills == 0)
		return cfg_fail(c, skill_key ? skill_key : root, "skills",
		                "at least one skill is required");
	return 0;
}

/* The message of a libyaml parser error. */
static int cfg_yaml_error(struct cfg_ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
	const char *problem = p->problem ? p->problem : "cannot parse";
	size_t line = p->problem_mark.line + 1;

	if (p->error == YAML_MEMORY_ERROR) {
		cfg_fail_line(c, 1, NULL, "out of memory");
		return -ENOMEM;
	}
	if (p->error == YAML_READER_ERROR) {
		/* the reader reports a byte offset, not a mark */
		line = 1;
		for (size_t i = 0; i < p->problem_offset && i < len; i++)
			line += text[i] == '\n';
	}
	if (p->context)
		return cfg_fail_line(c, line, NULL, "invalid yaml: %s (%s at line %zu)", problem,
		                     p->context, p->context_mark.line + 1);
	return cfg_fail_line(c, line, NULL, "invalid yaml: %s", problem);
}

/* First pass: syntax, one document, no anchors or aliases. */
static int cfg_scan(struct cfg_ctx *c, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int docs = 0, rc = 0;
	bool done = false;

	if (!yaml_parser_initialize(&parser)) {
		cfg_fail_line(c, 1, NULL, "out of memory");
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (!done && rc == 0) {
		const yaml_char_t *anchor = NULL;
		size_t line;

		if (!yaml_parser_parse(&parser, &ev)) {
			rc = cfg_yaml_error(c, &parser, text, len);
			break;
		}
		line = ev.start_mark.line + 1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				rc = cfg_fail_line(c, line, NULL,
				                   "only one yaml document is allowed");
			break;
		case YAML_ALIAS_EVENT:
			rc = cfg_fail_line(c, line, NULL, "yaml aliases are not supported");
			break;
		case YAML_SCALAR_EVENT:
			anchor = ev.data.scalar.anchor;
			break;
		case YAML_SEQUENCE_START_EVENT:
			anchor = ev.data.sequence_start.anchor;
			break;
		case YAML_MAPPING_START_EVENT:
			anchor = ev.data.mapping_start.anchor;
			break;
		default:
			break;
		}
		if (anchor && rc == 0)
			rc = cfg_fail_line(c, line, NULL, "yaml anchors are not supported");
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	return rc;
}

/* Second pass: the node tree, walked into c->cfg. */
static int cfg_load_tree(struct cfg_ctx *c, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc;

	if (!yaml_parser_initialize(&parser)) {
		cfg_fail_line(c, 1, NULL, "out of memory");
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = cfg_yaml_error(c, &parser, text, len);
		goto out_delete_parser;
	}
	c->doc = &doc;
	rc = cfg_parse_root(c, yaml_document_get_root_node(&doc));
	c->doc = NULL;
	yaml_document_delete(&doc);
out_delete_parser:
	yaml_parser_delete(&parser);
	return rc;
}

/* ---- public -------------------------------------------------------------- */

void ctl_config_defaults(struct ctl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg_apply_defaults(cfg_keys, NB(cfg_keys), cfg);
	cfg->store_policy = CTL_STORE_SYNC;
	cfg->store_interval_ms = 10;
}

int ctl_config_parse(const char *name, const char *text, size_t len, struct ctl_config *cfg,
                     char *err, size_t errlen)
{
	struct cfg_ctx c = {
	        .name = name ? name : "(config)",
	        .err = err,
	        .errlen = errlen,
	};
	int rc;

	if (err && errlen > 0)
		err[0] = '\0';
	if (!cfg || (!text && len > 0))
		return cfg_fail_line(&c, 1, NULL, "no configuration given");
	if (!text)
		text = "";
	/* cfg is written only on success: a failed reload leaves the running one intact */
	c.cfg = malloc(sizeof(*c.cfg));
	if (!c.cfg) {
		cfg_fail_line(&c, 1, NULL, "out of memory");
		return -ENOMEM;
	}
	ctl_config_defaults(c.cfg);
	rc = cfg_scan(&c, text, len);
	if (rc == 0)
		rc = cfg_load_tree(&c, text, len);
	if (rc == 0)
		memcpy(cfg, c.cfg, sizeof(*cfg));
	/* it may hold gateway keys */
	memset(c.cfg, 0, sizeof(*c.cfg));
	free(c.cfg);
	return rc;
}

int ctl_config_load(const char *path, struct ctl_config *cfg, char *err, size_t errlen)
{
	char *buf, *more;
	size_t len = 0, cap = 64 * 1024, got;
	FILE *f;
	int rc;

	if (err && errlen > 0)
		err[0] = '\0';
	if (!path) {
		if (err && errlen > 0)
			snprintf(err, errlen, "no configuration file given");
		return -EINVAL;
	}
	f = fopen(path, "rb");
	if (!f) {
		rc = -errno;
		if (err && errlen > 0)
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	errno = 0;
	for (;;) {
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (len < cap)
			break;
		if (cap >= CFG_FILE_MAX) {
			rc = -EFBIG;
			if (err && errlen > 0)
				snprintf(err, errlen, "cannot read %s: not under %u bytes", path,
				         CFG_FILE_MAX);
			goto out_free_buf;
		}
		more = realloc(buf, cap * 2);
		if (!more) {
			rc = -ENOMEM;
			goto out_free_buf;
		}
		buf = more;
		cap *= 2;
	}
	if (ferror(f)) {
		rc = errno ? -errno : -EIO;
		if (err && errlen > 0)
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
		goto out_free_buf;
	}
	rc = ctl_config_parse(path, buf, len, cfg, err, errlen);
out_free_buf:
	free(buf);
out_close:
	fclose(f);
	if (rc == -ENOMEM && err && errlen > 0 && err[0] == '\0')
		snprintf(err, errlen, "cannot read %s: out of memory", path);
	return rc;
}

/* ---- --help -------------------------------------------------------------- */

static void cfg_print_table(FILE *f, const struct cfg_key *tab, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct cfg_key *k = &tab[i];
		char name[64], def[32], extra[96];
		const char *type;

		snprintf(name, sizeof(name), "%s.%s", k->section, k->name);
		extra[0] = '\0';
		switch (k->type) {
		case CFG_UINT:
		case CFG_MS:
			type = k->type == CFG_MS ? "ms" : k->size == 2 ? "u16" : "u32";
			snprintf(def, sizeof(def), "%llu", (unsigned long long)k->def);
			snprintf(extra, sizeof(extra), " [%llu..%llu]", (unsigned long long)k->min,
			         (unsigned long long)k->max);
			break;
		case CFG_BOOL:
			type = "bool";
			snprintf(def, sizeof(def), "%s", k->def ? "true" : "false");
			break;
		case CFG_IPV4:
			type = "ipv4";
			def[0] = '\0';
			break;
		case CFG_ENUM: {
			size_t used = 0;

			type = "enum";
			def[0] = '\0';
			used = (size_t)snprintf(extra, sizeof(extra), " [");
			for (const struct cfg_enum_val *e = k->enums; e->name; e++) {
				if (e->value == (int)k->def && !(k->flags & CFG_REQUIRED))
					snprintf(def, sizeof(def), "%s", e->name);
				if (used < sizeof(extra))
					used += (size_t)snprintf(extra + used, sizeof(extra) - used,
					                         "%s%s", e == k->enums ? "" : "|",
					                         e->name);
			}
			if (used < sizeof(extra))
				snprintf(extra + used, sizeof(extra) - used, "]");
			break;
		}
		case CFG_STRING:
			type = "string";
			snprintf(def, sizeof(def), "\"%s\"", k->def_str ? k->def_str : "");
			snprintf(extra, sizeof(extra), " [%llu..%llu bytes]",
			         (unsigned long long)k->min, (unsigned long long)k->max);
			break;
		default:
			type = k->type_name;
			snprintf(def, sizeof(def), "%s", k->def_str);
			break;
		}
		if (k->flags & CFG_REQUIRED)
			snprintf(def, sizeof(def), "required");
		fprintf(f, "  %-36s %-8s %-9s %s%s\n", name, type, def, k->help, extra);
	}
}

void ctl_config_print_keys(void *file)
{
	FILE *f = file ? file : stdout;

	cfg_print_table(f, cfg_keys, NB(cfg_keys));
	cfg_print_table(f, cfg_gw_keys, NB(cfg_gw_keys));
	cfg_print_table(f, cfg_gw_key_keys, NB(cfg_gw_key_keys));
	cfg_print_table(f, cfg_skill_keys, NB(cfg_skill_keys));
	cfg_print_table(f, cfg_hours_keys, NB(cfg_hours_keys));
	cfg_print_table(f, cfg_overflow_keys, NB(cfg_overflow_keys));
}
