/*
 * version.c - the Slurm release check (see version.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "version.h"

static int number(const char *s, unsigned long *out)
{
	char *end;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno != 0 || *end != '\0' || *out > 255 ? -1 : 0;
}

int phpc_slurm_version_check(const char *major, const char *minor, unsigned long built, char *err, size_t errlen)
{
	unsigned long maj, min, bmaj = (built >> 16) & 0xff, bmin = (built >> 8) & 0xff;

	if (number(major, &maj) < 0 || number(minor, &min) < 0) {
		snprintf(err, errlen, "podman-hpc: couldn't tell this Slurm's release (\"%s.%s\"); the plugin was built for Slurm %lu.%02lu",
			 major ? major : "?", minor ? minor : "?", bmaj, bmin);
		return -1;
	}
	if (maj != bmaj || min != bmin) {
		snprintf(err, errlen, "podman-hpc: this plugin was built for Slurm %lu.%02lu but runs in Slurm %lu.%02lu; rebuild it (make) where this Slurm's development headers are installed",
			 bmaj, bmin, maj, min);
		return -1;
	}
	return 0;
}

/* libslurm's interface number (its soname: libslurm.so.42) of each release. */
static const struct {
	unsigned long api, major, minor;
} releases[] = {
	{ 37, 21, 8 }, { 38, 22, 5 }, { 39, 23, 2 }, { 40, 23, 11 }, { 41, 24, 5 },
	{ 42, 24, 11 }, { 43, 25, 5 }, { 44, 25, 11 },
};

int phpc_slurm_api_check(unsigned long api, unsigned long built, char *err, size_t errlen)
{
	unsigned long cur = (api >> 16) & 0xff, bmaj = (built >> 16) & 0xff, bmin = (built >> 8) & 0xff;
	char major[8], minor[8];
	size_t i;

	for (i = 0; i < sizeof(releases) / sizeof(releases[0]); i++) {
		if (releases[i].api != cur)
			continue;
		snprintf(major, sizeof(major), "%lu", releases[i].major);
		snprintf(minor, sizeof(minor), "%lu", releases[i].minor);
		return phpc_slurm_version_check(major, minor, built, err, errlen);
	}
	for (i = 0; i < sizeof(releases) / sizeof(releases[0]); i++) {
		/* Built for a known release: any other interface is another one. */
		if (releases[i].major == bmaj && releases[i].minor == bmin) {
			snprintf(err, errlen, "podman-hpc: this plugin was built for Slurm %lu.%02lu but runs in a Slurm whose libslurm is interface %lu; rebuild it (make) where this Slurm's development headers are installed",
				 bmaj, bmin, cur);
			return -1;
		}
	}
	return 0; /* neither is known here: Slurm's own check decides */
}
