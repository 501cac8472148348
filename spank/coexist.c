/*
 * coexist.c - finds pyxis loaded beside this plugin.
 *
 * pyxis and podman-hpc both provide --container-image and the other
 * --container-* options: Slurm would take one plugin's options and refuse
 * the other's, or mix their meanings between srun and the nodes. A site
 * moving from pyxis runs one of them per node (plugstack.conf, or the
 * partitions= key for a pilot); this finds the mistake and names it.
 * Slurm opens every plugin of plugstack.conf before it calls any init, so
 * pyxis is found whichever comes first.
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <string.h>

#include "coexist.h"

struct found {
	char *name;
	size_t len;
	int yes;
};

static int look(struct dl_phdr_info *info, size_t size, void *data)
{
	struct found *f = data;
	const char *base;

	(void)size;
	if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0')
		return 0;
	base = strrchr(info->dlpi_name, '/');
	base = base ? base + 1 : info->dlpi_name;
	if (strncmp(base, "spank_pyxis", 11) != 0)
		return 0;
	snprintf(f->name, f->len, "%s", base);
	f->yes = 1;
	return 1;
}

int phpc_pyxis_loaded(char *name, size_t len)
{
	struct found f = { .name = name, .len = len, .yes = 0 };

	dl_iterate_phdr(look, &f);
	return f.yes;
}
