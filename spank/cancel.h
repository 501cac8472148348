/*
 * cancel.h - whether a step's job has ended (scancel, its time limit) while
 * slurmstepd waits for the daemon to make the step's container.
 */
#ifndef PHPC_CANCEL_H
#define PHPC_CANCEL_H

#include <stddef.h>
#include <stdint.h>

/* How long the plugin waits for the daemon's answer before it first asks
 * Slurm whether the job is still running, and then between two asks. */
#define PHPC_CANCEL_CHECK_MS 3000

/* Every node of a waiting step asks on its own: a large job's asks are
 * spread out so that slurmctld gets at most this many a second in all. */
#define PHPC_CANCEL_ASKS_PER_S 50

/* The time between two asks of one node of a job of nnodes nodes:
 * PHPC_CANCEL_CHECK_MS, or more for a large job (PHPC_CANCEL_ASKS_PER_S). */
int phpc_cancel_interval_ms(uint32_t nnodes);

/* How long one ask may take (squeue's answer; slurmctld's MessageTimeout
 * is 10 s by default). */
#define PHPC_CANCEL_ASK_MS 10000

/* The squeue beside the running slurmstepd: PREFIX/bin/squeue for
 * PREFIX/sbin/slurmstepd. Returns 0, or -1 (out unset) when /proc/self/exe
 * cannot be read or the path does not fit. */
int phpc_default_squeue(char *out, size_t len);

/* 1 when squeue (an absolute path), run as the caller's effective user,
 * says job is no longer running (cancelled, timed out, completing,
 * requeued); 0 when it runs, or cannot be told within limit_ms, or squeue
 * cannot be run: the check is then skipped, and the daemon's own timeout
 * still ends the wait. Returns 0 early when watch_fd (if >= 0) becomes
 * readable meanwhile. Forks; the child is reaped before it returns. */
int phpc_job_ended(const char *squeue, uint32_t job, int watch_fd, int limit_ms);

#endif
