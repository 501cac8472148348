/*
 * stepd.c - the slurmstepd side: asks the node's podman-hpcd for the step's
 * container. Runs as root in init_post_opt (so the daemon sees slurmstepd's
 * credentials on the socket), then as the job user in user_init.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <slurm/spank.h>

#include "client.h"
#include "podman_hpc.h"
#include "proto.h"

static void keep_error(const char *fmt, const char *detail)
{
	if (phpc.error[0] == '\0')
		snprintf(phpc.error, sizeof(phpc.error), fmt, detail);
}

/* Sends m and waits for the daemon's final answer; PROGRESS lines go to the
 * step's log. Returns 0 on OK, -1 after keeping the reason. */
static int request(struct phpc_msg *m, struct phpc_msg *reply)
{
	for (;;) {
		phpc_msg_free(reply);
		if (m != NULL && phpc_send(phpc.daemon_fd, m) < 0) {
			keep_error("couldn't send a request to podman-hpcd: %s", strerror(errno));
			return -1;
		}
		m = NULL;
		if (phpc_recv(phpc.daemon_fd, reply, phpc.cfg.timeout * 1000, NULL, 0, NULL) < 0) {
			keep_error("no answer from podman-hpcd: %s; see the daemon's log on this node", strerror(errno));
			return -1;
		}
		switch (reply->type) {
		case PHPC_MSG_PROGRESS:
			slurm_verbose(PHPC_NAME ": %s", phpc_msg_get(reply, "message") ?: "");
			continue;
		case PHPC_MSG_OK:
			return 0;
		case PHPC_MSG_ERROR:
			keep_error("%s", phpc_msg_get(reply, "message") ?: "podman-hpcd failed without saying why");
			return -1;
		default:
			keep_error("podman-hpcd sent an unexpected message; is the daemon the same version as the plugin?%s", "");
			return -1;
		}
	}
}

int phpc_stepd_post_opt(spank_t sp)
{
	struct phpc_msg hello, reply;
	char err[512];
	int rv = 0;

	(void)sp;
	if (phpc.args.image == NULL)
		return 0;
	phpc.daemon_fd = phpc_connect(phpc.cfg.socket, err, sizeof(err));
	if (phpc.daemon_fd < 0) {
		keep_error("%s", err);
		return 0; /* reported from the task, where srun shows it */
	}
	phpc_msg_init(&hello, PHPC_MSG_HELLO);
	phpc_msg_init(&reply, 0);
	if (phpc_msg_add(&hello, "client", "spank") < 0 ||
	    phpc_msg_add(&hello, "plugin_version", PHPC_VERSION) < 0) {
		keep_error("couldn't build a request: %s", strerror(errno));
		rv = 0;
	} else {
		request(&hello, &reply);
	}
	phpc_msg_free(&hello);
	phpc_msg_free(&reply);
	return rv;
}

static int add_u32(struct phpc_msg *m, const char *key, uint32_t v)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%" PRIu32, v);
	return phpc_msg_add(m, key, buf);
}

static int add_flag(struct phpc_msg *m, const char *key, int v, int dflt)
{
	return phpc_msg_add(m, key, (v == PHPC_UNSET ? dflt : v) ? "1" : "0");
}

/* The CONTAINER request: everything the daemon needs to build the step's container. */
static int build_container_request(spank_t sp, struct phpc_msg *m)
{
	uint32_t job = 0, step = 0;
	uid_t uid;
	gid_t gid;
	char mount[8192];
	size_t i;
	int rc = 0;

	if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_STEPID, &step) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, &gid) != ESPANK_SUCCESS) {
		errno = EINVAL;
		return -1;
	}
	rc |= add_u32(m, "job", job);
	rc |= add_u32(m, "step", step);
	rc |= add_u32(m, "uid", (uint32_t)uid);
	rc |= add_u32(m, "gid", (uint32_t)gid);
	rc |= phpc_msg_add(m, "image", phpc.args.image);
	if (phpc.args.workdir)
		rc |= phpc_msg_add(m, "workdir", phpc.args.workdir);
	for (i = 0; i < phpc.args.n_mounts; i++) {
		const struct phpc_mount *mt = &phpc.args.mounts[i];
		snprintf(mount, sizeof(mount), "%s:%s%s%s", mt->src, mt->dst, mt->flags ? ":" : "", mt->flags ? mt->flags : "");
		rc |= phpc_msg_add(m, "mount", mount);
	}
	for (i = 0; i < phpc.args.n_env_names; i++)
		rc |= phpc_msg_add(m, "env_name", phpc.args.env_names[i]);
	rc |= add_flag(m, "writable", phpc.args.writable, phpc.cfg.container_writable);
	rc |= add_flag(m, "mount_home", phpc.args.mount_home, phpc.cfg.container_mount_home);
	return rc ? -1 : 0;
}

int phpc_stepd_user_init(spank_t sp)
{
	struct phpc_msg req, reply;

	if (phpc.args.image == NULL || phpc.daemon_fd < 0 || phpc.error[0] != '\0')
		return 0;
	phpc_msg_init(&req, PHPC_MSG_CONTAINER);
	phpc_msg_init(&reply, 0);
	if (build_container_request(sp, &req) < 0)
		keep_error("couldn't build the container request: %s", strerror(errno));
	else
		request(&req, &reply);
	phpc_msg_free(&req);
	phpc_msg_free(&reply);
	return 0; /* errors here are dropped by Slurm: reported per task instead */
}

int phpc_stepd_task_init_privileged(spank_t sp)
{
	(void)sp;
	if (phpc.args.image == NULL)
		return 0;
	if (phpc.error[0] != '\0') {
		slurm_error(PHPC_NAME ": %s", phpc.error);
		return -1;
	}
	return 0;
}

void phpc_stepd_exit(spank_t sp)
{
	(void)sp;
	if (phpc.daemon_fd >= 0)
		close(phpc.daemon_fd);
	phpc.daemon_fd = -1;
}
