/*
 * coexist.h - pyxis and podman-hpc on one node.
 */
#ifndef PHPC_COEXIST_H
#define PHPC_COEXIST_H

#include <stddef.h>

/* Writes into name (size len) the file name of a loaded pyxis plugin
 * (spank_pyxis*.so) and returns 1, or returns 0 when none is loaded. */
int phpc_pyxis_loaded(char *name, size_t len);

#endif
