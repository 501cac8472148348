/*
 * podman_hpc.c - SPANK entry points: registers pyxis's --container-* options
 * and dispatches on the Slurm context. The container work is in stepd.c.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <slurm/slurm_version.h>
#include <slurm/spank.h>

#include "coexist.h"
#include "pin.h"
#include "podman_hpc.h"
#include "version.h"

SPANK_PLUGIN(podman-hpc, 1)

struct phpc_state phpc = { .daemon_fd = -1 };

enum opt_id {
	OPT_IMAGE = 1,
	OPT_MOUNTS,
	OPT_WORKDIR,
	OPT_ENV,
	OPT_WRITABLE,
	OPT_READONLY,
	OPT_MOUNT_HOME,
	OPT_NO_MOUNT_HOME,
	OPT_NO_ENTRYPOINT,
	OPT_NO_REMAP_ROOT,
	OPT_HOOKS,
	OPT_NAME,
	OPT_SAVE,
	OPT_ENTRYPOINT,
	OPT_ENTRYPOINT_LOG,
	OPT_REMAP_ROOT,
	OPT_UNSHARE,
};

static int on_option(int val, const char *optarg, int remote);

static struct spank_option options[] = {
	{ "container-image", "[USER@][REGISTRY#]IMAGE[:TAG]|PATH",
	  "[podman-hpc] the image to run the tasks in (registry reference, docker://, oci-archive:, or a squashfs path)",
	  1, OPT_IMAGE, on_option },
	{ "container-mounts", "SRC:DST[:FLAGS][,SRC:DST...]",
	  "[podman-hpc] bind mounts into the container; FLAGS joined with '+' (ro, rbind, ...)", 1, OPT_MOUNTS, on_option },
	{ "container-workdir", "PATH", "[podman-hpc] working directory inside the container (default: the image's)",
	  1, OPT_WORKDIR, on_option },
	{ "container-env", "NAME[,NAME...]",
	  "[podman-hpc] host values of these variables win over the image's", 1, OPT_ENV, on_option },
	{ "container-writable", NULL, "[podman-hpc] writable container root (a temporary overlay)", 0, OPT_WRITABLE, on_option },
	{ "container-readonly", NULL, "[podman-hpc] read-only container root", 0, OPT_READONLY, on_option },
	{ "container-mount-home", NULL, "[podman-hpc] bind the user's home directory", 0, OPT_MOUNT_HOME, on_option },
	{ "no-container-mount-home", NULL, "[podman-hpc] don't bind the user's home directory", 0, OPT_NO_MOUNT_HOME, on_option },
	{ "container-entrypoint", NULL, "[podman-hpc] run the image's entrypoint before the command", 0, OPT_ENTRYPOINT, on_option },
	{ "no-container-entrypoint", NULL, "[podman-hpc] don't run the image's entrypoint", 0, OPT_NO_ENTRYPOINT, on_option },
	{ "container-entrypoint-log", NULL, "[podman-hpc] show the entrypoint's output", 0, OPT_ENTRYPOINT_LOG, on_option },
	{ "container-remap-root", NULL, "[podman-hpc] appear as root (uid 0) inside, through a user namespace; no real privilege", 0, OPT_REMAP_ROOT, on_option },
	{ "no-container-remap-root", NULL, "[podman-hpc] keep your own uid inside (the default)", 0, OPT_NO_REMAP_ROOT, on_option },
	{ "container-name", "NAME[:auto|create|exec|no_exec]",
	  "[podman-hpc] a named container, kept (with its writes) for the job's later steps", 1, OPT_NAME, on_option },
	{ "container-save", "PATH", "[podman-hpc] save the container's filesystem as a squashfs at PATH after the step", 1, OPT_SAVE, on_option },
	{ "container-unshare", "NS[,NS...]", "[podman-hpc] private net, ipc or uts namespaces (default: the host's)", 1, OPT_UNSHARE, on_option },
	{ "container-hooks", "NAME[,NAME...]",
	  "[podman-hpc] OCI hooks and modules for the step: gpu, ib, mpi, pmi or a hooks.d name; no-NAME drops a default, none drops all",
	  1, OPT_HOOKS, on_option },
	SPANK_OPTIONS_TABLE_END
};

static const char *option_name(int val)
{
	size_t i;

	for (i = 0; options[i].name; i++)
		if (options[i].val == val)
			return options[i].name;
	return "?";
}

static int on_option(int val, const char *optarg, int remote)
{
	char err[512] = "";
	int rc = 0;

	(void)remote;
	switch (val) {
	case OPT_IMAGE:
		/* Relative paths, here and in the other options, are made
		 * absolute in slurmstepd, in the job's working directory
		 * (phpc_args_resolve): the options reach it as typed. */
		rc = phpc_args_set_image(&phpc.args, optarg, err, sizeof(err));
		break;
	case OPT_MOUNTS:
		rc = phpc_args_add_mounts(&phpc.args, optarg, err, sizeof(err));
		break;
	case OPT_WORKDIR:
		rc = phpc_args_set_workdir(&phpc.args, optarg, err, sizeof(err));
		break;
	case OPT_ENV:
		rc = phpc_args_add_env_names(&phpc.args, optarg, err, sizeof(err));
		break;
	case OPT_WRITABLE:
	case OPT_READONLY:
		rc = phpc_args_set_flag(&phpc.args.writable, val == OPT_WRITABLE, "--container-writable/--container-readonly", err, sizeof(err));
		break;
	case OPT_MOUNT_HOME:
	case OPT_NO_MOUNT_HOME:
		rc = phpc_args_set_flag(&phpc.args.mount_home, val == OPT_MOUNT_HOME, "--[no-]container-mount-home", err, sizeof(err));
		break;
	case OPT_HOOKS:
		rc = phpc_args_set_hooks(&phpc.args, optarg, err, sizeof(err));
		break;
	case OPT_ENTRYPOINT:
	case OPT_NO_ENTRYPOINT:
		rc = phpc_args_set_flag(&phpc.args.entrypoint, val == OPT_ENTRYPOINT, "--[no-]container-entrypoint", err, sizeof(err));
		break;
	case OPT_ENTRYPOINT_LOG:
		phpc.args.entrypoint_log = 1;
		break;
	case OPT_REMAP_ROOT:
	case OPT_NO_REMAP_ROOT:
		rc = phpc_args_set_flag(&phpc.args.remap_root, val == OPT_REMAP_ROOT, "--[no-]container-remap-root", err, sizeof(err));
		break;
	case OPT_NAME:
		rc = phpc_args_set_name(&phpc.args, optarg, err, sizeof(err));
		break;
	case OPT_SAVE:
		rc = phpc_args_set_save(&phpc.args, optarg, err, sizeof(err));
		break;
	case OPT_UNSHARE:
		rc = phpc_args_set_unshare(&phpc.args, optarg, err, sizeof(err));
		break;
	default:
		snprintf(err, sizeof(err), "--%s: unknown option", option_name(val));
		rc = -1;
	}
	if (rc < 0)
		slurm_error(PHPC_NAME ": %s", err[0] ? err : strerror(errno));
	return rc;
}

/* The environment forms: ours first, then pyxis's, so job scripts move over unchanged. */
struct env_option {
	const char *suffix; /* after PODMAN_HPC_ / PYXIS_ */
	int val;            /* option for a value; for a flag, the "yes" option */
	int no_val;         /* for a flag: the "no" option; 0 for valued options */
	int ours_only;      /* not a pyxis option: no PYXIS_ form */
};

static const struct env_option env_options[] = {
	{ "CONTAINER_IMAGE", OPT_IMAGE, 0, 0 },
	{ "CONTAINER_MOUNTS", OPT_MOUNTS, 0, 0 },
	{ "CONTAINER_WORKDIR", OPT_WORKDIR, 0, 0 },
	{ "CONTAINER_ENV", OPT_ENV, 0, 0 },
	{ "CONTAINER_WRITABLE", OPT_WRITABLE, OPT_READONLY, 0 },
	{ "CONTAINER_READONLY", OPT_READONLY, OPT_WRITABLE, 0 },
	{ "CONTAINER_MOUNT_HOME", OPT_MOUNT_HOME, OPT_NO_MOUNT_HOME, 0 },
	{ "CONTAINER_NAME", OPT_NAME, 0, 0 },
	{ "CONTAINER_SAVE", OPT_SAVE, 0, 0 },
	{ "CONTAINER_ENTRYPOINT", OPT_ENTRYPOINT, OPT_NO_ENTRYPOINT, 0 },
	{ "CONTAINER_REMAP_ROOT", OPT_REMAP_ROOT, OPT_NO_REMAP_ROOT, 0 },
	{ "CONTAINER_UNSHARE", OPT_UNSHARE, 0, 0 },
	{ "CONTAINER_HOOKS", OPT_HOOKS, 0, 1 },
	{ "CONTAINER_ENTRYPOINT_LOG", OPT_ENTRYPOINT_LOG, OPT_ENTRYPOINT_LOG, 0 },
	{ NULL, 0, 0, 0 },
};

static int already_given(int val)
{
	switch (val) {
	case OPT_IMAGE: return phpc.args.image != NULL;
	case OPT_MOUNTS: return phpc.args.n_mounts > 0;
	case OPT_WORKDIR: return phpc.args.workdir != NULL;
	case OPT_ENV: return phpc.args.n_env_names > 0;
	case OPT_WRITABLE: case OPT_READONLY: return phpc.args.writable != PHPC_UNSET;
	case OPT_MOUNT_HOME: return phpc.args.mount_home != PHPC_UNSET;
	case OPT_NAME: return phpc.args.name != NULL;
	case OPT_SAVE: return phpc.args.save != NULL;
	case OPT_UNSHARE: return phpc.args.unshare != NULL;
	case OPT_ENTRYPOINT: return phpc.args.entrypoint != PHPC_UNSET;
	case OPT_REMAP_ROOT: return phpc.args.remap_root != PHPC_UNSET;
	case OPT_ENTRYPOINT_LOG: return phpc.args.entrypoint_log;
	case OPT_HOOKS: return phpc.args.hooks != NULL;
	default: return 0;
	}
}

static int lookup_env(spank_t sp, int remote, const char *name, char *buf, size_t len)
{
	const char *v;

	if (remote)
		return spank_getenv(sp, name, buf, (int)len) == ESPANK_SUCCESS ? 0 : -1;
	v = getenv(name);
	if (v == NULL || strlen(v) >= len)
		return -1;
	memcpy(buf, v, strlen(v) + 1);
	return 0;
}

int phpc_apply_env_options(spank_t sp, int remote)
{
	static const char *const prefixes[] = { "PODMAN_HPC_", "PYXIS_", NULL };
	char name[64], value[8192];
	const struct env_option *e;
	int i, yes;

	for (e = env_options; e->suffix; e++) {
		if (already_given(e->val))
			continue;
		for (i = 0; prefixes[i] && !(i > 0 && e->ours_only); i++) {
			snprintf(name, sizeof(name), "%s%s", prefixes[i], e->suffix);
			if (lookup_env(sp, remote, name, value, sizeof(value)) < 0 || value[0] == '\0')
				continue;
			if (e->no_val == 0) {
				if (on_option(e->val, value, remote) < 0)
					return -1;
			} else {
				yes = !(strcmp(value, "0") == 0 || strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0);
				if (!yes && e->no_val == e->val)
					break; /* an on-only option, off: nothing to do */
				if (on_option(yes ? e->val : e->no_val, NULL, remote) < 0)
					return -1;
			}
			break;
		}
	}
	return 0;
}

static int load_config(int ac, char **av)
{
	char err[512];

	phpc_config_defaults(&phpc.cfg);
	if (phpc_config_parse(&phpc.cfg, ac, av, err, sizeof(err)) < 0) {
		slurm_error(PHPC_NAME ": %s; fix the podman-hpc line in plugstack.conf", err);
		return -1;
	}
	return 0;
}

/* The Slurm loading us is the release we were built for (version.h). */
static int check_slurm_version(spank_t sp)
{
	char *major = NULL, *minor = NULL, err[512];

	/* Where Slurm does not say (no such item in this context), there is
	 * nothing to check against. */
	if (spank_get_item(sp, S_SLURM_VERSION_MAJOR, &major) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_SLURM_VERSION_MINOR, &minor) != ESPANK_SUCCESS)
		return 0;
	if (phpc_slurm_version_check(major, minor, SLURM_VERSION_NUMBER, err, sizeof(err)) < 0) {
		slurm_error("%s", err);
		return -1;
	}
	return 0;
}

/* Slurm's own loader compares the plugin_version that SPANK_PLUGIN exports
 * with its release and, on a mismatch, refuses the plugin in words of its own
 * ("Incompatible Slurm plugin ... version") before any callback runs, so
 * check_slurm_version() never gets to speak. This says which releases and the
 * fix, on stderr, as the plugin is loaded (srun, sbatch and salloc print it;
 * slurmd's and slurmstepd's stderr is their log), through the running
 * Slurm's slurm_api_version() (version.h). Nothing is said where that is
 * not there (a test program) or the releases match. */
__attribute__((constructor)) static void warn_at_load(void)
{
	long (*api_version)(void);
	char err[512];

	*(void **)&api_version = dlsym(RTLD_DEFAULT, "slurm_api_version");
	if (api_version == NULL)
		return;
	if (phpc_slurm_api_check((unsigned long)api_version(), SLURM_VERSION_NUMBER, err, sizeof(err)) < 0)
		fprintf(stderr, "%s\n", err);
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();
	char pyxis[256];
	size_t i;

	if (check_slurm_version(sp) < 0)
		return -1;
	if (load_config(ac, av) < 0)
		return -1;
	phpc_args_init(&phpc.args);
	/* Options must be registered here (not through a static spank_options
	 * table) for sbatch/salloc to accept them. */
	if (ctx != S_CTX_LOCAL && ctx != S_CTX_REMOTE && ctx != S_CTX_ALLOCATOR)
		return 0;
	if (ctx == S_CTX_ALLOCATOR && !phpc.cfg.sbatch_support)
		return 0;
	if (phpc_pyxis_loaded(pyxis, sizeof(pyxis))) {
		slurm_error(PHPC_NAME ": %s (pyxis) is loaded here too, and it and podman-hpc both provide "
				      "--container-image and the other --container-* options: load one of them in "
				      "plugstack.conf (docs/admin-guide.md: Moving a site from pyxis)",
			    pyxis);
		return -1;
	}
	for (i = 0; options[i].name; i++) {
		if (spank_option_register(sp, &options[i]) != ESPANK_SUCCESS) {
			slurm_error(PHPC_NAME ": couldn't register option --%s", options[i].name);
			return -1;
		}
	}
	return 0;
}

/* In srun, what can fail before the job starts: a mount source that does
 * not exist, a save path that is a directory (phpc_args_check_local). */
static int check_before_job(void)
{
	char err[512];

	if (phpc.args.image == NULL && phpc.args.name == NULL)
		return 0;
	if (phpc_args_check_local(&phpc.args, err, sizeof(err)) < 0) {
		slurm_error(PHPC_NAME ": %s", err);
		return -1;
	}
	return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	switch (spank_context()) {
	case S_CTX_LOCAL:
		/* The digest is waited for in local_user_init, once the job is
		 * allocated: srun does not wait for the registry first. */
		if (phpc_apply_env_options(sp, 0) < 0 || check_before_job() < 0)
			return -1;
		return phpc_pin_start(sp);
	case S_CTX_ALLOCATOR:
		/* The job's environment is settled at submission. */
		if (phpc_apply_env_options(sp, 0) < 0 || phpc_pin_start(sp) < 0)
			return -1;
		return phpc_pin_finish(sp, 1);
	case S_CTX_REMOTE:
		if (phpc_apply_env_options(sp, 1) < 0)
			return -1;
		phpc_stepd_apply_pin(sp);
		return phpc_stepd_post_opt(sp);
	default:
		return 0;
	}
}

int slurm_spank_local_user_init(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	/* srun merges its environment into the step's after this callback. An
	 * srun allocation's prolog has started already: no prefetch. */
	return spank_context() == S_CTX_LOCAL ? phpc_pin_finish(sp, 0) : 0;
}

int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	return spank_context() == S_CTX_REMOTE ? phpc_stepd_user_init(sp) : 0;
}

int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	return spank_context() == S_CTX_REMOTE ? phpc_stepd_task_init_privileged(sp) : 0;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	return spank_context() == S_CTX_REMOTE ? phpc_stepd_task_init(sp) : 0;
}

int slurm_spank_task_exit(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	return spank_context() == S_CTX_REMOTE ? phpc_stepd_task_exit(sp) : 0;
}

int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
	char err[512];

	if (spank_context() != S_CTX_JOB_SCRIPT)
		return 0;
	/* Never a failure: a failed prolog drains the node (prolog.c). */
	phpc_config_defaults(&phpc.cfg);
	if (phpc_config_parse(&phpc.cfg, ac, av, err, sizeof(err)) < 0) {
		slurm_info(PHPC_NAME ": job prolog: %s; fix the podman-hpc line in plugstack.conf", err);
		return 0;
	}
	return phpc_job_prolog(sp);
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
	char err[512];

	if (spank_context() != S_CTX_JOB_SCRIPT)
		return 0;
	/* In a process of its own: init may not have run there (config.h).
	 * Never a failure: a failed epilog drains the node. */
	phpc_config_defaults(&phpc.cfg);
	if (phpc_config_parse(&phpc.cfg, ac, av, err, sizeof(err)) < 0) {
		slurm_info(PHPC_NAME ": job epilog: %s; fix the podman-hpc line in plugstack.conf", err);
		return 0;
	}
	return phpc_job_epilog(sp);
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	if (spank_context() == S_CTX_REMOTE)
		phpc_stepd_exit(sp);
	phpc_pin_abandon();
	phpc_args_free(&phpc.args);
	return 0;
}
