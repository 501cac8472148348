/*
 * request.c - the CONTAINER request (see request.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "request.h"

const char *const phpc_mount_flags[] = {
	"ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec",
	"private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable", NULL,
};

const char *const phpc_tmpfs_flags[] = { "ro", "rw", "nosuid", "nodev", "noexec", NULL };

const char *const phpc_name_modes[] = { "auto", "create", "exec", "no_exec", NULL };

const char *const phpc_unshare_namespaces[] = { "net", "ipc", "uts", NULL };

const struct phpc_auth_file phpc_auth_files[] = {
	{ "REGISTRY_AUTH_FILE", "" },
	{ "XDG_RUNTIME_DIR", "/containers/auth.json" },
	{ "HOME", "/.config/containers/auth.json" },
	{ "HOME", "/.docker/config.json" },
	{ NULL, NULL },
};

static int add_u32(struct phpc_msg *m, const char *key, uint32_t v)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%" PRIu32, v);
	return phpc_msg_add(m, key, buf);
}

static int add_flag(struct phpc_msg *m, const char *key, int v, int dflt)
{
	return phpc_msg_add(m, key, (v == PHPC_UNSET ? dflt : v) ? "1" : "0");
}

int phpc_request_encode(struct phpc_msg *m, const struct phpc_request *r)
{
	const struct phpc_args *a = r->args;
	char mount[8192];
	size_t i;
	int rc = 0;

	rc |= add_u32(m, "job", r->job);
	rc |= add_u32(m, "step", r->step);
	rc |= add_u32(m, "uid", r->uid);
	rc |= add_u32(m, "gid", r->gid);
	if (r->user != NULL) {
		char group[512];

		rc |= phpc_msg_add(m, "user", r->user);
		rc |= phpc_msg_add(m, "home", r->home ? r->home : "");
		rc |= phpc_msg_add(m, "shell", r->shell ? r->shell : "");
		for (i = 0; i < r->n_groups; i++) {
			int n = snprintf(group, sizeof(group), "%" PRIu32 ":%s", r->groups[i].gid, r->groups[i].name ? r->groups[i].name : "");
			if (n < 0 || n >= (int)sizeof(group)) {
				errno = ENAMETOOLONG;
				return -1;
			}
			rc |= phpc_msg_add(m, "group", group);
		}
	}
	rc |= phpc_msg_add(m, "plugin_version", r->plugin_version);
	if (a->image != NULL)
		rc |= phpc_msg_add(m, "image", a->image);
	if (a->workdir != NULL)
		rc |= phpc_msg_add(m, "workdir", a->workdir);
	for (i = 0; i < a->n_mounts; i++) {
		const struct phpc_mount *mt = &a->mounts[i];
		int n = snprintf(mount, sizeof(mount), "%s:%s%s%s", mt->src, mt->dst, mt->flags ? ":" : "", mt->flags ? mt->flags : "");
		if (n < 0 || n >= (int)sizeof(mount)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		rc |= phpc_msg_add(m, "mount", mount);
	}
	rc |= add_flag(m, "writable", a->writable, r->cfg->container_writable);
	rc |= add_flag(m, "mount_home", a->mount_home, r->cfg->container_mount_home);
	rc |= add_flag(m, "entrypoint", a->entrypoint, r->cfg->execute_entrypoint);
	rc |= add_flag(m, "remap_root", a->remap_root, 0);
	if (a->entrypoint_log)
		rc |= phpc_msg_add(m, "entrypoint_log", "1");
	if (a->name != NULL) {
		rc |= phpc_msg_add(m, "name", a->name);
		rc |= phpc_msg_add(m, "name_mode", a->name_mode);
		rc |= phpc_msg_add(m, "scope", r->cfg->scope_global ? "global" : "job");
	}
	if (a->unshare != NULL)
		rc |= phpc_msg_add(m, "unshare", a->unshare);
	/* One node saves (the path is usually on a shared file system). */
	if (a->save != NULL && r->saves)
		rc |= phpc_msg_add(m, "save", a->save);
	if (r->command != NULL) {
		/* hooks.d "commands" conditions match the step's command. */
		rc |= phpc_msg_add(m, "command", r->command);
		/* The batch script runs inside: the container must see it (read-only). */
		if (r->step == PHPC_BATCH_STEP && r->command[0] == '/')
			rc |= phpc_msg_add(m, "script", r->command);
	}
	if (a->hooks != NULL)
		rc |= phpc_msg_add(m, "hooks", a->hooks);
	for (i = 0; r->jobenv != NULL && r->jobenv[i] != NULL; i++)
		rc |= phpc_msg_add(m, "jobenv", r->jobenv[i]);
	if (r->auth != NULL)
		rc |= phpc_msg_add(m, "auth", r->auth);
	return rc ? -1 : 0;
}
