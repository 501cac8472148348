/*
 * config.c - plugstack.conf arguments (see config.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

#define KNOWN_KEYS "socket, container_mount_home, container_writable, sbatch_support, execute_entrypoint, container_scope, timeout, podman_hpcd, daemon_config, partitions, squeue"

void phpc_config_defaults(struct phpc_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->socket, sizeof(c->socket), "%s", PHPC_DEFAULT_SOCKET);
	c->container_mount_home = 1;
	c->container_writable = 0;
	c->sbatch_support = 1;
	c->timeout = 600;
	snprintf(c->podman_hpcd, sizeof(c->podman_hpcd), "%s", PHPC_DEFAULT_PODMAN_HPCD);
	snprintf(c->daemon_config, sizeof(c->daemon_config), "%s", PHPC_DEFAULT_DAEMON_CONFIG);
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "1", "yes", "true", "on", NULL };
	static const char *const no[] = { "0", "no", "false", "off", NULL };
	int i;

	for (i = 0; yes[i]; i++)
		if (strcasecmp(v, yes[i]) == 0)
			return *out = 1, 0;
	for (i = 0; no[i]; i++)
		if (strcasecmp(v, no[i]) == 0)
			return *out = 0, 0;
	return -1;
}

int phpc_config_parse(struct phpc_config *c, int argc, char **argv, char *err, size_t errlen)
{
	int i, *flag;
	const char *eq, *v;
	size_t klen;
	char *end;
	long n;

	for (i = 0; i < argc; i++) {
		eq = strchr(argv[i], '=');
		if (eq == NULL || eq == argv[i]) {
			snprintf(err, errlen, "plugstack.conf: argument \"%s\" is not key=value (known keys: %s)", argv[i], KNOWN_KEYS);
			return -1;
		}
		klen = (size_t)(eq - argv[i]);
		v = eq + 1;
		flag = NULL;
		if (klen == 6 && strncmp(argv[i], "socket", klen) == 0) {
			if (v[0] != '/' || strlen(v) >= sizeof(c->socket)) {
				snprintf(err, errlen, "plugstack.conf: socket=\"%s\" must be an absolute path", v);
				return -1;
			}
			snprintf(c->socket, sizeof(c->socket), "%s", v);
			continue;
		} else if ((klen == 11 && strncmp(argv[i], "podman_hpcd", klen) == 0) ||
			   (klen == 13 && strncmp(argv[i], "daemon_config", klen) == 0) ||
			   (klen == 6 && strncmp(argv[i], "squeue", klen) == 0)) {
			char *dst = klen == 11 ? c->podman_hpcd : klen == 13 ? c->daemon_config : c->squeue;

			if (v[0] != '/' || strlen(v) >= PATH_MAX) {
				snprintf(err, errlen, "plugstack.conf: %.*s=\"%s\" must be an absolute path", (int)klen, argv[i], v);
				return -1;
			}
			snprintf(dst, PATH_MAX, "%s", v);
			continue;
		} else if (klen == 7 && strncmp(argv[i], "timeout", klen) == 0) {
			n = strtol(v, &end, 10);
			if (*v == '\0' || *end != '\0' || n <= 0 || n > 86400) {
				snprintf(err, errlen, "plugstack.conf: timeout=\"%s\" must be a number of seconds between 1 and 86400", v);
				return -1;
			}
			c->timeout = (int)n;
			continue;
		} else if (klen == 20 && strncmp(argv[i], "container_mount_home", klen) == 0) {
			flag = &c->container_mount_home;
		} else if (klen == 18 && strncmp(argv[i], "container_writable", klen) == 0) {
			flag = &c->container_writable;
		} else if (klen == 14 && strncmp(argv[i], "sbatch_support", klen) == 0) {
			flag = &c->sbatch_support;
		} else if (klen == 18 && strncmp(argv[i], "execute_entrypoint", klen) == 0) {
			flag = &c->execute_entrypoint;
		} else if (klen == 10 && strncmp(argv[i], "partitions", klen) == 0) {
			if (*v == '\0' || *v == ',' || strlen(v) >= sizeof(c->partitions) ||
			    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-,") != strlen(v) ||
			    strstr(v, ",,") != NULL || v[strlen(v) - 1] == ',') {
				snprintf(err, errlen, "plugstack.conf: partitions=\"%s\" must be a comma-separated list of partition names", v);
				return -1;
			}
			snprintf(c->partitions, sizeof(c->partitions), "%s", v);
			continue;
		} else if (klen == 15 && strncmp(argv[i], "container_scope", klen) == 0) {
			if (strcmp(v, "job") != 0 && strcmp(v, "global") != 0) {
				snprintf(err, errlen, "plugstack.conf: container_scope=\"%s\" must be job or global", v);
				return -1;
			}
			c->scope_global = strcmp(v, "global") == 0;
			continue;
		}
		if (flag == NULL) {
			snprintf(err, errlen, "plugstack.conf: unknown key \"%.*s\" (known keys: %s)", (int)klen, argv[i], KNOWN_KEYS);
			return -1;
		}
		if (parse_bool(v, flag) < 0) {
			snprintf(err, errlen, "plugstack.conf: %.*s=\"%s\" is not a boolean (use 1 or 0)", (int)klen, argv[i], v);
			return -1;
		}
	}
	return 0;
}

/* Whether the one partition name of plen bytes at partition is in
 * c->partitions. */
static int partition_listed(const struct phpc_config *c, const char *partition, size_t plen)
{
	const char *p = c->partitions, *comma;
	size_t len;

	for (;;) {
		comma = strchr(p, ',');
		len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == plen && strncmp(p, partition, len) == 0)
			return 1;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

int phpc_config_partition_enabled(const struct phpc_config *c, const char *partition)
{
	const char *comma;
	size_t len;

	if (c->partitions[0] == '\0')
		return 1;
	if (partition == NULL || *partition == '\0')
		return 0;
	/* srun -p a,b: the job's environment names them all, not the one it
	 * runs on, which the step cannot learn; every one must have them. */
	for (;;) {
		comma = strchr(partition, ',');
		len = comma ? (size_t)(comma - partition) : strlen(partition);
		if (len == 0 || !partition_listed(c, partition, len))
			return 0;
		if (comma == NULL)
			return 1;
		partition = comma + 1;
	}
}
