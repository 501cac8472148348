/*
 * config.h - admin settings: the key=value arguments on the plugstack.conf line.
 *
 * Parsed in every SPANK callback, because prolog, epilog and slurmd_exit run
 * in other processes than init.
 */
#ifndef PHPC_CONFIG_H
#define PHPC_CONFIG_H

#include <limits.h>
#include <stddef.h>

#define PHPC_DEFAULT_SOCKET "/run/podman-hpc/podman-hpcd.sock"
#ifndef PHPC_DEFAULT_PODMAN_HPCD
#define PHPC_DEFAULT_PODMAN_HPCD "/usr/bin/podman-hpcd"
#endif
#define PHPC_DEFAULT_DAEMON_CONFIG "/etc/podman-hpc/podman-hpcd.conf"

struct phpc_config {
	char socket[PATH_MAX];  /* the node daemon's Unix socket */
	int container_mount_home; /* default for --[no-]container-mount-home */
	int container_writable;   /* default for --container-writable/-readonly */
	int sbatch_support;       /* accept --container-* on sbatch/salloc */
	int execute_entrypoint;   /* default for --[no-]container-entrypoint */
	int scope_global;         /* container_scope=global: named containers outlive the job */
	int timeout;              /* seconds to wait for the daemon per request */
	char podman_hpcd[PATH_MAX];   /* the daemon's binary: srun and sbatch run its resolve (pin.c) */
	char daemon_config[PATH_MAX]; /* its config, for registries_conf where no daemon runs */
	char partitions[1024];        /* "": every partition; else the comma list containers run in */
	char squeue[PATH_MAX];        /* "": the one beside slurmstepd; asked whether a job still runs (cancel.h) */
};

void phpc_config_defaults(struct phpc_config *c);

/* Parses argv ("key=value" each) over the defaults; returns 0, or -1 with the
 * offending argument and the list of known keys in err. */
int phpc_config_parse(struct phpc_config *c, int argc, char **argv, char *err, size_t errlen);

/* Whether containers run in a job of partition (a pilot may enable them on
 * some partitions only: partitions=a,b); of a list of partitions (srun -p
 * a,b), whether they run on every one. */
int phpc_config_partition_enabled(const struct phpc_config *c, const char *partition);

#endif
