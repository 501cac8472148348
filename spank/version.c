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
