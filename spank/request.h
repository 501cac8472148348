/*
 * request.h - the CONTAINER request: its vocabulary and its encoding.
 *
 * Pure logic: no Slurm calls. stepd.c fills struct phpc_request from the
 * step's spank items; the Go side decodes it in pkg/wire (request.go), and
 * spank/cgotest encodes requests here and decodes them there, and checks
 * that the lists below equal pkg/wire's.
 */
#ifndef PHPC_REQUEST_H
#define PHPC_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "args.h"
#include "config.h"
#include "proto.h"

/* Slurm's step id of the batch script (SLURM_BATCH_SCRIPT in slurm.h). */
#define PHPC_BATCH_STEP 0xfffffffbu

/* NULL-terminated lists the user's option values are checked against
 * (args.c), as the daemon checks them again (pkg/wire). */
extern const char *const phpc_mount_flags[];        /* --container-mounts FLAGS */
extern const char *const phpc_tmpfs_flags[];        /* tmpfs:/DST:OPTIONS flags beside size= etc. (args.c) */
extern const char *const phpc_name_modes[];         /* --container-name's MODE; the first is the default */
extern const char *const phpc_unshare_namespaces[]; /* --container-unshare */

/* Where the user's registry credentials may be, first found first: the file
 * suffix under the directory the job's variable var names (suffix "": the
 * variable names the file). Ends with { NULL, NULL }. */
struct phpc_auth_file {
	const char *var;
	const char *suffix;
};
extern const struct phpc_auth_file phpc_auth_files[];

/* Everything the daemon needs to build the step's container. */
/* One of the job's groups; name is NULL when the node has none. */
struct phpc_group {
	uint32_t gid;
	const char *name;
};

struct phpc_request {
	uint32_t job, step, uid, gid;
	/* The job user as the node's NSS knows them (user name NULL: not
	 * sent), and the job's groups, the primary (gid) first. */
	const char *user, *home, *shell;
	const struct phpc_group *groups;
	size_t n_groups;
	const char *plugin_version;
	const struct phpc_args *args;   /* the user's options */
	const struct phpc_config *cfg;  /* the admin's defaults */
	int saves;                      /* this node saves (--container-save: the step's first node) */
	const char *command;            /* the step's argv[0], or NULL */
	const char *const *jobenv;      /* NAME=VALUE for the modules, NULL-terminated; or NULL */
	const char *auth;               /* the user's auth file, or NULL */
};

/* Appends r's fields to m (a CONTAINER message). Returns 0, or -1 when a
 * field does not fit (phpc_msg_add). */
int phpc_request_encode(struct phpc_msg *m, const struct phpc_request *r);

#endif
