/*
 * stepd.c - the slurmstepd side: asks the node's podman-hpcd for the step's
 * container, then joins every task into it just before exec.
 *
 * The connection is made as root in init_post_opt, so that the daemon sees
 * slurmstepd's credentials on the socket; it stays open for the step, in
 * slurmstepd only (each task closes its copy): the daemon removes the
 * container when slurmstepd closes it (or dies). Each task ends with no
 * capability, no_new_privs and a seccomp filter (harden.h).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/nsfs.h>
#include <slurm/spank.h>

#include "account.h"
#include "cancel.h"
#include "client.h"
#include "harden.h"
#include "podman_hpc.h"
#include "proto.h"
#include "pytorch.h"
#include "request.h"
#include "savewait.h"

/* The step wants a container: an image, or a named container to attach to. */
static int wants_container(void)
{
	return phpc.args.image != NULL || phpc.args.name != NULL;
}

static void keep_error(const char *fmt, const char *detail)
{
	if (phpc.error[0] == '\0')
		snprintf(phpc.error, sizeof(phpc.error), fmt, detail);
}

static long long monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the daemon has something to say, or deadline passes, or the
 * job has ended meanwhile (cancel.h: Slurm holds a starting step's kill).
 * Returns 0 when the daemon's answer can be read, -1 after keeping the
 * reason. job 0: no check. */
/* The time between two asks whether the job ended (phpc_cancel_interval_ms). */
static int cancel_every_ms = PHPC_CANCEL_CHECK_MS;

static int await_daemon(uint32_t job, long long deadline)
{
	struct pollfd p = { .fd = phpc.daemon_fd, .events = POLLIN };
	char squeue[PATH_MAX];
	long long left;
	int n;

	if (phpc.cfg.squeue[0] != '\0')
		snprintf(squeue, sizeof(squeue), "%s", phpc.cfg.squeue);
	else if (phpc_default_squeue(squeue, sizeof(squeue)) < 0)
		squeue[0] = '\0';
	if (job != 0 && access(squeue, X_OK) < 0) {
		/* For the admin (slurmd's log): a cancelled step then waits. */
		slurm_info(PHPC_NAME ": cannot run squeue \"%s\" (%s): a step cancelled while its container is being made waits for it; set squeue= in plugstack.conf",
			   squeue, strerror(errno));
		job = 0;
	}
	for (;;) {
		left = deadline - monotonic_ms();
		if (left <= 0)
			return 0; /* phpc_recv then times out, saying so */
		n = poll(&p, 1, (int)(left < cancel_every_ms ? left : cancel_every_ms));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return 0;
		if (n == 0 && job != 0 && phpc_job_ended(squeue, job, phpc.daemon_fd, PHPC_CANCEL_ASK_MS)) {
			keep_error("the job ended (cancelled, or out of its time) while its container was being made; no task ran%s", "");
			return -1;
		}
	}
}

/* Sends m and waits for the daemon's final answer; PROGRESS lines go to
 * srun's output. The file descriptors sent with an OK answer (the
 * container's namespaces) are kept in phpc.ns_fds. Returns 0 on OK, -1 after
 * keeping the reason. */
static int request(struct phpc_msg *m, struct phpc_msg *reply, uint32_t job)
{
	int fds[PHPC_MAX_NS];
	size_t n_fds, i;

	if (phpc_send(phpc.daemon_fd, m) < 0) {
		keep_error("couldn't send a request to podman-hpcd: %s", strerror(errno));
		return -1;
	}
	for (;;) {
		phpc_msg_free(reply);
		n_fds = 0;
		if (await_daemon(job, monotonic_ms() + (long long)phpc.cfg.timeout * 1000) < 0)
			return -1;
		if (phpc_recv(phpc.daemon_fd, reply, phpc.cfg.timeout * 1000, fds, PHPC_MAX_NS, &n_fds) < 0) {
			keep_error("no answer from podman-hpcd: %s; see the daemon's log on this node", strerror(errno));
			for (i = 0; i < n_fds; i++)
				close(fds[i]);
			return -1;
		}
		for (i = 0; i < n_fds; i++) {
			if (reply->type == PHPC_MSG_OK && phpc.n_ns < PHPC_MAX_NS)
				phpc.ns_fds[phpc.n_ns++] = fds[i];
			else
				close(fds[i]);
		}
		switch (reply->type) {
		case PHPC_MSG_PROGRESS:
			/* To srun's output: a long pull should not look like a hang. */
			slurm_spank_log(PHPC_NAME ": %s", phpc_msg_get(reply, "message") ?: "");
			continue;
		case PHPC_MSG_OK:
			return 0;
		case PHPC_MSG_ERROR:
			keep_error("%s", phpc_msg_get(reply, "message") ?: "podman-hpcd failed without saying why");
			return -1;
		default:
			keep_error("podman-hpcd sent an unexpected message; is the daemon the same version as the plugin?%s", "");
			return -1;
		}
	}
}

/* As root, once per step per node: connect, so that the daemon sees
 * slurmstepd's credentials. The request itself (which carries the plugin's
 * version) goes in user_init. */
int phpc_stepd_post_opt(spank_t sp)
{
	char err[512];

	(void)sp;
	if (!wants_container())
		return 0;
	phpc.daemon_fd = phpc_connect(phpc.cfg.socket, err, sizeof(err));
	if (phpc.daemon_fd < 0) {
		keep_error("%s", err);
		return 0; /* reported from the task, where srun shows it */
	}
	return 0;
}

/* The step's variables the daemon reads (pkg/hooks' modules: the GPUs Slurm
 * allocated, PMIx's directories; the job's HOME); sent as "jobenv"
 * NAME=VALUE when set. */
static const char *const job_env_names[] = {
	"SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
	"GPU_DEVICE_ORDINAL", "PMIX_SERVER_TMPDIR",
	/* The home --container-mount-home binds: the one the job runs with. */
	"HOME", NULL,
};
#define N_JOB_ENV (sizeof(job_env_names) / sizeof(job_env_names[0]))

/* The step's first node saves (the path is usually on a shared file
 * system). */
static int saves_here(spank_t sp)
{
	uint32_t nodeid = 1;

	return spank_get_item(sp, S_JOB_NODEID, &nodeid) == ESPANK_SUCCESS && nodeid == 0;
}

/* The CONTAINER request (request.h), from the step's spank items; auth is
 * the user's auth file or NULL. */
static int build_container_request(spank_t sp, struct phpc_msg *m, const char *auth)
{
	struct phpc_request r = {
		.plugin_version = PHPC_VERSION, .args = &phpc.args, .cfg = &phpc.cfg, .auth = auth,
	};
	char *jobenv[N_JOB_ENV] = { NULL };
	struct phpc_account acct;
	gid_t *sup = NULL;
	int n_sup = 0;
	char value[4096];
	uid_t uid;
	gid_t gid;
	size_t i, n = 0;
	int rv = -1, argc = 0;
	char **argv = NULL;

	if (spank_get_item(sp, S_JOB_ID, &r.job) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_STEPID, &r.step) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, &gid) != ESPANK_SUCCESS) {
		errno = EINVAL;
		return -1;
	}
	r.uid = (uint32_t)uid;
	r.gid = (uint32_t)gid;
	/* The user and the job's groups by name, through this node's NSS: the
	 * daemon cannot (static Go), and the groups must be Slurm's. */
	if (spank_get_item(sp, S_JOB_SUPPLEMENTARY_GIDS, &sup, &n_sup) != ESPANK_SUCCESS || n_sup < 0) {
		sup = NULL;
		n_sup = 0;
	}
	if (phpc_account_resolve(&acct, uid, gid, sup, (size_t)n_sup) < 0)
		return -1;
	phpc_account_to_request(&acct, &r);
	r.saves = saves_here(sp);
	if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) == ESPANK_SUCCESS && argc > 0)
		r.command = argv[0];
	for (i = 0; job_env_names[i]; i++) {
		if (spank_getenv(sp, job_env_names[i], value, sizeof(value)) != ESPANK_SUCCESS)
			continue;
		if (asprintf(&jobenv[n], "%s=%s", job_env_names[i], value) < 0) {
			jobenv[n] = NULL;
			goto out;
		}
		n++;
	}
	r.jobenv = (const char *const *)jobenv;
	rv = phpc_request_encode(m, &r);
out:
	for (i = 0; i < n; i++)
		free(jobenv[i]);
	phpc_account_free(&acct);
	return rv;
}

/* The user's registry credentials, read with the user's own permissions
 * (user_init runs with the user's euid; the daemon never reads a user's
 * files): REGISTRY_AUTH_FILE, else containers' auth.json under
 * XDG_RUNTIME_DIR or ~/.config, else Docker's config.json. Returns a
 * malloc'd copy of the file, or NULL when there is none. */
static char *read_file_small(const char *path)
{
	struct stat st;
	char *data = NULL;
	ssize_t n;
	int fd;

	/* O_NONBLOCK: a FIFO in its place opens at once (and is skipped as
	 * not a regular file) instead of holding slurmstepd until a writer
	 * comes. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size < 256 * 1024 &&
	    (data = calloc(1, (size_t)st.st_size + 1)) != NULL) {
		n = read(fd, data, (size_t)st.st_size);
		if (n != st.st_size || memchr(data, '\0', (size_t)n) != NULL) {
			free(data);
			data = NULL;
		}
	}
	close(fd);
	return data;
}

/* Reads DIR/SUFFIX where DIR is the value of the job's variable var. */
static char *read_under(spank_t sp, const char *var, const char *suffix)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int n;

	if (spank_getenv(sp, var, dir, sizeof(dir)) != ESPANK_SUCCESS || dir[0] != '/')
		return NULL;
	n = snprintf(path, sizeof(path), "%s%s", dir, suffix);
	if (n < 0 || n >= (int)sizeof(path))
		return NULL;
	return read_file_small(path);
}

static char *read_auth_file(spank_t sp)
{
	const struct phpc_auth_file *a;
	char *data;

	for (a = phpc_auth_files; a->var != NULL; a++)
		if ((data = read_under(sp, a->var, a->suffix)) != NULL)
			return data;
	return NULL;
}

/* Keeps the daemon's answer: working directory and the image's environment. */
static int keep_container(const struct phpc_msg *reply)
{
	const char *k, *v;
	size_t off = 0;
	char **env;

	const char *log = phpc_msg_get(reply, "entrypoint_log");

	/* --container-entrypoint-log: the entrypoint's output, line by line. */
	while (log != NULL && *log != '\0') {
		const char *nl = strchr(log, '\n');
		int len = nl ? (int)(nl - log) : (int)strlen(log);
		slurm_spank_log(PHPC_NAME ": entrypoint: %.*s", len, log);
		log = nl ? nl + 1 : NULL;
	}
	/* Only a daemon that made the tasks a user namespace of their own says so. */
	phpc.own_userns = phpc_msg_get(reply, "own_userns") != NULL && strcmp(phpc_msg_get(reply, "own_userns"), "1") == 0;
	free(phpc.workdir);
	phpc.workdir = strdup(phpc_msg_get(reply, "workdir") ?: "/");
	if (phpc.workdir == NULL)
		return -1;
	while (phpc_msg_next(reply, &off, &k, &v)) {
		if (strcmp(k, "env") != 0 || strchr(v, '=') == NULL)
			continue;
		env = realloc(phpc.env, (phpc.n_env + 2) * sizeof(*env));
		if (env == NULL)
			return -1;
		phpc.env = env;
		if ((phpc.env[phpc.n_env] = strdup(v)) == NULL)
			return -1;
		phpc.env[++phpc.n_env] = NULL;
	}
	return 0;
}

/* Where a batch script's srun steps find the options sbatch got: Slurm's
 * variable for each (SLURM_SPANK_OPTION_<plugin>_<option>), and ours and
 * pyxis's environment forms. */
static const char *const inherited_prefixes[] = {
	"SLURM_SPANK__SLURM_SPANK_OPTION_podman_hpc_container_", "PODMAN_HPC_CONTAINER_", "PYXIS_CONTAINER_", NULL,
};

/* Replaces, in the job's environment, each variable of an inherited form of
 * option (suffix: "image", "mounts", "save") that is set, with value. */
static void export_inherited(spank_t sp, const char *suffix, const char *value)
{
	char name[128], probe[8];
	size_t i, j;
	int n;

	for (i = 0; inherited_prefixes[i]; i++) {
		n = snprintf(name, sizeof(name), "%s%s", inherited_prefixes[i], suffix);
		if (n < 0 || n >= (int)sizeof(name))
			continue;
		if (i > 0) /* the environment forms are upper case */
			for (j = strlen(inherited_prefixes[i]); name[j]; j++)
				name[j] = (char)toupper((unsigned char)name[j]);
		if (spank_getenv(sp, name, probe, sizeof(probe)) == ESPANK_ENV_NOEXIST)
			continue;
		if (spank_setenv(sp, name, value, 1) != ESPANK_SUCCESS)
			slurm_info(PHPC_NAME ": couldn't pass %s on to the batch script's steps", name);
	}
}

/* A batch script's srun steps inherit sbatch's options as typed, and run
 * where the script is in the container (often /): the resolved paths go
 * in their place, so that ./app.sqsh stays the job directory's. */
static void export_resolved(spank_t sp)
{
	char *mounts = NULL, *p;
	size_t i, len = 1;

	if (phpc.args.image != NULL && phpc.args.image[0] == '/')
		export_inherited(sp, "image", phpc.args.image);
	if (phpc.args.save != NULL)
		export_inherited(sp, "save", phpc.args.save);
	for (i = 0; i < phpc.args.n_mounts; i++)
		len += strlen(phpc.args.mounts[i].src) + strlen(phpc.args.mounts[i].dst) +
		       (phpc.args.mounts[i].flags ? strlen(phpc.args.mounts[i].flags) : 0) + 3;
	if (phpc.args.n_mounts == 0 || (mounts = calloc(1, len)) == NULL)
		return;
	for (i = 0, p = mounts; i < phpc.args.n_mounts; i++) {
		const struct phpc_mount *m = &phpc.args.mounts[i];

		p += sprintf(p, "%s%s:%s%s%s", i ? "," : "", m->src, m->dst, m->flags ? ":" : "", m->flags ? m->flags : "");
	}
	export_inherited(sp, "mounts", mounts);
	free(mounts);
}

/* The user's relative paths, in the job's working directory: slurmstepd
 * is in it (as the user) when it calls user_init. Returns 0, or -1 after
 * keeping the reason. */
static int resolve_paths(spank_t sp)
{
	char cwd[PATH_MAX], err[512];
	uint32_t step = 0;

	if (getcwd(cwd, sizeof(cwd)) == NULL) {
		keep_error("couldn't find the job's working directory: %s", strerror(errno));
		return -1;
	}
	if (phpc_args_resolve(&phpc.args, cwd, err, sizeof(err)) < 0) {
		keep_error("%s", err);
		return -1;
	}
	if (spank_get_item(sp, S_JOB_STEPID, &step) == ESPANK_SUCCESS && step == PHPC_BATCH_STEP)
		export_resolved(sp);
	return 0;
}

/* Whether the job's partition runs containers (partitions=, a pilot's):
 * if not, the reason is kept for the tasks. Slurm sets SLURM_JOB_PARTITION
 * in the job's environment, over any value of the user's. */
static int partition_enabled(spank_t sp)
{
	char part[256] = "";

	if (phpc.cfg.partitions[0] == '\0')
		return 1;
	spank_getenv(sp, "SLURM_JOB_PARTITION", part, sizeof(part));
	if (phpc_config_partition_enabled(&phpc.cfg, part))
		return 1;
	if (strchr(part, ',') != NULL)
		snprintf(phpc.error, sizeof(phpc.error),
			 "containers are enabled only on partitions %.256s, and this job may run on any of %.128s (the step cannot tell which): submit to one of those",
			 phpc.cfg.partitions, part);
	else
		snprintf(phpc.error, sizeof(phpc.error),
			 "containers are not enabled on partition %.64s (only on %.256s, for now): submit to one of those, or ask your admin",
			 part[0] ? part : "(unknown)", phpc.cfg.partitions);
	return 0;
}

int phpc_stepd_user_init(spank_t sp)
{
	struct phpc_msg req, reply;
	char *auth = NULL;
	uint32_t job = 0, nnodes = 0;

	if (!wants_container() || phpc.daemon_fd < 0 || phpc.error[0] != '\0')
		return 0;
	spank_get_item(sp, S_JOB_ID, &job);
	if (spank_get_item(sp, S_JOB_NNODES, &nnodes) == ESPANK_SUCCESS)
		cancel_every_ms = phpc_cancel_interval_ms(nnodes);
	if (!partition_enabled(sp)) {
		close(phpc.daemon_fd);
		phpc.daemon_fd = -1;
		return 0;
	}
	phpc_msg_init(&req, PHPC_MSG_CONTAINER);
	phpc_msg_init(&reply, 0);
	auth = read_auth_file(sp);
	if (resolve_paths(sp) < 0) {
		/* kept */
	} else if (build_container_request(sp, &req, auth) < 0) {
		keep_error("couldn't build the container request: %s", strerror(errno));
	} else if (request(&req, &reply, job) == 0) {
		if (phpc.n_ns == 0)
			keep_error("podman-hpcd sent no namespace for the container%s; is the daemon the same version as the plugin?", "");
		else if (keep_container(&reply) < 0)
			keep_error("couldn't keep the container's settings: %s", strerror(errno));
		else if (phpc.args.save != NULL && saves_here(sp))
			phpc_savewait_prepare();
	} else if (phpc.n_ns == 0) {
		/* No container: the connection goes now, and with it what the
		 * daemon still does for the step (a pull nobody waits for). */
		close(phpc.daemon_fd);
		phpc.daemon_fd = -1;
	}
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	phpc_msg_free(&req);
	phpc_msg_free(&reply);
	return 0; /* errors here are dropped by Slurm: reported per task instead */
}

static void close_ns(void)
{
	size_t i;

	for (i = 0; i < phpc.n_ns; i++)
		close(phpc.ns_fds[i]);
	phpc.n_ns = 0;
}

/* In the forked task, as root, before Slurm drops privileges. First, the
 * plugin's root connection to the daemon goes: it is slurmstepd's (for END
 * and the step's end), never the task's, whose program must not find it
 * (it is close-on-exec too, as the namespaces are). Joining now would make
 * Slurm's chdir to the job's directory (which comes after this callback)
 * look for it inside the container and fail noisily; so the task keeps,
 * across Slurm's setuid, just the permitted capabilities it needs to join
 * in task_init, which runs after that chdir. */
int phpc_stepd_task_init_privileged(spank_t sp)
{
	uint32_t task = 0;

	if (phpc.daemon_fd >= 0)
		close(phpc.daemon_fd);
	phpc.daemon_fd = -1;
	if (!wants_container())
		return 0;
	if (phpc.error[0] == '\0' && phpc.n_ns == 0)
		keep_error("no container for this step%s; see the node's podman-hpcd log", "");
	if (phpc.error[0] == '\0' && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		keep_error("couldn't keep the capabilities to join the container: %s", strerror(errno));
	if (phpc.error[0] != '\0') {
		/* Once per node, not once per task: every task fails alike. */
		if (spank_get_item(sp, S_TASK_ID, &task) != ESPANK_SUCCESS || task == 0)
			slurm_error(PHPC_NAME ": %s", phpc.error);
		close_ns();
		return -1;
	}
	return 0;
}

/* Whether fd is a user namespace: the container remaps root. */
static int is_userns(int fd)
{
	return ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWUSER;
}

/* As the job user: join the container's namespaces, in the daemon's order
 * (the mount namespace last), with the two capabilities setns(2) needs and
 * the one that empties the bounding set, then drop every capability for
 * good (harden.h). The namespaces not sent are the host's, shared with the
 * container, so Slurm's signals, accounting and PMI work unchanged. Every
 * container has a user namespace that maps the job user's one id: to
 * itself, or to 0 with --container-remap-root. Sets *remapped when the task
 * is root in the one it joined (and was not root before).
 *
 * A remap-root task keeps the capabilities it got by joining, when the
 * user namespace is the tasks' own, not the container's (own_userns):
 * there they reach only the tasks' own namespaces (a copy of the
 * container's mount namespace whose every mount is locked, and with
 * --container-unshare=uts a UTS namespace), as enroot's root holds them
 * under pyxis. Anywhere else, and on any failure, it keeps none. */
static int join_container(int *remapped)
{
	const uint64_t need = (1ULL << CAP_SYS_ADMIN) | (1ULL << CAP_SYS_CHROOT) | (1ULL << CAP_SETPCAP);
	int rv = -1, saved, userns = 0;
	uid_t before = getuid();
	size_t i;

	*remapped = 0;
	if (phpc_set_caps(need, need) < 0) {
		slurm_error(PHPC_NAME ": couldn't raise the capabilities to join the container: %s", strerror(errno));
		goto out;
	}
	for (i = 0; i < phpc.n_ns; i++) {
		if (is_userns(phpc.ns_fds[i]))
			userns = 1;
		if (setns(phpc.ns_fds[i], 0) < 0) {
			slurm_error(PHPC_NAME ": couldn't join the container's namespaces: %s", strerror(errno));
			goto out;
		}
	}
	*remapped = userns && before != 0 && getuid() == 0;
	if (*remapped && phpc.own_userns) {
		if (phpc_keep_userns_privileges() < 0) {
			slurm_error(PHPC_NAME ": couldn't set the task's privileges: %s", strerror(errno));
			goto out;
		}
		close_ns();
		return 0;
	}
	rv = 0;
out:
	saved = errno;
	/* Else the task keeps no capability. In a user namespace setns gave
	 * it every capability there (and a full bounding set): those go too. */
	if (phpc_drop_privileges() < 0) {
		slurm_error(PHPC_NAME ": couldn't drop the task's capabilities: %s", strerror(errno));
		phpc_set_caps(0, 0);
		rv = -1;
	}
	close_ns();
	errno = saved;
	return rv;
}

static int is_host_wins(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < phpc.args.n_env_names; i++)
		if (strlen(phpc.args.env_names[i]) == len && strncmp(phpc.args.env_names[i], name, len) == 0)
			return 1;
	return 0;
}

/* In the task, as the job user, just before exec: the container, the
 * working directory, the image's environment (pyxis's precedence: the
 * image's value wins unless --container-env names the variable and the host
 * has it), and last the seccomp filter (harden.h). */
/* Whether the image's environment sets name. */
static int image_sets(const char *name)
{
	size_t i, len = strlen(name);

	for (i = 0; i < phpc.n_env; i++)
		if (strncmp(phpc.env[i], name, len) == 0 && phpc.env[i][len] == '=')
			return 1;
	return 0;
}

/* The host's locale variables: an image without the host's locales makes
 * perl and others print "Setting locale failed"; as under pyxis, they pass
 * in only when --container-env names them. */
static const char *const host_locale_vars[] = { "LANG", "LANGUAGE", "LC_ALL", NULL };

/* Slurm's PMIx server says which of its components to use; a container's
 * PMIx client reads them as MCA variables (as enroot's PMI hook sets). */
static const char *const pmix_mca_aliases[][2] = {
	{ "PMIX_SECURITY_MODE", "PMIX_MCA_psec" },
	{ "PMIX_GDS_MODULE", "PMIX_MCA_gds" },
	{ "PMIX_PTL_MODULE", "PMIX_MCA_ptl" },
	{ NULL, NULL },
};

/* The task's variables from the host, after the image's: the locale ones
 * dropped unless asked for, PMIx's components also as MCA variables. */
static int set_host_env(spank_t sp)
{
	char value[4096], probe[8];
	size_t i;

	for (i = 0; host_locale_vars[i]; i++) {
		const char *n = host_locale_vars[i];

		if (is_host_wins(n, strlen(n)) || image_sets(n))
			continue;
		if (spank_unsetenv(sp, n) != ESPANK_SUCCESS) {
			slurm_error(PHPC_NAME ": couldn't unset %s for the task", n);
			return -1;
		}
	}
	for (i = 0; pmix_mca_aliases[i][0]; i++) {
		if (spank_getenv(sp, pmix_mca_aliases[i][0], value, sizeof(value)) != ESPANK_SUCCESS ||
		    spank_getenv(sp, pmix_mca_aliases[i][1], probe, sizeof(probe)) != ESPANK_ENV_NOEXIST)
			continue; /* unset, or the job's own value stays */
		if (spank_setenv(sp, pmix_mca_aliases[i][1], value, 0) != ESPANK_SUCCESS) {
			slurm_error(PHPC_NAME ": couldn't set %s for the task", pmix_mca_aliases[i][1]);
			return -1;
		}
	}
	return 0;
}

/* Sets name to value for the task unless the image sets it, or
 * --container-env names it and the host has it: what the container says
 * wins over the host, as the image's variables do. */
static int set_derived(spank_t sp, const char *name, const char *value)
{
	char probe[8];

	if (image_sets(name) ||
	    (is_host_wins(name, strlen(name)) && spank_getenv(sp, name, probe, sizeof(probe)) != ESPANK_ENV_NOEXIST))
		return 0;
	if (spank_setenv(sp, name, value, 1) != ESPANK_SUCCESS) {
		slurm_error(PHPC_NAME ": couldn't set %s for the task", name);
		return -1;
	}
	return 0;
}

/* An image with PyTorch (PYTORCH_VERSION) gets, in every task, the
 * variables torch.distributed reads, from Slurm's, as under pyxis (enroot's
 * PyTorch hook): RANK, LOCAL_RANK, WORLD_SIZE, and the rendezvous on the
 * step's first node at a port derived from the job id. */
static int set_pytorch_env(spank_t sp)
{
	static const char *const from[][2] = {
		{ "RANK", "SLURM_PROCID" }, { "LOCAL_RANK", "SLURM_LOCALID" }, { "WORLD_SIZE", "SLURM_NTASKS" }, { NULL, NULL },
	};
	char value[4096], host[256], port[16];
	uint32_t job = 0;
	size_t i;

	if (!image_sets("PYTORCH_VERSION"))
		return 0;
	for (i = 0; from[i][0]; i++)
		if (spank_getenv(sp, from[i][1], value, sizeof(value)) == ESPANK_SUCCESS && set_derived(sp, from[i][0], value) < 0)
			return -1;
	if (spank_getenv(sp, "SLURM_STEP_NODELIST", value, sizeof(value)) == ESPANK_SUCCESS &&
	    phpc_first_host(value, host, sizeof(host)) == 0 && set_derived(sp, "MASTER_ADDR", host) < 0)
		return -1;
	if (spank_get_item(sp, S_JOB_ID, &job) == ESPANK_SUCCESS) {
		snprintf(port, sizeof(port), "%u", phpc_pytorch_port(job));
		if (set_derived(sp, "MASTER_PORT", port) < 0)
			return -1;
	}
	return 0;
}

int phpc_stepd_task_init(spank_t sp)
{
	char name[256], host[8];
	const char *eq;
	size_t i, len;
	int remapped;

	if (!wants_container())
		return 0;
	phpc_savewait_open(phpc.cfg.socket);
	if (join_container(&remapped) < 0)
		return -1;
	if (chdir(phpc.workdir) < 0) {
		/* "PATH: No such file or directory", pyxis's words. */
		slurm_error(PHPC_NAME ": couldn't enter the container's working directory: %s: %s; set another with --container-workdir", phpc.workdir, strerror(errno));
		return -1;
	}
	for (i = 0; i < phpc.n_env; i++) {
		eq = strchr(phpc.env[i], '=');
		len = (size_t)(eq - phpc.env[i]);
		if (len == 0 || len >= sizeof(name))
			continue;
		memcpy(name, phpc.env[i], len);
		name[len] = '\0';
		if (is_host_wins(name, len) && spank_getenv(sp, name, host, sizeof(host)) != ESPANK_ENV_NOEXIST)
			continue;
		if (spank_setenv(sp, name, eq + 1, 1) != ESPANK_SUCCESS) {
			slurm_error(PHPC_NAME ": couldn't set %s for the task", name);
			return -1;
		}
	}
	if (set_host_env(sp) < 0 || set_pytorch_env(sp) < 0)
		return -1;
	if (phpc_savewait_fork(sp, phpc.args.save) < 0)
		return -1;
	/* An attached named container remaps root if it was made so: what
	 * counts is the identity in the user namespace joined, not this
	 * step's option. */
	if (phpc_seccomp_install(remapped || phpc.args.remap_root == 1) < 0) {
		slurm_error(PHPC_NAME ": couldn't install the task's seccomp filter: %s; is the kernel built with CONFIG_SECCOMP_FILTER?", strerror(errno));
		return -1;
	}
	return 0;
}

/* The daemon's lines for the user about the step's container, asked as the
 * node's last task exits (a writable root that filled up: the writes that
 * failed said only "No space left on device"). A daemon that does not know
 * the request answers an error, which says nothing to the user. */
static void show_notes(void)
{
	struct phpc_msg notes, reply;
	const char *key, *value;
	size_t off = 0;

	phpc_msg_init(&notes, PHPC_MSG_NOTES);
	phpc_msg_init(&reply, 0);
	if (request(&notes, &reply, 0) == 0) {
		while (phpc_msg_next(&reply, &off, &key, &value))
			if (strcmp(key, "message") == 0)
				slurm_error(PHPC_NAME ": %s", value);
	}
	phpc.error[0] = '\0';
	phpc_msg_free(&notes);
	phpc_msg_free(&reply);
}

/* In slurmstepd, as each task exits. When the last of the node's tasks has
 * exited, the daemon's notes about the container are shown, and the step
 * ends its container (END): when the step saves its container, the daemon
 * saves it first, unless the last task had it saved (savewait.h);
 * slurmstepd tells srun a task's exit after this callback, so srun returns
 * once the file is there. */
int phpc_stepd_task_exit(spank_t sp)
{
	struct phpc_msg end, reply;
	uint32_t tasks = 0;
	int rv = 0;

	if (phpc.daemon_fd < 0 || phpc.error[0] != '\0')
		return 0;
	if (spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &tasks) != ESPANK_SUCCESS || ++phpc.tasks_exited < tasks)
		return 0;
	show_notes();
	/* The step's container ends now, with its last task, before Slurm
	 * kills what is left in the step's cgroups and waits for it to be
	 * empty: its init is there, and a wait that finds anything sleeps a
	 * second before it looks again (a second added to every container
	 * step). A save the last task had made is not made again. */
	phpc_msg_init(&end, PHPC_MSG_END);
	phpc_msg_init(&reply, 0);
	/* A save at the job's end is still wanted: no check of the job. */
	if (request(&end, &reply, 0) < 0 && phpc.args.save != NULL && !phpc_savewait_asked()) {
		slurm_error(PHPC_NAME ": --container-save=%s: %s", phpc.args.save, phpc.error);
		rv = -1;
	}
	phpc_msg_free(&end);
	phpc_msg_free(&reply);
	return rv;
}

void phpc_stepd_exit(spank_t sp)
{
	size_t i;

	(void)sp;
	close_ns();
	/* Closing the connection tells the daemon the step is over. */
	if (phpc.daemon_fd >= 0)
		close(phpc.daemon_fd);
	phpc.daemon_fd = -1;
	for (i = 0; i < phpc.n_env; i++)
		free(phpc.env[i]);
	free(phpc.env);
	free(phpc.workdir);
	phpc.env = NULL;
	phpc.workdir = NULL;
	phpc.n_env = 0;
}
