/*
 * cancel.h - whether a step's job has ended (scancel, its time limit) while
 * slurmstepd waits for the daemon to make the step's container.
 */
#ifndef PHPC_CANCEL_H
#define PHPC_CANCEL_H

#include <stdint.h>

/* How long the plugin waits for the daemon's answer before it first asks
 * Slurm whether the job is still running, and then between two asks. */
#define PHPC_CANCEL_CHECK_MS 3000

/* 1 when slurmctld says job is no longer running (cancelled, timed out,
 * completing), 0 when it runs or cannot be asked (the check is then
 * skipped: the daemon's own timeout still ends the wait). */
int phpc_job_ended(uint32_t job);

#endif
