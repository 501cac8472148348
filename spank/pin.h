/*
 * pin.h - one digest per job (pin.c).
 */
#ifndef PHPC_PIN_H
#define PHPC_PIN_H

#include <slurm/spank.h>

/* srun, sbatch, salloc: pins phpc.args.image's tag to a digest for the job
 * (PODMAN_HPC_IMAGE_DIGESTS in the environment the job gets), unless the job
 * has it already. Returns -1, having said why, when the image cannot be
 * resolved: the job would not get it either. */
int phpc_pin_image(void);

/* slurmstepd: replaces phpc.args.image with the job's pinned form, if any. */
int phpc_stepd_apply_pin(spank_t sp);

#endif
