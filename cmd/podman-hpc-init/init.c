/*
 * podman-hpc-init: the first process of every podman-hpc container. It only
 * waits, so that the container's namespaces live while the step's tasks join
 * them, and exits on SIGTERM, SIGINT or SIGHUP. It runs as the job user with
 * no capabilities, from a static binary bound into the container, so it needs
 * nothing of the image.
 *
 * It is PID 1 of the container's PID namespace: what the image's entrypoint
 * left running (a detached child, say) is reparented to it, and it reaps
 * them; when it dies at teardown, the kernel kills them all.
 *
 * It is C, and apart from podman-hpcd (which can stand in for it as
 * "podman-hpcd init"), because it starts on every node of every step: this
 * one in a tenth of a millisecond, a Go program in a few.
 *
 * Run by the daemon as "podman-hpc-init nest UID GID [uts]", it also makes
 * the namespaces a remap-root container's tasks join (see nest()), from a
 * child it forks without exec (a Go program cannot): the child keeps an mm
 * of the node's user namespace, so that no capability of the tasks can
 * ptrace it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* The file descriptors the daemon hands to nest: the container's PID and
 * mount namespaces, and with "uts" its UTS namespace. */
enum { NEST_PIDNS = 3, NEST_MNTNS = 4, NEST_UTSNS = 5 };

static int fail(const char *what)
{
	fprintf(stderr, "podman-hpc-init nest: %s: %s\n", what, strerror(errno));
	return 1;
}

/* Writes s into the file name of the directory dir (a procfs's). */
static int write_at(int dir, const char *name, const char *s)
{
	int fd = openat(dir, name, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* The holder: in a user namespace of its own (a sibling of the
 * container's), with copies of the container's mount (and UTS) namespace
 * owned by it. The kernel locks every mount of a copy made into another
 * user namespace, and its flags (mount_namespaces(7)): no capability held
 * in the new user namespace can unmount, move or change the flags of one.
 * It tells the helper through ready once it is there, and waits until the
 * container's PID namespace ends. Not dumpable, with the helper's mm (of
 * the node's user namespace): nothing in the container can ptrace it or
 * open its /proc entries. */
static void hold(int ready, int uts)
{
	sigset_t all;
	int fd;

	if (unshare(CLONE_NEWUSER | CLONE_NEWNS | (uts ? CLONE_NEWUTS : 0)) < 0)
		_exit(fail("unshare"));
	/* Nothing of the daemon's stays open here: it waits for the
	 * helper's output to end. */
	for (fd = 0; fd < 3; fd++)
		close(fd);
	if (write(ready, "y", 1) != 1)
		_exit(1);
	close(ready);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	for (;;)
		pause();
}

/* Maps 0 in the user namespace of pid to uid and gid of the node's, as the
 * container's user namespace does under remap-root; setgroups stays denied
 * there, so that no capability can shed a group that denies access
 * (user_namespaces(7)). */
static int map_ids(int proc, pid_t pid, unsigned long uid, unsigned long gid)
{
	char name[64], map[64];

	snprintf(name, sizeof(name), "%d/setgroups", (int)pid);
	if (write_at(proc, name, "deny") < 0)
		return -1;
	snprintf(name, sizeof(name), "%d/uid_map", (int)pid);
	snprintf(map, sizeof(map), "0 %lu 1\n", uid);
	if (write_at(proc, name, map) < 0)
		return -1;
	snprintf(name, sizeof(name), "%d/gid_map", (int)pid);
	snprintf(map, sizeof(map), "0 %lu 1\n", gid);
	return write_at(proc, name, map);
}

/* nest UID GID [uts]: joins the container's PID and mount namespaces
 * (fds 3, 4) and with uts its UTS namespace (fd 5), starts the holder
 * there (in the container's PID namespace: it ends with the container's
 * init), maps its user namespace's root to the job user (UID and GID, the
 * node's), and prints its pid once its namespaces are ready. The daemon
 * opens them from there, and the tasks join those. */
static int nest(int argc, char **argv)
{
	int proc, p[2], uts;
	unsigned long uid, gid;
	char *end;
	char c;
	pid_t pid;

	if (argc < 4 || argc > 5)
		return fail("usage: nest UID GID [uts]");
	errno = 0;
	uid = strtoul(argv[2], &end, 10);
	if (errno || *end != '\0' || uid == 0 || uid > 0xfffffffeUL)
		return fail("bad UID");
	gid = strtoul(argv[3], &end, 10);
	if (errno || *end != '\0' || gid > 0xfffffffeUL)
		return fail("bad GID");
	uts = argc == 5 && strcmp(argv[4], "uts") == 0;
	if (argc == 5 && !uts)
		return fail("usage: nest UID GID [uts]");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return fail("prctl");
	/* The node's /proc, opened before the container's mounts hide it. */
	proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (proc < 0)
		return fail("open /proc");
	if (setns(NEST_PIDNS, CLONE_NEWPID) < 0)
		return fail("join the PID namespace");
	if (setns(NEST_MNTNS, CLONE_NEWNS) < 0)
		return fail("join the mount namespace");
	/* The hostname the copy starts with is the container's. */
	if (uts && setns(NEST_UTSNS, CLONE_NEWUTS) < 0)
		return fail("join the UTS namespace");
	close(NEST_PIDNS);
	close(NEST_MNTNS);
	if (uts)
		close(NEST_UTSNS);
	if (pipe2(p, O_CLOEXEC) < 0)
		return fail("pipe");
	pid = fork();
	if (pid < 0)
		return fail("fork");
	if (pid == 0) {
		close(p[0]);
		close(proc);
		hold(p[1], uts);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1) {
		waitpid(pid, NULL, 0);
		errno = ECHILD;
		return fail("the holder failed");
	}
	if (map_ids(proc, pid, uid, gid) < 0) {
		int saved = errno;

		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		errno = saved;
		return fail("map the job user");
	}
	printf("%d\n", (int)pid);
	return fflush(stdout) == 0 ? 0 : fail("write");
}

int main(int argc, char **argv)
{
	sigset_t set;
	int sig;

	if (argc > 1 && strcmp(argv[1], "nest") == 0)
		return nest(argc, argv);

	/* Not dumpable: the tasks run as the same user in the same user
	 * namespace, and must not ptrace it into running something outside
	 * their step (ptrace now needs CAP_SYS_PTRACE over the container's
	 * user namespace, which no task holds). */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return 1;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return 1;
	for (;;) {
		sig = sigwaitinfo(&set, NULL);
		if (sig == SIGCHLD) {
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
			continue;
		}
		if (sig < 0)
			continue; /* EINTR */
		return 0;
	}
}
