/*
 * prolog.c - the job prolog (in slurmd's prolog process, as root, on every
 * node of the allocation when it is made, with PrologFlags=Alloc,NoHold): the
 * job's image, pinned by sbatch or srun (pin.c: SPANK_PODMAN_HPC_PREFETCH in
 * the job control environment), starts coming onto the node now, so that
 * the first step does not wait for it. The daemon pulls in the background
 * for the job user; the step shares that pull, or finds the image cached.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <slurm/spank.h>

#include "client.h"
#include "pin.h"
#include "podman_hpc.h"
#include "proto.h"

/* The daemon answers at once: the pull goes on without the prolog. */
#define PROLOG_TIMEOUT_MS 10000

/* Always 0: a failed prolog drains the node, and a prefetch is only a head
 * start (the step pulls what is missing, and says why it cannot). */
int phpc_job_prolog(spank_t sp)
{
	struct phpc_msg req, reply;
	char err[512], id[16], uid_s[16], gid_s[16];
	const char *ref = getenv("SPANK_" PHPC_PREFETCH_ENV);
	uint32_t job = 0;
	uid_t uid;
	gid_t gid;
	int fd;

	if (ref == NULL || ref[0] == '\0')
		return 0;
	/* A partition without containers (partitions=): nothing to fetch. */
	if (!phpc_config_partition_enabled(&phpc.cfg, getenv("SLURM_JOB_PARTITION")))
		return 0;
	if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS || spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, &gid) != ESPANK_SUCCESS)
		return 0;
	fd = phpc_connect(phpc.cfg.socket, err, sizeof(err));
	if (fd < 0) {
		slurm_info(PHPC_NAME ": job %" PRIu32 " prolog: %s", job, err);
		return 0;
	}
	snprintf(id, sizeof(id), "%" PRIu32, job);
	snprintf(uid_s, sizeof(uid_s), "%u", (unsigned)uid);
	snprintf(gid_s, sizeof(gid_s), "%u", (unsigned)gid);
	phpc_msg_init(&req, PHPC_MSG_PULL);
	phpc_msg_init(&reply, 0);
	if (phpc_msg_add(&req, "ref", ref) < 0 || phpc_msg_add(&req, "prefetch", "1") < 0 || phpc_msg_add(&req, "job", id) < 0 ||
	    phpc_msg_add(&req, "uid", uid_s) < 0 || phpc_msg_add(&req, "gid", gid_s) < 0 || phpc_send(fd, &req) < 0) {
		slurm_info(PHPC_NAME ": job %" PRIu32 " prolog: couldn't ask podman-hpcd to prefetch %s: %s", job, ref, strerror(errno));
		goto out;
	}
	do {
		phpc_msg_free(&reply);
		if (phpc_recv(fd, &reply, PROLOG_TIMEOUT_MS, NULL, 0, NULL) < 0) {
			slurm_info(PHPC_NAME ": job %" PRIu32 " prolog: no answer from podman-hpcd: %s", job, strerror(errno));
			goto out;
		}
	} while (reply.type == PHPC_MSG_PROGRESS);
	if (reply.type == PHPC_MSG_ERROR)
		slurm_info(PHPC_NAME ": job %" PRIu32 " prolog: prefetch of %s: %s", job, ref, phpc_msg_get(&reply, "message") ?: "failed without saying why");
out:
	phpc_msg_free(&req);
	phpc_msg_free(&reply);
	close(fd);
	return 0;
}
