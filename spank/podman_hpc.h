/*
 * podman_hpc.h - state shared by the plugin's per-context files.
 */
#ifndef PHPC_PODMAN_HPC_H
#define PHPC_PODMAN_HPC_H

#include <stdint.h>

#include <slurm/spank.h>

#include "args.h"
#include "config.h"

#define PHPC_NAME "podman-hpc"
#define PHPC_MAX_NS 6 /* user, ipc, uts, net, cgroup, mnt */

/* One per process: slurmstepd runs one step, srun/sbatch one command. */
struct phpc_state {
	struct phpc_config cfg;
	struct phpc_args args;
	int daemon_fd;    /* connection to podman-hpcd, -1 when none */
	int ns_fds[PHPC_MAX_NS]; /* the container's namespaces to join, in order (mount last) */
	size_t n_ns;
	int own_userns;   /* the user namespace sent is the tasks' own (not the container's): remap-root tasks keep their capabilities there */
	char *workdir;    /* where tasks start inside the container */
	char **env;       /* the image's environment, NAME=VALUE, NULL-terminated */
	size_t n_env;
	uint32_t tasks_exited; /* of this node's tasks, in slurmstepd */
	char error[1024]; /* kept from user_init, reported from the task (Slurm drops user_init errors) */
};

extern struct phpc_state phpc;

/* Reads the environment forms (PODMAN_HPC_CONTAINER_*, PYXIS_CONTAINER_*) of
 * options the user did not give as flags: in slurmstepd from the job's
 * environment (remote != 0), elsewhere from the process's own. */
int phpc_apply_env_options(spank_t sp, int remote);

/* slurmstepd side (stepd.c). */
int phpc_stepd_post_opt(spank_t sp);
int phpc_stepd_user_init(spank_t sp);
int phpc_stepd_task_init_privileged(spank_t sp);
int phpc_stepd_task_init(spank_t sp);
int phpc_stepd_task_exit(spank_t sp);
void phpc_stepd_exit(spank_t sp);

/* Job epilog side (epilog.c): removes the job's containers on this node. */
int phpc_job_epilog(spank_t sp);

#endif
