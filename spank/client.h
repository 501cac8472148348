/*
 * client.h - talking to podman-hpcd over its Unix socket.
 *
 * Pure socket code, no Slurm calls: tested through cgo with a socketpair.
 */
#ifndef PHPC_CLIENT_H
#define PHPC_CLIENT_H

#include <stddef.h>

#include "proto.h"

/* Connects to the daemon's socket; returns a close-on-exec fd, or -1 with the
 * cause and the fix in err. */
int phpc_connect(const char *path, char *err, size_t errlen);

/* Sends one frame. Returns 0, or -1 with errno set. */
int phpc_send(int fd, const struct phpc_msg *m);

/* Receives one frame into m (initialised by the caller), waiting at most
 * timeout_ms (< 0: forever). File descriptors sent with it are stored in fds
 * (at most max_fds, close-on-exec; extra ones are closed) and counted in
 * *n_fds; the caller closes them. Returns 0, or -1 with errno set (ETIMEDOUT,
 * ECONNRESET when the daemon hung up, EPROTO on a malformed frame). */
int phpc_recv(int fd, struct phpc_msg *m, int timeout_ms, int *fds, size_t max_fds, size_t *n_fds);

#endif
