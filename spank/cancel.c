/*
 * cancel.c - asks slurmctld whether the step's job still runs.
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
 * slurm_load_job is libslurm's, which slurmstepd has loaded: weak here,
 * so that the plugin still loads (and the cgo tests link) where it is not.
 */
#include <stddef.h>

#include <slurm/slurm.h>
#include <slurm/slurm_version.h>

#include "cancel.h"

#if SLURM_VERSION_NUMBER >= SLURM_VERSION_NUM(23, 0, 0)
/* Slurm 24.11's slurmstepd holds its auth plugin's lock around user_init:
 * an RPC from there aborts it ("fatal: auth_g_create:
 * pthread_rwlock_rdlock(): Resource deadlock avoided"). Until the check
 * has a way that is safe there, it is off after 22.05 (the release it was
 * tested in): a cancelled step then waits for its helper's deadline. */
int phpc_job_ended(uint32_t job)
{
	(void)job;
	return 0;
}
#else
#pragma weak slurm_load_job
#pragma weak slurm_free_job_info_msg

int phpc_job_ended(uint32_t job)
{
	job_info_msg_t *msg = NULL;
	int ended = 0;
	uint32_t state;

	if (slurm_load_job == NULL || slurm_free_job_info_msg == NULL)
		return 0;
	if (slurm_load_job(&msg, job, SHOW_ALL) != SLURM_SUCCESS || msg == NULL)
		return 0;
	if (msg->record_count >= 1) {
		state = msg->job_array[0].job_state;
		ended = (state & JOB_STATE_BASE) != JOB_RUNNING || (state & JOB_COMPLETING) != 0;
	}
	slurm_free_job_info_msg(msg);
	return ended;
}
#endif
