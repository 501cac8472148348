/*
 * version.h - the Slurm the plugin was built for against the one loading
 * it. SPANK items and callbacks move between Slurm releases (pyxis has
 * version checks too); a plugin built for another release refuses to load
 * rather than misread slurmstepd. No Slurm calls.
 */
#ifndef PHPC_VERSION_H
#define PHPC_VERSION_H

#include <stddef.h>

/* Checks the running Slurm's major and minor release (S_SLURM_VERSION_MAJOR
 * and _MINOR: "22", "05") against built (SLURM_VERSION_NUMBER of the headers
 * the plugin was compiled with, 0xMMmmuu). Returns 0 when they are the same
 * release, else -1 with the reason and the fix in err. */
int phpc_slurm_version_check(const char *major, const char *minor, unsigned long built, char *err, size_t errlen);

/* The same check as the plugin is loaded, from what the running Slurm's
 * slurm_api_version() returns (api, 0xCCrraa: libslurm's interface number
 * CC, which every release moves by one) rather than a SPANK item: Slurm's
 * loader refuses a plugin of another release before any callback runs.
 * Returns 0 when api is built's release, else -1 with the reason and the
 * fix in err (naming the release where the interface number is known). */
int phpc_slurm_api_check(unsigned long api, unsigned long built, char *err, size_t errlen);

#endif
