/*
 * pin.c - one digest per job: srun and sbatch/salloc (as the user, before
 * anything starts) have the daemon's helper resolve the image's tag once
 * (podman-hpcd resolve, a process of its own: no Go runtime in srun) and put
 * the answer into the job's environment (pins.h); slurmstepd on every node
 * runs that digest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <slurm/spank.h>

#include "pin.h"
#include "pins.h"
#include "podman_hpc.h"

extern char **environ;

#define PINS_MAX 16384

/* Reads both pipes to their end (the helper writes a line to one of them). */
static void drain(int out_fd, char *out, size_t out_len, int err_fd, char *err, size_t err_len)
{
	struct pollfd p[2] = { { .fd = out_fd, .events = POLLIN }, { .fd = err_fd, .events = POLLIN } };
	size_t used[2] = { 0, 0 }, cap[2] = { out_len - 1, err_len - 1 };
	char *buf[2] = { out, err }, scratch[512];
	int open_fds = 2, i;
	ssize_t n;

	while (open_fds > 0) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (used[i] < cap[i])
				n = read(p[i].fd, buf[i] + used[i], cap[i] - used[i]);
			else
				n = read(p[i].fd, scratch, sizeof(scratch));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				open_fds--;
				continue;
			}
			if (used[i] < cap[i])
				used[i] += (size_t)n;
		}
	}
	out[used[0]] = '\0';
	err[used[1]] = '\0';
}

static void chomp(char *s)
{
	size_t n = strcspn(s, "\n");

	s[n] = '\0';
}

/* The helper of this process, from its start to its end (one per srun,
 * sbatch or salloc: one image). */
static struct {
	pid_t pid; /* 0: none running */
	int out_fd, err_fd;
} helper;

/* Starts the helper for image. Returns 0, or -1 when it could not be run
 * (errno). */
static int start_helper(const char *image)
{
	const char *job = getenv("SLURM_JOB_ID");
	char *argv[12];
	int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 }, i = 0, e;
	posix_spawn_file_actions_t fa;
	pid_t pid;

	argv[i++] = phpc.cfg.podman_hpcd;
	argv[i++] = "resolve";
	argv[i++] = "--socket";
	argv[i++] = phpc.cfg.socket;
	argv[i++] = "--config";
	argv[i++] = phpc.cfg.daemon_config;
	if (job != NULL && job[0] != '\0') {
		argv[i++] = "--job";
		argv[i++] = (char *)job;
	}
	argv[i++] = "--";
	argv[i++] = (char *)image;
	argv[i] = NULL;
	if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0)
		goto fail;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
	e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out_pipe[1]);
	close(err_pipe[1]);
	if (e != 0) {
		close(out_pipe[0]);
		close(err_pipe[0]);
		errno = e;
		return -1;
	}
	helper.pid = pid;
	helper.out_fd = out_pipe[0];
	helper.err_fd = err_pipe[0];
	return 0;
fail:
	for (i = 0; i < 2; i++) {
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
		if (err_pipe[i] >= 0)
			close(err_pipe[i]);
	}
	return -1;
}

/* Waits for the helper; returns its exit status (0: *pinned set, maybe
 * empty), or -1 when it could not be run (errno). err gets its error line. */
static int wait_helper(char *pinned, size_t plen, char *err, size_t elen)
{
	int status;
	pid_t pid = helper.pid;

	helper.pid = 0;
	drain(helper.out_fd, pinned, plen, helper.err_fd, err, elen);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	chomp(pinned);
	chomp(err);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		errno = ENOENT;
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The helper's message names the image as `resolve "IMAGE": CAUSE`; the
 * line srun prints names it once already. */
static const char *without_resolve_prefix(const char *msg, const char *image)
{
	size_t n = strlen(image);

	if (strncmp(msg, "resolve \"", 9) == 0 && strncmp(msg + 9, image, n) == 0 && strncmp(msg + 9 + n, "\": ", 3) == 0)
		return msg + 9 + n + 3;
	return msg;
}

/* A path names its content already; so does a digest; and a job that has
 * the image pinned keeps it. */
static int needs_pin(void)
{
	const char *image = phpc.args.image;
	char pinned[4096];

	if (image == NULL || image[0] == '/' || image[0] == '.' || strstr(image, "@sha256:") != NULL)
		return 0;
	if (phpc_pins_lookup(getenv(PHPC_PINS_ENV), image, pinned, sizeof(pinned)) == 0) {
		slurm_verbose(PHPC_NAME ": %s is %s for this job", image, pinned);
		return 0;
	}
	return 1;
}

static void cannot_run_helper(void)
{
	/* slurm_error: srun and sbatch do not show slurm_info. */
	slurm_error(PHPC_NAME ": note: couldn't run %s to pin --container-image=%s to one digest (%s): each node resolves the tag itself; ask your admin to set podman_hpcd= in plugstack.conf",
		    phpc.cfg.podman_hpcd, phpc.args.image, strerror(errno));
}

int phpc_pin_start(spank_t sp)
{
	(void)sp;
	if (helper.pid != 0 || !needs_pin())
		return 0;
	if (start_helper(phpc.args.image) < 0)
		cannot_run_helper();
	return 0;
}

int phpc_pin_finish(spank_t sp, int prefetch)
{
	const char *image = phpc.args.image, *list = getenv(PHPC_PINS_ENV), *msg;
	char pinned[4096] = "", err[1024] = "", *next = NULL;
	int rc, rv = -1;

	if (helper.pid == 0)
		return 0;
	rc = wait_helper(pinned, sizeof(pinned), err, sizeof(err));
	if (rc < 0) {
		cannot_run_helper();
		return 0;
	}
	if (rc != 0) {
		msg = err;
		if (strncmp(msg, "podman-hpcd: ", 13) == 0)
			msg += 13;
		msg = without_resolve_prefix(msg, image);
		/* pyxis's words, which sites' docs and scripts search for; the
		 * image once. */
		slurm_error(PHPC_NAME ": failed to import docker image: %s: %s", image, msg[0] ? msg : "podman-hpcd resolve failed without saying why");
		return -1;
	}
	if (pinned[0] == '\0')
		return 0; /* nothing to pin (oci:, an archive) */
	next = malloc(PINS_MAX);
	if (next == NULL || phpc_pins_add(list, image, pinned, next, PINS_MAX) < 0) {
		slurm_error(PHPC_NAME ": note: too many images to pin for this job; %s is resolved by each node", image);
		rv = 0;
		goto out;
	}
	/* srun and sbatch pass their environment to the job: every node, the
	 * batch script and the sruns inside it see it (srun merges it into
	 * the step's after local_user_init). */
	if (setenv(PHPC_PINS_ENV, next, 1) < 0) {
		slurm_error(PHPC_NAME ": couldn't set %s: %s", PHPC_PINS_ENV, strerror(errno));
		goto out;
	}
	slurm_verbose(PHPC_NAME ": %s is %s for this job", image, pinned);
	/* A job yet to be allocated: its prolog on every node starts getting
	 * the image (prolog.c). */
	if (prefetch && getenv("SLURM_JOB_ID") == NULL)
		spank_job_control_setenv(sp, PHPC_PREFETCH_ENV, pinned, 1);
	rv = 0;
out:
	free(next);
	return rv;
}

void phpc_pin_abandon(void)
{
	int status;

	if (helper.pid == 0)
		return;
	kill(helper.pid, SIGKILL);
	close(helper.out_fd);
	close(helper.err_fd);
	while (waitpid(helper.pid, &status, 0) < 0 && errno == EINTR)
		;
	helper.pid = 0;
}

int phpc_stepd_apply_pin(spank_t sp)
{
	char *list, pinned[4096], *copy;
	int rv = 0;

	if (phpc.args.image == NULL)
		return 0;
	list = malloc(PINS_MAX);
	if (list == NULL)
		return 0;
	if (spank_getenv(sp, PHPC_PINS_ENV, list, PINS_MAX) == ESPANK_SUCCESS &&
	    phpc_pins_lookup(list, phpc.args.image, pinned, sizeof(pinned)) == 0) {
		copy = strdup(pinned);
		if (copy != NULL) {
			free(phpc.args.image);
			phpc.args.image = copy;
		}
	}
	free(list);
	return rv;
}
