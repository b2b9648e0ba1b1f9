/* SPDX-License-Identifier: MIT */
/*
 * ctl: configuration, lifecycle and the wiring of net, wire and dispatch.
 * This header is the configuration of the router as loaded from its YAML
 * file (docs/configuration.md documents every key).
 */
#ifndef SURGE_CTL_H
#define SURGE_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"
#include "wire.h"

#define CTL_MAX_GATEWAYS 256
#define CTL_MAX_SKILLS   256
#define CTL_MAX_EAL_ARGS 32
#define CTL_ARG_LEN      256

/* store.durability; values equal enum store_policy (store.h). */
enum ctl_store_policy {
	CTL_STORE_SYNC = 0,
	CTL_STORE_INTERVAL = 1,
	CTL_STORE_NONE = 2,
};

struct ctl_config {
	/* router: */
	uint32_t ip;       /* router's IPv4 address, network order (required) */
	uint16_t udp_port; /* UDP port [7700] */
	uint16_t mtu;      /* IP MTU of the port [1500] */

	/* dpdk: */
	char eal_args[CTL_MAX_EAL_ARGS][CTL_ARG_LEN]; /* EAL arguments, before any given after -- */
	uint32_t nb_eal_args;
	uint16_t port_id;  /* DPDK port id [0] */
	uint32_t nb_mbufs; /* mbuf pool size [8191] */
	uint16_t rx_desc;  /* [1024] */
	uint16_t tx_desc;  /* [1024] */

	/* limits: */
	uint32_t max_agents;          /* [1024] */
	uint32_t max_sessions;        /* [65536] */
	uint32_t backlog_max;         /* messages held per session [64] */
	uint32_t text_pool_mb;        /* memory for held text, MiB [64] */
	uint32_t agent_text_max;      /* code points [200] */
	uint32_t customer_text_max;   /* code points [2000] */
	uint32_t envelopes_per_frame; /* [64], at most WIRE_MAX_ENVELOPES */

	/* timers: */
	uint32_t heartbeat_timeout_ms; /* agent silent this long is disconnected [30000] */
	uint32_t gateway_timeout_ms;   /* gateway silent this long is down [30000] */
	uint32_t stats_interval_ms;    /* counters to the log this often; 0 = never [0] */

	/* log: */
	int log_level; /* 0 error, 1 warning, 2 info, 3 debug [2] */

	/* admin: */
	uint16_t admin_port; /* HTTP on 127.0.0.1; 0 = none [0] */

	/* store: */
	char store_dir[256];              /* data directory; "" = no store (acks mean processed) */
	int store_policy;                 /* enum store_policy [sync] */
	uint32_t store_interval_ms;       /* interval policy: sync period [10] */
	uint32_t store_commit_delay_us;   /* sync policy: hold a smaller batch [0] */
	uint32_t store_segment_mb;        /* [64] */
	uint32_t store_checkpoint_mb;     /* [256] */
	uint32_t store_retention_days;    /* [7] */
	uint32_t store_ring_mb;           /* per worker [16] */
	uint32_t store_history_customers; /* [1000000] */
	uint8_t store_key[32];            /* AES-256-GCM key at rest */
	bool store_has_key;               /* store_key was given */

	/* gateways: */
	struct wire_gateway_conf gateways[CTL_MAX_GATEWAYS];
	uint32_t nb_gateways;

	/* skills: */
	struct disp_skill_conf skills[CTL_MAX_SKILLS];
	uint32_t nb_skills;
};

/* Fill every field with its default (no gateways, no skills, ip 0). */
void ctl_config_defaults(struct ctl_config *cfg);

/*
 * Load and validate a YAML configuration file into cfg (defaults first).
 * Returns 0, or -EINVAL (invalid: err holds "file:line: key: problem"),
 * -ENOENT/-EACCES/... (cannot read: err says so). err is always
 * NUL-terminated when errlen > 0.
 */
int ctl_config_load(const char *path, struct ctl_config *cfg, char *err, size_t errlen);

/* Same as ctl_config_load, from a YAML text in memory (name used in messages). */
int ctl_config_parse(const char *name, const char *text, size_t len, struct ctl_config *cfg,
                     char *err, size_t errlen);

/* Print every configuration key with its type, default and meaning (for --help). */
void ctl_config_print_keys(void *file);

#endif /* SURGE_CTL_H */
