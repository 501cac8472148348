/*
 * client.c - the plugin's side of the daemon socket (see client.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

int phpc_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "daemon socket path \"%s\" is too long", path);
		return -1;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "couldn't create a socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int saved = errno;

		snprintf(err, errlen, "couldn't reach the node daemon at %s: %s; is podman-hpcd running on this node? (admins: systemctl start podman-hpcd.socket)", path, strerror(saved));
		close(fd);
		errno = saved; /* callers tell a daemon being restarted by it */
		return -1;
	}
	return fd;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int phpc_send(int fd, const struct phpc_msg *m)
{
	unsigned char hdr[PHPC_FRAME_HEADER];

	phpc_msg_header(m, hdr);
	if (write_all(fd, hdr, sizeof(hdr)) < 0)
		return -1;
	return m->len ? write_all(fd, m->body, m->len) : 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_readable(int fd, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int left, rc;

	for (;;) {
		left = -1;
		if (deadline >= 0) {
			long long d = deadline - now_ms();
			if (d <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			left = d > 1000000 ? 1000000 : (int)d;
		}
		rc = poll(&p, 1, left);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/* Keeps the fds of one SCM_RIGHTS message, closing what does not fit. */
static void take_fds(struct msghdr *mh, int *fds, size_t max_fds, size_t *n_fds)
{
	struct cmsghdr *c;
	size_t i, n;
	int *in;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		in = (int *)CMSG_DATA(c);
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			if (*n_fds < max_fds)
				fds[(*n_fds)++] = in[i];
			else
				close(in[i]);
		}
	}
}

/* Reads exactly len bytes, collecting any passed fds on the way. */
static int read_full(int fd, void *buf, size_t len, long long deadline, int *fds, size_t max_fds, size_t *n_fds)
{
	char *p = buf;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 16)];
	} ctl;
	struct iovec iov;
	struct msghdr mh;
	ssize_t n;

	while (len > 0) {
		if (wait_readable(fd, deadline) < 0)
			return -1;
		iov.iov_base = p;
		iov.iov_len = len;
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		take_fds(&mh, fds, max_fds, n_fds);
		if (n == 0) {
			errno = ECONNRESET;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int phpc_recv(int fd, struct phpc_msg *m, int timeout_ms, int *fds, size_t max_fds, size_t *n_fds)
{
	unsigned char hdr[PHPC_FRAME_HEADER];
	long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	size_t len, dummy = 0;
	uint8_t type;
	char *body = NULL;
	int rv = -1;

	if (n_fds == NULL)
		n_fds = &dummy;
	*n_fds = 0;
	if (read_full(fd, hdr, sizeof(hdr), deadline, fds, max_fds, n_fds) < 0)
		return -1;
	if (phpc_parse_header(hdr, &type, &len) < 0) {
		errno = EPROTO;
		return -1;
	}
	if (len > 0) {
		body = malloc(len);
		if (body == NULL)
			return -1;
		if (read_full(fd, body, len, deadline, fds, max_fds, n_fds) < 0)
			goto out;
	}
	phpc_msg_init(m, type);
	if (phpc_msg_set_body(m, body, len) < 0) {
		errno = EPROTO;
		goto out;
	}
	rv = 0;
out:
	free(body);
	return rv;
}
