/*
 * pin.h - one digest per job (pin.c).
 */
#ifndef PHPC_PIN_H
#define PHPC_PIN_H

#include <slurm/spank.h>

/* The job control variable (SPANK_ prefixed in the prolog) naming the
 * pinned image the job prolog prefetches on every node (prolog.c). */
#define PHPC_PREFETCH_ENV "PODMAN_HPC_PREFETCH"

/* srun, sbatch, salloc: pin phpc.args.image's tag to a digest for the job
 * (PODMAN_HPC_IMAGE_DIGESTS in the environment the job gets), unless the job
 * has it already. phpc_pin_start runs the helper; phpc_pin_finish waits for
 * its answer and puts it in the environment (and, with prefetch, in the job
 * control environment for the job prolog: only before the allocation).
 * sbatch and salloc do both at once; srun starts in init_post_opt and
 * finishes in local_user_init, so that the helper runs while the job is
 * allocated. phpc_pin_finish returns -1, having said why, when the image
 * cannot be resolved: the job would not get it either. phpc_pin_abandon
 * stops a helper that nobody waits for any more (srun ending early). */
int phpc_pin_start(spank_t sp);
int phpc_pin_finish(spank_t sp, int prefetch);
void phpc_pin_abandon(void);

/* slurmd's job prolog: asks the daemon to prefetch the job's image. */
int phpc_job_prolog(spank_t sp);

/* slurmstepd: replaces phpc.args.image with the job's pinned form, if any. */
int phpc_stepd_apply_pin(spank_t sp);

#endif
