/*
 * pytorch.h - the variables torch.distributed reads, for an image that has
 * PyTorch (PYTORCH_VERSION), derived from Slurm's as enroot's PyTorch hook
 * derives them (pyxis runs it). No Slurm calls.
 */
#ifndef PHPC_PYTORCH_H
#define PHPC_PYTORCH_H

#include <stddef.h>
#include <stdint.h>

/* Writes the first host of a Slurm host list ("node[01-04],gpu1" gives
 * "node01": the first of each bracket's first range) into out. Returns 0,
 * or -1 (errno EINVAL) for a list it cannot read, or ENAMETOOLONG. */
int phpc_first_host(const char *list, char *out, size_t len);

/* MASTER_PORT for job: enroot's, job % 4536 + 61000, so that the job's
 * steps agree without talking. */
unsigned phpc_pytorch_port(uint32_t job);

#endif
