/*
 * podman-hpc-asuser: the daemon's helper for work done as a user
 * (pkg/asuser). podman-hpcd starts it as root, as
 * "podman-hpc-asuser UID GID GROUPS" (GROUPS comma-separated, maybe empty),
 * fd 3 a SOCK_SEQPACKET socket to the daemon; it becomes that user itself,
 * reads one request, answers it, and exits. Not for running by hand.
 *
 * Why it drops its own credentials rather than being started with the
 * user's: a process exec'd as the user is the user's, dumpable, from its
 * first instruction until it says otherwise, and in that window the user
 * could ptrace it or take its descriptors (pidfd_getfd), the daemon's
 * socket among them (outside review, 2026-12-06). Started as root, it is
 * never the user's while dumpable: the kernel makes a process that changes
 * its uid non-dumpable (fs.suid_dumpable 0, the default), and it says so
 * again itself at once.
 *
 * It is C, and a Go twin of it lives in pkg/asuser (helper.go, which
 * podman-hpcd runs as itself when this binary is missing, and for an OCI
 * layout's tar stream, which only the Go one writes), because it starts at
 * every container: this one in a few tenths of a millisecond, a Go program
 * in one or two.
 *
 * The request (pkg/asuser/proto.go) is one message of NUL-terminated
 * fields: the operation, then for "open" five fields per path (flags, mode,
 * regular, optional, path), for "unlink" and "dial" the path. Each answer
 * is one message, a JSON object with at most one descriptor:
 *   {}                        success (an open's or a dial's descriptor)
 *   {"missing":true}          an optional path that does not exist
 *   {"err":"...","errno":N}   the path's error
 *   {"err":"...","kind":K}    not-regular, or magic-link (with errno ELOOP)
 * An open stops at its first error.
 *
 * What it promises is the Go helper's: nothing is resolved through a /proc
 * magic link (openat2's RESOLVE_NO_MAGICLINKS), a FIFO, socket or device is
 * refused where a regular file is wanted, a relative path is refused, and
 * it refuses to run holding any capability as a user other than root. The
 * daemon checks every descriptor again: this is the user's process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

enum { SOCK_FD = 3, MAX_REQUEST = 1 << 20 };

static char request[MAX_REQUEST + 1];

static int send_reply(const char *json, int fd)
{
	struct iovec iov = { .iov_base = (void *)json, .iov_len = strlen(json) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(SOCK_FD, &msg, MSG_NOSIGNAL) < 0) {
		perror("send the reply");
		return -1;
	}
	return 0;
}

/* Failures that are no errno, below every -errno. */
enum { KIND_NOT_REGULAR = -100000, KIND_RELATIVE = -100001 };

/* send_error answers a failed result: -errno, or a KIND. */
static int send_error(int result)
{
	char json[128];
	int err = -result;
	if (result == KIND_NOT_REGULAR)
		snprintf(json, sizeof(json), "{\"err\":\"not a regular file\",\"kind\":\"not-regular\"}");
	else if (result == KIND_RELATIVE)
		snprintf(json, sizeof(json), "{\"err\":\"not an absolute path\"}");
	else if (err == ELOOP)
		snprintf(json, sizeof(json), "{\"err\":\"symlink loop or magic link\",\"kind\":\"magic-link\",\"errno\":%d}", ELOOP);
	else
		snprintf(json, sizeof(json), "{\"err\":\"errno %d\",\"errno\":%d}", err, err);
	return send_reply(json, -1);
}

/* holds_nothing: a user's helper runs with no capability (exec after
 * setuid from root drops them all); root's keeps its own. */
static int holds_nothing(void)
{
	if (getuid() == 0)
		return 1;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0) {
		perror("capget");
		return 0;
	}
	for (int i = 0; i < 2; i++) {
		if (data[i].effective | data[i].permitted | data[i].inheritable) {
			fprintf(stderr, "uid %u holds capabilities (effective %#x, permitted %#x): refusing to run\n",
				getuid(), data[i].effective, data[i].permitted);
			return 0;
		}
	}
	return 1;
}

/* open_want opens path as this process (the user), never through a magic
 * link; it returns the descriptor, or -errno, or a KIND. */
static int open_want(const char *path, int flags, mode_t mode, int regular)
{
	if (path[0] != '/')
		return KIND_RELATIVE;
	struct open_how how = { .flags = (unsigned)flags | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS };
	if (flags & (O_CREAT | __O_TMPFILE))
		how.mode = mode;
	int fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS) /* before Linux 5.6 */
		fd = open(path, flags | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (regular) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			int err = errno;
			close(fd);
			return -err;
		}
		if (!S_ISREG(st.st_mode)) {
			close(fd);
			return KIND_NOT_REGULAR;
		}
	}
	return fd;
}

static int dial(const char *path)
{
	if (path[0] != '/')
		return KIND_RELATIVE;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

/* id parses a uid or gid; -1 for a bad one. */
static int id(const char *s, unsigned *out)
{
	char *end;
	if (!*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || errno || v > 0xfffffffeUL)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* become takes the user's credentials for good: groups, gid, uid (real,
 * effective and saved), in that order, then checks them. */
static int become(const char *uid_s, const char *gid_s, const char *groups_s)
{
	unsigned uid, gid;
	if (id(uid_s, &uid) < 0 || id(gid_s, &gid) < 0) {
		fprintf(stderr, "bad credentials \"%s\" \"%s\"\n", uid_s, gid_s);
		return -1;
	}
	static gid_t groups[65536];
	size_t n = 0;
	static char buf[1 << 20];
	if (strlen(groups_s) >= sizeof(buf)) {
		fprintf(stderr, "bad groups\n");
		return -1;
	}
	strcpy(buf, groups_s);
	for (char *save = NULL, *g = strtok_r(buf, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
		unsigned v;
		if (n == sizeof(groups) / sizeof(groups[0]) || id(g, &v) < 0) {
			fprintf(stderr, "bad groups\n");
			return -1;
		}
		groups[n++] = v;
	}
	if (getuid() != 0 || geteuid() != 0) {
		if (getuid() == uid && geteuid() == uid && getgid() == gid)
			return 0; /* already the user: a test's own */
		fprintf(stderr, "started as uid %u, not root: cannot become uid %u\n", getuid(), uid);
		return -1;
	}
	if (setgroups(n, groups) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
		perror("become the user");
		return -1;
	}
	uid_t r, e, su;
	gid_t rg, eg, sg;
	if (getresuid(&r, &e, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || r != uid || e != uid || su != uid ||
	    rg != gid || eg != gid || sg != gid) {
		fprintf(stderr, "the credentials did not change\n");
		return -1;
	}
	return 0;
}

/* fields: the request's NUL-terminated fields, in order. */
struct fields {
	char *p, *end;
};

static const char *next_field(struct fields *f)
{
	if (f->p >= f->end)
		return NULL;
	char *nul = memchr(f->p, '\0', (size_t)(f->end - f->p));
	if (!nul)
		return NULL;
	char *field = f->p;
	f->p = nul + 1;
	return field;
}

/* number parses a decimal field (an int); -1 for a bad one. */
static int number(const char *s, long *out)
{
	char *end;
	if (!s || !*s)
		return -1;
	errno = 0;
	*out = strtol(s, &end, 10);
	return (*end || errno || *out < 0 || *out > 0x7fffffff) ? -1 : 0;
}

static int serve_open(struct fields *f)
{
	for (;;) {
		const char *flags_s = next_field(f);
		if (!flags_s)
			return 0; /* the last want answered */
		const char *mode_s = next_field(f), *regular = next_field(f), *optional = next_field(f);
		const char *path = next_field(f);
		long flags, mode;
		if (!path || number(flags_s, &flags) < 0 || number(mode_s, &mode) < 0) {
			fprintf(stderr, "bad request: a malformed open\n");
			return -1;
		}
		int fd = open_want(path, (int)flags, (mode_t)mode, regular[0] == '1');
		if (fd == -ENOENT && optional[0] == '1') {
			if (send_reply("{\"missing\":true}", -1) < 0)
				return -1;
			continue;
		}
		if (fd < 0)
			return send_error(fd);
		int rc = send_reply("{}", fd);
		close(fd);
		if (rc < 0)
			return -1;
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: podman-hpc-asuser UID GID GROUPS (run by podman-hpcd)\n");
		return 1;
	}
	pid_t daemon = getppid();
	if (become(argv[1], argv[2], argv[3]) < 0)
		return 1;
	/* The uid change cleared the parent-death signal the daemon set:
	 * set it again, and go if the daemon went meanwhile. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != daemon)
		return 1;
	/* Not dumpable (the uid change made it so; this says it again for
	 * root's own helper and a node with fs.suid_dumpable set): the user
	 * may not ptrace it or take its descriptors. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (!holds_nothing())
		return 1;
	ssize_t n = recv(SOCK_FD, request, MAX_REQUEST, 0);
	if (n < 0) {
		perror("read the request");
		return 1;
	}
	struct fields f = { .p = request, .end = request + n };
	const char *op = next_field(&f);
	if (!op) {
		fprintf(stderr, "bad request: no operation\n");
		return 1;
	}
	if (strcmp(op, "open") == 0)
		return serve_open(&f) < 0;
	const char *path = next_field(&f);
	if (!path) {
		fprintf(stderr, "bad request: no path\n");
		return 1;
	}
	if (strcmp(op, "unlink") == 0) {
		if (path[0] != '/')
			return send_error(KIND_RELATIVE) < 0;
		if (unlink(path) < 0)
			return send_error(-errno) < 0;
		return send_reply("{}", -1) < 0;
	}
	if (strcmp(op, "dial") == 0) {
		int fd = dial(path);
		if (fd < 0)
			return send_error(fd) < 0;
		int rc = send_reply("{}", fd);
		close(fd);
		return rc < 0;
	}
	fprintf(stderr, "unknown request \"%s\" (an OCI layout is the daemon's own helper's)\n", op);
	return 1;
}
