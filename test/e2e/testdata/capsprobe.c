/*
 * capsprobe: run in a task of a remap-root container, it tries with the
 * capabilities the task holds everything that would undo a mount the
 * runtime or the daemon made, or reach outside the container, and prints
 * one line per attempt:
 *
 *   PASS what (ERRNO)           refused, for the reason expected
 *   LEAK what                   it worked: the attack
 *   WRONG what: ERRNO, want ... refused, but not for the reason expected
 *   CONTROL what ok|ERRNO       what must work (proof that the task holds
 *                               the capabilities the refusals are about)
 *
 * Usage: capsprobe HIDDEN_PATH SECRET ROOTFILE [PID...]
 *   HIDDEN_PATH  a path of the node that must not be reachable (the
 *                daemon's state directory)
 *   SECRET       a root-owned 0600 file on a bound directory
 *   ROOTFILE     a root-owned 0644 file there
 *   PID          processes outside the container (the daemon, another
 *                container's task): their namespaces, files and memory
 *                must be out of reach. The containers' inits and the
 *                holders of their nested namespaces are found in /proc.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#define ATTR_RDONLY 0x1
#define ATTR_NOSUID 0x2
#define ATTR_NODEV 0x4
#define ATTR_IDMAP 0x100000
#define FSCONFIG_CMD_CREATE 6

struct attr {
	unsigned long long set, clr, propagation, userns_fd;
};

static int leaks, wrongs, passes;

/* Reports an attempt that must fail with want (or want2, when not 0). */
static void report(const char *what, const char *arg, long rc, int err, int want, int want2)
{
	if (rc >= 0) {
		printf("LEAK %s %s\n", what, arg);
		leaks++;
	} else if (err == want || (want2 && err == want2)) {
		printf("PASS %s %s (%s)\n", what, arg, strerrorname_np(err));
		passes++;
	} else {
		printf("WRONG %s %s: %s, want %s%s%s\n", what, arg, strerrorname_np(err), strerrorname_np(want),
		       want2 ? " or " : "", want2 ? strerrorname_np(want2) : "");
		wrongs++;
	}
}

/* Makes the call, then reads errno (the order of a call's arguments is
 * unspecified in C). */
#define expect(what, arg, call, want, want2)                      \
	do {                                                           \
		long rc_ = (long)(call);                               \
		report(what, arg, rc_, errno, want, want2);            \
	} while (0)

#define control(what, call)                                            \
	do {                                                           \
		long rc_ = (long)(call);                               \
		printf("CONTROL %s %s\n", what, rc_ < 0 ? strerrorname_np(errno) : "ok"); \
	} while (0)

static long setattr(int dfd, const char *path, unsigned flags, struct attr *a)
{
	return syscall(SYS_mount_setattr, dfd, path, flags, a, sizeof(*a));
}

/* One mount of /proc/self/mountinfo. */
struct mnt {
	int id, parent;
	char point[512];
};

static struct mnt mounts[512];
static int n_mounts;

static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

static void read_mounts(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[2048];

	while (f && fgets(line, sizeof line, f) && n_mounts < 512) {
		struct mnt *m = &mounts[n_mounts];

		if (sscanf(line, "%d %d %*s %*s %511s", &m->id, &m->parent, m->point) == 3) {
			unescape(m->point);
			n_mounts++;
		}
	}
	if (f)
		fclose(f);
}

/* Whether a mount covers a part of m (one stacked on m's own mount point
 * covers it all: the path is then that one's). */
static int has_children(const struct mnt *m)
{
	for (int i = 0; i < n_mounts; i++)
		if (mounts[i].parent == m->id && mounts[i].id != m->id && strcmp(mounts[i].point, m->point) != 0)
			return 1;
	return 0;
}

/* Every way to take a mount away, move it, strip its flags or show what
 * it covers: the kernel refuses each on a locked mount (EINVAL to unmount
 * or move it, EPERM to change a locked flag). scratch is a directory of a
 * tmpfs of the task's own. */
static void attack_mount(const struct mnt *m, const char *scratch)
{
	const char *p = m->point;
	struct statvfs sv;
	struct attr a;

	expect("umount", p, umount2(p, 0), EINVAL, 0);
	expect("umount-lazy", p, umount2(p, MNT_DETACH), EINVAL, 0);
	expect("move", p, mount(p, scratch, NULL, MS_MOVE, NULL), EINVAL, 0);
	if (statvfs(p, &sv) == 0) {
		if (sv.f_flag & ST_RDONLY) {
			a = (struct attr){ .clr = ATTR_RDONLY };
			expect("make-writable", p, setattr(AT_FDCWD, p, 0, &a), EPERM, 0);
			expect("remount-rw", p, mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | (sv.f_flag & ST_NOSUID ? MS_NOSUID : 0) | (sv.f_flag & ST_NODEV ? MS_NODEV : 0) | (sv.f_flag & ST_NOEXEC ? MS_NOEXEC : 0), NULL), EPERM, 0);
		}
		if (sv.f_flag & ST_NOSUID) {
			a = (struct attr){ .clr = ATTR_NOSUID };
			expect("allow-setuid", p, setattr(AT_FDCWD, p, 0, &a), EPERM, 0);
		}
		if (sv.f_flag & ST_NODEV) {
			a = (struct attr){ .clr = ATTR_NODEV };
			expect("allow-devices", p, setattr(AT_FDCWD, p, 0, &a), EPERM, 0);
		}
		a = (struct attr){ .clr = ATTR_NOSUID | ATTR_NODEV | ATTR_RDONLY };
		expect("strip-flags-recursively", p, setattr(AT_FDCWD, p, AT_RECURSIVE, &a), EPERM, 0);
	}
	if (has_children(m)) {
		/* A copy without its submounts would show what they cover. */
		expect("bind-without-submounts", p, mount(p, scratch, NULL, MS_BIND, NULL), EINVAL, 0);
		expect("clone-without-submounts", p, syscall(SYS_open_tree, AT_FDCWD, p, OPEN_TREE_CLONE | O_CLOEXEC), EINVAL, 0);
	}
}

/* In a child: a private copy of the mount namespace (same user namespace:
 * the locks are copied with the mounts), then pivot_root to a tmpfs of its
 * own: the old root's mounts stay locked under it. */
static void attack_copies(const char *scratch)
{
	pid_t pid = fork();

	if (pid == 0) {
		char old[600];

		if (unshare(CLONE_NEWNS) < 0) {
			control("unshare-mount-namespace", -1);
			_exit(0);
		}
		control("unshare-mount-namespace", 0);
		expect("umount-in-private-copy", "/proc/keys", umount2("/proc/keys", MNT_DETACH), EINVAL, 0);
		expect("umount-in-private-copy", "/.podman-hpc/init", umount2("/.podman-hpc/init", MNT_DETACH), EINVAL, 0);
		snprintf(old, sizeof old, "%s/old", scratch);
		mkdir(old, 0700);
		if (syscall(SYS_pivot_root, scratch, old) < 0) {
			control("pivot_root", -1);
			_exit(0);
		}
		control("pivot_root", 0);
		expect("umount-after-pivot_root", "/old/proc/keys", umount2("/old/proc/keys", MNT_DETACH), EINVAL, 0);
		expect("umount-after-pivot_root", "/old/.podman-hpc/init", umount2("/old/.podman-hpc/init", MNT_DETACH), EINVAL, 0);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	fflush(stdout);
}

/* chroot into a directory, climb, chroot back: still the container's root. */
static void attack_chroot(const char *scratch, const char *hidden)
{
	pid_t pid = fork();

	if (pid == 0) {
		char jail[600];
		struct stat st;
		int i;

		snprintf(jail, sizeof jail, "%s/jail", scratch);
		mkdir(jail, 0700);
		if (chroot(jail) < 0) {
			control("chroot", -1);
			_exit(0);
		}
		control("chroot", 0);
		for (i = 0; i < 64; i++)
			if (chdir("..") < 0)
				break;
		chroot(".");
		expect("chroot-escape-sees", hidden, stat(hidden, &st), ENOENT, 0);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	fflush(stdout);
}

/* New instances of proc and sysfs show what the container's masks hide. */
static void attack_new_instances(const char *scratch)
{
	char d[600];
	int fd;

	snprintf(d, sizeof d, "%s/new", scratch);
	mkdir(d, 0700);
	expect("mount-new", "proc", mount("proc", d, "proc", 0, NULL), EPERM, 0);
	expect("mount-new", "sysfs", mount("sysfs", d, "sysfs", 0, NULL), EPERM, 0);
	fd = (int)syscall(SYS_fsopen, "proc", 0);
	if (fd >= 0) {
		long rc = syscall(SYS_fsconfig, fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
		if (rc == 0)
			rc = syscall(SYS_fsmount, fd, 0, 0);
		expect("fsmount-new", "proc", rc, EPERM, 0);
		close(fd);
	} else {
		expect("fsopen-new", "proc", fd, EPERM, 0);
	}
}

/* An idmapped copy of a bound directory would let the task's ids stand
 * for others; the copy keeps its locked flags too. */
static void attack_idmap(const char *bound)
{
	int tree = (int)syscall(SYS_open_tree, AT_FDCWD, bound, OPEN_TREE_CLONE | O_CLOEXEC);
	int userns = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
	struct attr a;

	if (tree < 0) {
		control("clone-a-bind", -1);
		return;
	}
	control("clone-a-bind", 0);
	a = (struct attr){ .set = ATTR_IDMAP, .userns_fd = (unsigned long long)userns };
	expect("idmap-a-bind", bound, setattr(tree, "", AT_EMPTY_PATH, &a), EPERM, 0);
	a = (struct attr){ .clr = ATTR_NOSUID | ATTR_NODEV };
	expect("strip-flags-of-a-clone", bound, setattr(tree, "", AT_EMPTY_PATH, &a), EPERM, 0);
	close(tree);
	close(userns);
}

/* The namespaces, root and memory of a process outside the container. */
static void attack_process(int pid, const char *who)
{
	static const char *const ns[] = { "mnt", "user", "pid", "uts", "net", NULL };
	char path[128], what[160];
	struct stat st;
	int i, fd;

	for (i = 0; ns[i]; i++) {
		snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, ns[i]);
		snprintf(what, sizeof what, "%s-%s-namespace", who, ns[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			expect(what, path, -1, EACCES, EPERM);
			continue;
		}
		/* Open (a process of the task's own user): joining must fail. */
		expect(what, path, setns(fd, 0), EPERM, EINVAL);
		close(fd);
	}
	snprintf(path, sizeof path, "/proc/%d/root/", pid);
	snprintf(what, sizeof what, "%s-root", who);
	expect(what, path, stat(path, &st), EACCES, EPERM);
	snprintf(what, sizeof what, "%s-ptrace", who);
	snprintf(path, sizeof path, "%d", pid);
	errno = 0;
	if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
		waitpid(pid, NULL, 0);
		ptrace(PTRACE_DETACH, pid, 0, 0);
		expect(what, path, 0, EPERM, 0);
	} else {
		expect(what, path, -1, EPERM, 0);
	}
}

/* The podman-hpc inits and nest holders the task can see. */
static void attack_daemon_processes(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[64], buf[256];
	int inits = 0, holders = 0;

	while (d && (e = readdir(d))) {
		int pid = atoi(e->d_name);
		size_t n;
		FILE *f;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
		if (!(f = fopen(path, "r")))
			continue;
		n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = 0;
		if (n > 0 && strcmp(buf, "/.podman-hpc/init") == 0) {
			attack_process(pid, "container-init");
			inits++;
		} else if (n > 0 && strstr(buf, "podman-hpc-init") && strcmp(buf + strlen(buf) + 1, "nest") == 0) {
			attack_process(pid, "nest-holder");
			holders++;
		}
	}
	if (d)
		closedir(d);
	printf("CONTROL inits-seen %d\nCONTROL holders-seen %d\n", inits, holders);
}

int main(int argc, char **argv)
{
	const char *scratch = "/tmp/capsprobe";
	char host[256];
	struct stat st;
	int i, fd;

	if (argc < 4) {
		fprintf(stderr, "usage: capsprobe HIDDEN_PATH SECRET ROOTFILE [PID...]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	read_mounts();
	/* The controls: the task holds CAP_SYS_ADMIN over its mount
	 * namespace (a tmpfs of its own mounts, unmounts and loses nosuid). */
	mkdir(scratch, 0700);
	control("mount-tmpfs", mount("none", scratch, "tmpfs", 0, NULL));
	control("umount-own-tmpfs", umount2(scratch, 0));
	control("mount-tmpfs-again", mount("none", scratch, "tmpfs", MS_NOSUID, NULL));
	{
		struct attr a = { .clr = ATTR_NOSUID };
		control("strip-nosuid-of-own-tmpfs", setattr(AT_FDCWD, scratch, 0, &a));
	}
	printf("CONTROL mounts %d\n", n_mounts);
	for (i = 0; i < n_mounts; i++)
		if (strcmp(mounts[i].point, scratch) != 0 && strncmp(mounts[i].point, "/tmp/capsprobe/", 15) != 0)
			attack_mount(&mounts[i], scratch);
	attack_new_instances(scratch);
	attack_idmap("/probe");
	attack_copies(scratch);
	attack_chroot(scratch, argv[1]);

	/* Nothing of the node beyond the job user's own files. */
	expect("see-the-node", argv[1], stat(argv[1], &st), ENOENT, 0);
	expect("read-root-file", argv[2], open(argv[2], O_RDONLY | O_CLOEXEC), EACCES, 0);
	expect("write-root-file", argv[3], open(argv[3], O_WRONLY | O_CLOEXEC), EACCES, 0);
	expect("chmod-root-file", argv[3], chmod(argv[3], 0666), EPERM, 0);
	expect("mknod-device", "/tmp/capsprobe/null", mknod("/tmp/capsprobe/null", S_IFCHR | 0666, makedev(1, 3)), EPERM, 0);
	expect("write-image-root", "/capsprobe-file", open("/capsprobe-file", O_CREAT | O_WRONLY | O_CLOEXEC, 0644), EROFS, 0);
	/* The daemon's file, root's: refused for that before its mount's
	 * read-only flag counts. */
	expect("write-init", "/.podman-hpc/init", open("/.podman-hpc/init", O_WRONLY | O_CLOEXEC), EACCES, EROFS);
	expect("write-node-sysctl", "/proc/sys/kernel/hostname", open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC), EROFS, EACCES);
	if (stat("/proc/sysrq-trigger", &st) == 0)
		expect("write-sysrq", "/proc/sysrq-trigger", open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC), EROFS, EACCES);
	gethostname(host, sizeof host);
	expect("sethostname-of-the-node", host, sethostname("capsprobe", 9), EPERM, 0);
	{
		struct {
			unsigned int bytes;
			int type;
			unsigned char h[128];
		} fh = { .bytes = 128 };
		int mnt_id;

		/* A handle of the task's own tmpfs; any handle would do. */
		control("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, scratch, &fh, &mnt_id, 0));
		fd = open(scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		expect("open_by_handle_at", scratch, syscall(SYS_open_by_handle_at, fd, &fh, O_RDONLY), EPERM, 0);
		close(fd);
	}
	for (i = 4; i < argc; i++)
		attack_process(atoi(argv[i]), "outside");
	attack_daemon_processes();
	printf("SUMMARY passes=%d leaks=%d wrongs=%d\n", passes, leaks, wrongs);
	return 0;
}
