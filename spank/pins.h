/*
 * pins.h - the job's tag-to-digest list, PODMAN_HPC_IMAGE_DIGESTS: entries
 * "REF=PINNED" separated by spaces, where PINNED is REF's tag with its digest
 * (NAME:TAG@sha256:...). srun and sbatch write it once per job and image
 * (pin.c); slurmstepd reads it on every node, so every step of the job runs
 * the digest its first use saw. A registry reference holds neither '=' nor a
 * space.
 */
#ifndef PHPC_PINS_H
#define PHPC_PINS_H

#include <stddef.h>

#define PHPC_PINS_ENV "PODMAN_HPC_IMAGE_DIGESTS"

/* Copies the PINNED of ref in list (NULL: none) into out; returns 0, or -1
 * when ref is not in the list or the entry does not fit. */
int phpc_pins_lookup(const char *list, const char *ref, char *out, size_t len);

/* Writes list (NULL: empty) with "ref=pinned" added into out; returns 0, or
 * -1 when it does not fit or ref or pinned holds a space or ref an '='. */
int phpc_pins_add(const char *list, const char *ref, const char *pinned, char *out, size_t len);

#endif
