/*
 * epilog.c - the job epilog (in slurmd's epilog process, as root): the
 * job's containers on this node go when the job ends, its named containers
 * included, with no Epilog script in slurm.conf. A step's own container
 * goes already when its slurmstepd closes the daemon's socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <slurm/spank.h>

#include "client.h"
#include "podman_hpc.h"
#include "proto.h"

/* The removal kills inits and unmounts: seconds at most. The epilog waits
 * no longer for a daemon that hangs. */
#define EPILOG_TIMEOUT_MS 30000

static uint32_t job_id(spank_t sp)
{
	uint32_t job = 0;
	const char *env;

	if (spank_get_item(sp, S_JOB_ID, &job) == ESPANK_SUCCESS && job != 0)
		return job;
	/* Slurm sets it in the epilog's environment too. */
	env = getenv("SLURM_JOB_ID");
	return env != NULL ? (uint32_t)strtoul(env, NULL, 10) : 0;
}

/* A daemon being restarted (an upgrade, without socket activation) has no
 * socket, or one nobody accepts on, for a moment; the new one adopts the
 * old one's containers, so the epilog waits for it rather than leaving the
 * job's containers behind. */
#define EPILOG_CONNECT_WAIT_MS 3000
#define EPILOG_CONNECT_STEP_MS 100

static int connect_waiting(char *err, size_t errlen)
{
	int fd, waited;

	for (waited = 0;; waited += EPILOG_CONNECT_STEP_MS) {
		fd = phpc_connect(phpc.cfg.socket, err, errlen);
		if (fd >= 0 || (errno != ENOENT && errno != ECONNREFUSED) || waited >= EPILOG_CONNECT_WAIT_MS)
			return fd;
		usleep(EPILOG_CONNECT_STEP_MS * 1000);
	}
}

/* The daemon cannot be reached, or did not answer: the job's end is
 * recorded beside its socket (ended-jobs/JOB, in a directory of root's,
 * its path written to path), and the next daemon removes the job's
 * containers as it starts. A named container would otherwise be adopted,
 * and outlive its job. */
static int record_end(uint32_t job, char *path, size_t pathlen)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	int fd;

	snprintf(dir, sizeof(dir), "%s", phpc.cfg.socket);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return -1;
	snprintf(slash, sizeof(dir) - (size_t)(slash - dir), "/ended-jobs");
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -1;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0022) != 0)
		return -1;
	if ((size_t)snprintf(path, pathlen, "%s/%" PRIu32, dir, job) >= pathlen)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	close(fd);
	slurm_info(PHPC_NAME ": job %" PRIu32 " epilog: recorded its end for the next podman-hpcd", job);
	return 0;
}

/* in_job_cgroup says whether /proc/PID/cgroup (text) puts the process in
 * job's cgroup or below it, in any hierarchy: Slurm names it job_JOB, in
 * cgroup v1 (slurm_NODE/uid_UID/job_JOB) and v2 (.../job_JOB/...) alike. */
static int in_job_cgroup(const char *text, const char *want)
{
	const char *p = text;
	size_t n = strlen(want);

	while ((p = strstr(p, want)) != NULL) {
		if (p[n] == '/' || p[n] == '\n' || p[n] == '\0')
			return 1;
		p += n;
	}
	return 0;
}

/* read_proc reads /proc/PID/NAME into buf, NUL-terminated: its length,
 * or -1. */
static ssize_t read_proc(pid_t pid, const char *name, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* is_slurmstepd: Slurm's own, which ends itself (an extern step's, say):
 * root's, named so. A user's process may name itself anything, but is
 * not root's: its real uid, from status (/proc/PID itself is root's for
 * any process that made itself non-dumpable). */
static int is_slurmstepd(pid_t pid)
{
	char status[4096], comm[32], *uid;

	if (read_proc(pid, "status", status, sizeof(status)) < 0)
		return 0;
	uid = strstr(status, "\nUid:\t");
	if (uid == NULL || strtoul(uid + 6, NULL, 10) != 0)
		return 0;
	return read_proc(pid, "comm", comm, sizeof(comm)) > 0 && strncmp(comm, "slurmstepd", 10) == 0;
}

/* kill_leftovers kills what of the job still runs in its cgroups once the
 * job has ended and no daemon answered: a named container's init sits in
 * the job's cgroup, not a step's, where Slurm ends nothing, so without
 * this the container and what the user started in it would run on past
 * the job until a daemon came back. Killing the init ends every process of
 * its PID namespace; the next daemon removes the rest (mounts, writable
 * root). Under proctrack/linuxproc there is no job cgroup, and nothing is
 * found. Each process is held by a pidfd from before its cgroup is read:
 * a pid that died and was reused meanwhile is signalled in vain, not
 * killed in another's place. */
static void kill_leftovers(uint32_t job)
{
	char want[32], buf[4096];
	struct dirent *e;
	DIR *d;
	int pidfd, killed = 0;
	pid_t pid;

	snprintf(want, sizeof(want), "/job_%" PRIu32, job);
	d = opendir("/proc");
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		pid = (pid_t)strtol(e->d_name, NULL, 10);
		if (pid <= 1 || pid == getpid() || pid == getppid())
			continue;
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0)
			continue;
		if (read_proc(pid, "cgroup", buf, sizeof(buf)) > 0 && in_job_cgroup(buf, want) && !is_slurmstepd(pid) &&
		    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0)
			killed++;
		close(pidfd);
	}
	closedir(d);
	if (killed > 0)
		slurm_info(PHPC_NAME ": job %" PRIu32 " epilog: killed %d process(es) left in the job's cgroups (its containers' inits and what ran in them)", job, killed);
}

/* ask_remove asks the daemon on fd to remove the job's containers and
 * waits for its answer: 0 once it answered (done, or an error it named),
 * -1 with errno set when it did not. */
static int ask_remove(uint32_t job, int fd)
{
	struct phpc_msg req, reply;
	char id[16];
	int rv = -1;

	snprintf(id, sizeof(id), "%" PRIu32, job);
	phpc_msg_init(&req, PHPC_MSG_RM);
	phpc_msg_init(&reply, 0);
	if (phpc_msg_add(&req, "job", id) < 0 || phpc_send(fd, &req) < 0) {
		slurm_info(PHPC_NAME ": job %" PRIu32 " epilog: couldn't ask podman-hpcd to remove the job's containers: %s", job, strerror(errno));
		goto out;
	}
	do {
		phpc_msg_free(&reply);
		if (phpc_recv(fd, &reply, EPILOG_TIMEOUT_MS, NULL, 0, NULL) < 0) {
			slurm_info(PHPC_NAME ": job %" PRIu32 " epilog: no answer from podman-hpcd: %s; see the daemon's log on this node", job, strerror(errno));
			goto out;
		}
	} while (reply.type == PHPC_MSG_PROGRESS);
	rv = 0;
	if (reply.type == PHPC_MSG_ERROR)
		slurm_info(PHPC_NAME ": job %" PRIu32 " epilog: podman-hpcd: %s", job, phpc_msg_get(&reply, "message") ?: "failed without saying why");
	else if (reply.type == PHPC_MSG_OK && strcmp(phpc_msg_get(&reply, "removed") ?: "0", "0") != 0)
		slurm_info(PHPC_NAME ": job %" PRIu32 " epilog: removed %s container(s)", job, phpc_msg_get(&reply, "removed"));
out:
	{
		int saved = errno;

		phpc_msg_free(&req);
		phpc_msg_free(&reply);
		errno = saved;
	}
	return rv;
}

/* A daemon that stops while it holds the request (a restart) drops the
 * connection unanswered: ask again, once, whichever daemon serves next
 * (it has adopted the job's containers). */
#define EPILOG_TRIES 2

/* Always 0: a failed epilog drains the node; a problem is one line in
 * slurmd's log. */
int phpc_job_epilog(spank_t sp)
{
	char err[512], path[PATH_MAX];
	uint32_t job = job_id(sp);
	int fd, try, hung = 0;

	if (job == 0)
		return 0;
	for (try = 0; try < EPILOG_TRIES; try++) {
		fd = connect_waiting(err, sizeof(err));
		if (fd < 0) {
			slurm_info(PHPC_NAME ": job %" PRIu32 " epilog: %s", job, err);
			break;
		}
		if (ask_remove(job, fd) == 0) {
			close(fd);
			return 0;
		}
		hung = errno != ECONNRESET && errno != EPIPE;
		close(fd);
		if (hung)
			break;
	}
	/* Unanswered: nothing of the job runs on, and the next daemon ends
	 * the job as it starts. One may have come up since the last try; a
	 * daemon listens before it reads the records, so it either reads this
	 * one or answers the ask below (not asked of a daemon that let the
	 * last ask time out). */
	kill_leftovers(job);
	if (record_end(job, path, sizeof(path)) < 0 || hung)
		return 0;
	fd = phpc_connect(phpc.cfg.socket, err, sizeof(err));
	if (fd >= 0) {
		if (ask_remove(job, fd) == 0)
			unlink(path);
		close(fd);
	}
	return 0;
}
