/*
 * pin.h - one digest per job (pin.c).
 */
#ifndef PHPC_PIN_H
#define PHPC_PIN_H

#include <slurm/spank.h>

/* The job control variable (SPANK_ prefixed in the prolog) naming the
 * pinned image the job prolog prefetches on every node (prolog.c). */
#define PHPC_PREFETCH_ENV "PODMAN_HPC_PREFETCH"

/* srun, sbatch, salloc: pins phpc.args.image's tag to a digest for the job
 * (PODMAN_HPC_IMAGE_DIGESTS in the environment the job gets), unless the job
 * has it already. Returns -1, having said why, when the image cannot be
 * resolved: the job would not get it either. */
int phpc_pin_image(spank_t sp);

/* slurmd's job prolog: asks the daemon to prefetch the job's image. */
int phpc_job_prolog(spank_t sp);

/* slurmstepd: replaces phpc.args.image with the job's pinned form, if any. */
int phpc_stepd_apply_pin(spank_t sp);

#endif
