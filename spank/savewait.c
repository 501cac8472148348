/*
 * savewait.c - see savewait.h.
 *
 * Slurm takes a step's exit status from its tasks' and lets no plugin
 * change it; slurmstepd reports a task's exit once it has reaped it, after
 * our task_exit callback. So, on the node that saves, each task is a small
 * parent of the program (this file): the pid Slurm waits for. It holds no
 * capability and no root connection (task_init_privileged closed
 * slurmstepd's): the save is asked for on a connection of the job user's,
 * which the daemon lets ask only for that user's saving step, and which
 * only makes the save come sooner. A parent killed before it asks leaves
 * the save to slurmstepd's task_exit; the daemon saves once either way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "podman_hpc.h"
#include "proto.h"
#include "savewait.h"

/* Shared by slurmstepd and the node's tasks (MAP_SHARED, made before they
 * fork). */
struct barrier {
	uint32_t ended; /* tasks whose program has ended */
	uint32_t asked; /* a task had the daemon save */
};

static struct barrier *barrier;
static int sock_dir = -1;
static const char *sock_name;

int phpc_savewait_prepare(void)
{
	void *p = mmap(NULL, sizeof(*barrier), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	barrier = p;
	return 0;
}

void phpc_savewait_open(const char *socket)
{
	const char *slash = strrchr(socket, '/');
	char dir[4096];

	if (barrier == NULL || slash == NULL || slash[1] == '\0' || (size_t)(slash - socket) >= sizeof(dir))
		return;
	memcpy(dir, socket, (size_t)(slash - socket));
	dir[slash - socket] = '\0';
	sock_dir = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	sock_name = slash + 1;
}

int phpc_savewait_asked(void)
{
	return barrier != NULL && __atomic_load_n(&barrier->asked, __ATOMIC_SEQ_CST);
}

/* Asks the daemon for the step's save and waits for it. Returns 0 when it
 * was saved (or the daemon could not be asked: slurmstepd then saves, as
 * before), -1 when the save failed, with its cause printed. */
static int ask_for_save(uint32_t job, uint32_t step, const char *save)
{
	struct phpc_msg req, reply;
	char err[512], id[16], st[16];
	int fd, rv = 0;

	/* The socket's own directory, from inside the container's mounts. */
	if (fchdir(sock_dir) < 0 || (fd = phpc_connect(sock_name, err, sizeof(err))) < 0) {
		slurm_info(PHPC_NAME ": --container-save=%s: couldn't ask podman-hpcd from the task; saved at the step's end", save);
		return 0;
	}
	snprintf(id, sizeof(id), "%" PRIu32, job);
	snprintf(st, sizeof(st), "%" PRIu32, step);
	phpc_msg_init(&req, PHPC_MSG_SAVE);
	phpc_msg_init(&reply, 0);
	if (phpc_msg_add(&req, "job", id) < 0 || phpc_msg_add(&req, "step", st) < 0 || phpc_send(fd, &req) < 0 ||
	    phpc_recv(fd, &reply, -1, NULL, 0, NULL) < 0) {
		slurm_info(PHPC_NAME ": --container-save=%s: no answer from podman-hpcd in the task (%s); saved at the step's end", save, strerror(errno));
	} else if (reply.type == PHPC_MSG_OK) {
		__atomic_store_n(&barrier->asked, 1, __ATOMIC_SEQ_CST);
	} else {
		__atomic_store_n(&barrier->asked, 1, __ATOMIC_SEQ_CST);
		slurm_error(PHPC_NAME ": --container-save=%s: %s", save,
			    reply.type == PHPC_MSG_ERROR ? phpc_msg_get(&reply, "message") ?: "failed without saying why" : "podman-hpcd sent an unexpected message");
		rv = -1;
	}
	phpc_msg_free(&req);
	phpc_msg_free(&reply);
	close(fd);
	return rv;
}

/* Ends the parent the way its program ended: the same signal (without a
 * core of the parent's) or the same code, 1 instead of 0 if the save
 * failed. */
static void __attribute__((noreturn)) exit_as(int status, int failed)
{
	if (WIFSIGNALED(status)) {
		struct rlimit none = { 0, 0 };
		sigset_t one;
		int sig = WTERMSIG(status);

		setrlimit(RLIMIT_CORE, &none);
		signal(sig, SIG_DFL);
		sigemptyset(&one);
		sigaddset(&one, sig);
		raise(sig); /* pending: every signal is blocked here */
		sigprocmask(SIG_UNBLOCK, &one, NULL);
		_exit(128 + sig);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		_exit(WEXITSTATUS(status));
	_exit(failed || !WIFEXITED(status) ? 1 : 0);
}

int phpc_savewait_fork(spank_t sp, const char *save)
{
	uint32_t job = 0, step = 0, tasks = 0;
	sigset_t all, old;
	int status = 0, failed = 0;
	pid_t child;

	if (barrier == NULL || sock_dir < 0)
		return 0;
	if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS || spank_get_item(sp, S_JOB_STEPID, &step) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &tasks) != ESPANK_SUCCESS)
		return 0; /* slurmstepd saves */
	/* The parent takes no signal but SIGKILL (Slurm signals the program
	 * itself): it must outlive the program to report it. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	child = fork();
	if (child < 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		slurm_error(PHPC_NAME ": --container-save=%s: couldn't start the task: fork: %s", save, strerror(errno));
		return -1;
	}
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		return 0;
	}
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR) {
			status = 1 << 8; /* cannot happen: our only child */
			break;
		}
	}
	if (__atomic_add_fetch(&barrier->ended, 1, __ATOMIC_SEQ_CST) == tasks)
		failed = ask_for_save(job, step, save) < 0;
	exit_as(status, failed);
}
