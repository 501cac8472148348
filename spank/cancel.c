/*
 * cancel.c - asks Slurm, through squeue, whether the step's job still runs.
 *
 * Slurm holds a job's kill (scancel, the time limit) until its steps have
 * started: slurmd waits for a starting step before it signals it, and
 * slurmstepd is starting until the plugin's user_init returns. Without
 * asking, a step cancelled during a long pull waited for the pull, then ran
 * its tasks, and was only then killed (its srun could even succeed). So
 * while the daemon makes the container, the plugin asks now and then; the
 * answer ends the wait, the daemon's pull stops with the connection, and
 * no task starts.
 *
 * The question is asked by squeue, in a process of its own, and never from
 * slurmstepd itself: Slurm 23.02 and later hold the auth plugin's lock
 * around user_init (drop_privileges takes it, for the time slurmstepd's
 * euid is the user's), and an RPC made there aborts slurmstepd ("fatal:
 * auth_g_create: pthread_rwlock_rdlock(): Resource deadlock avoided"). A
 * forked copy of slurmstepd would inherit that lock held (by a thread it
 * does not have) and hang instead; an exec'd squeue starts with no lock and
 * no Slurm state of slurmstepd's. It runs as the job's user entirely (who
 * may ask about their own job), with no descriptor of slurmstepd's, and
 * only SLURM_CONF in its environment.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cancel.h"

int phpc_default_squeue(char *out, size_t len)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return -1;
	exe[n] = '\0';
	/* PREFIX/sbin/slurmstepd: PREFIX/bin/squeue */
	if ((slash = strrchr(exe, '/')) == NULL)
		return -1;
	*slash = '\0';
	if ((slash = strrchr(exe, '/')) == NULL)
		return -1;
	*slash = '\0';
	if ((size_t)snprintf(out, len, "%s/bin/squeue", exe) >= len)
		return -1;
	return 0;
}

/* squeue's %T words for a job that no longer runs, or runs no more here: it
 * ends, ended, or went back to the queue (requeued). Anything else (RUNNING,
 * SUSPENDED, a word of a later release) is taken as still running. */
static int ended_state(const char *s)
{
	static const char *const ended[] = {
		"COMPLETING", "CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
		"BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "PENDING", "REQUEUED", "REQUEUE_FED",
		"REQUEUE_HOLD", "SPECIAL_EXIT", "REVOKED", "STAGE_OUT", NULL,
	};
	int i;

	for (i = 0; ended[i] != NULL; i++)
		if (strcmp(s, ended[i]) == 0)
			return 1;
	return 0;
}

static long long ask_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int phpc_cancel_interval_ms(uint32_t nnodes)
{
	long long ms = (long long)nnodes * 1000 / PHPC_CANCEL_ASKS_PER_S;

	return ms > PHPC_CANCEL_CHECK_MS ? (ms > 60000 ? 60000 : (int)ms) : PHPC_CANCEL_CHECK_MS;
}

/* Closes every descriptor from 3 up: close_range(2) by number (glibc 2.34
 * has the wrapper, EL8's has not; its kernel headers may lack the number),
 * else one by one. */
static void close_from_3(void)
{
	long fd, max;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0) == 0)
		return;
#endif
	max = sysconf(_SC_OPEN_MAX);
	if (max <= 0 || max > (1L << 20))
		max = 1L << 20;
	for (fd = 3; fd < max; fd++)
		close((int)fd);
}

/* In the child: becomes the caller's effective user for good, keeps only
 * stdin (/dev/null) and stdout (out), dies with its parent, and runs
 * squeue. Async-signal-safe calls only (slurmstepd has threads). */
static void run_squeue(const char *squeue, const char *jobs, char *conf, int out, pid_t parent)
{
	char *argv[] = { (char *)"squeue", (char *)"--noheader", (char *)"--states=all", (char *)"--format=%T", (char *)jobs, NULL };
	char *envp[2] = { conf, NULL };
	uid_t uid = geteuid();
	gid_t gid = getegid();
	int null;

	null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(null, 2) < 0)
		_exit(126);
	/* dup2 onto itself keeps close-on-exec (out was 1 already). */
	if (fcntl(1, F_SETFD, 0) < 0)
		_exit(126);
	close_from_3();
	if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		_exit(126);
	/* After the change of user, which clears it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	execve(squeue, argv, envp);
	_exit(127);
}

int phpc_job_ended(const char *squeue, uint32_t job, int watch_fd, int limit_ms)
{
	char jobs[32], buf[128], conf[PATH_MAX + 16], *nl;
	const char *c = getenv("SLURM_CONF");
	struct pollfd p[2];
	long long deadline;
	size_t used = 0;
	int pipefd[2], status = 0, n, eof = 0, reaped = 0;
	pid_t parent = getpid(), pid;
	ssize_t r;

	if (squeue == NULL || squeue[0] != '/' || access(squeue, X_OK) < 0)
		return 0;
	snprintf(jobs, sizeof(jobs), "--jobs=%u", job);
	conf[0] = '\0';
	if (c != NULL && c[0] != '\0')
		snprintf(conf, sizeof(conf), "SLURM_CONF=%s", c);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return 0;
	pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return 0;
	}
	if (pid == 0)
		run_squeue(squeue, jobs, conf[0] != '\0' ? conf : NULL, pipefd[1], parent);
	close(pipefd[1]);
	/* Until squeue has said it all, its time is up, or the daemon has
	 * answered (then the question no longer matters). */
	deadline = ask_now_ms() + limit_ms;
	p[0] = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = watch_fd, .events = POLLIN };
	for (;;) {
		long long left = deadline - ask_now_ms();

		if (left <= 0)
			break;
		n = poll(p, watch_fd >= 0 ? 2 : 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (watch_fd >= 0 && p[1].revents != 0))
			break;
		r = read(pipefd[0], buf + used, sizeof(buf) - 1 - used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			eof = r == 0;
			break;
		}
		used += (size_t)r;
		if (used == sizeof(buf) - 1)
			break;
	}
	close(pipefd[0]);
	/* Its output closed: it is exiting; give it the time left. */
	while (eof && !reaped && ask_now_ms() < deadline) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w < 0 && errno != EINTR)
			return 0; /* reaped elsewhere: gone, and no answer */
		reaped = w == pid;
		if (!reaped)
			usleep(5000);
	}
	if (!reaped) {
		/* Not reaped yet, so pid is still this child: the kill
		 * reaches no one else. */
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return 0; /* no answer in time: cannot tell */
	}
	buf[used] = '\0';
	if ((nl = strchr(buf, '\n')) == NULL || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 0; /* no whole answer: cannot tell */
	*nl = '\0';
	return ended_state(buf);
}
