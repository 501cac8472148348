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
 * Run by the daemon as "podman-hpc-init nest UID GID [uts]", it is also the
 * one helper of the daemon's that must join a user namespace, which only a
 * single-threaded process can (setns(2)), hence not a Go program: see nest().
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
#include <grp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* The file descriptors the daemon hands to nest: the container's user, PID
 * and mount namespaces, and with "uts" its UTS namespace. */
enum { NEST_USERNS = 3, NEST_PIDNS = 4, NEST_MNTNS = 5, NEST_UTSNS = 6 };

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

/* The holder, in a child user namespace of the container's, whose mount
 * namespace is a copy of the container's: the kernel locks every mount of
 * a copy made into a less privileged user namespace (mount_namespaces(7)),
 * so that no capability held in the child user namespace can unmount,
 * move or change the flags of one. It tells the helper through ready once
 * it is there, and waits until the container's PID namespace ends. */
static void hold(int ready, uid_t uid, gid_t gid, int uts)
{
	sigset_t all;
	int fd;

	/* As the job user of the container's user namespace (its root under
	 * remap-root, with every capability there): a user namespace can be
	 * made only by an id mapped in its parent. Not dumpable: its mm is
	 * the helper's, of the node's user namespace, so nothing in the
	 * container can ptrace it or open its /proc entries. */
	setgroups(0, NULL);
	if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		_exit(fail("become the job user"));
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		_exit(fail("prctl"));
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

/* Maps id to itself in the user namespace of pid (written from its
 * parent user namespace, with the capabilities held there); setgroups
 * stays denied there, so that no capability can shed a group that denies
 * access (user_namespaces(7)). */
static int map_ids(int proc, pid_t pid, unsigned long uid, unsigned long gid)
{
	char name[64], map[64];

	snprintf(name, sizeof(name), "%d/setgroups", (int)pid);
	if (write_at(proc, name, "deny") < 0)
		return -1;
	snprintf(name, sizeof(name), "%d/uid_map", (int)pid);
	snprintf(map, sizeof(map), "%lu %lu 1\n", uid, uid);
	if (write_at(proc, name, map) < 0)
		return -1;
	snprintf(name, sizeof(name), "%d/gid_map", (int)pid);
	snprintf(map, sizeof(map), "%lu %lu 1\n", gid, gid);
	return write_at(proc, name, map);
}

/* nest UID GID [uts]: joins the container's user, PID and mount
 * namespaces (fds 3, 4, 5) and with uts its UTS namespace (fd 6), starts
 * the holder there (in the container's PID namespace: it ends with the
 * container's init), and prints its pid once its namespaces are ready:
 * copies of the container's mount (and UTS) namespace, owned by a user
 * namespace of their own. The daemon opens them from there, and the tasks
 * join those. */
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
	if (errno || *end != '\0' || uid > 0xfffffffeUL)
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
	if (setns(NEST_USERNS, CLONE_NEWUSER) < 0)
		return fail("join the user namespace");
	if (setns(NEST_PIDNS, CLONE_NEWPID) < 0)
		return fail("join the PID namespace");
	if (setns(NEST_MNTNS, CLONE_NEWNS) < 0)
		return fail("join the mount namespace");
	/* The hostname the copy starts with is the container's. */
	if (uts && setns(NEST_UTSNS, CLONE_NEWUTS) < 0)
		return fail("join the UTS namespace");
	close(NEST_USERNS);
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
		hold(p[1], (uid_t)uid, (gid_t)gid, uts);
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
