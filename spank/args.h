/*
 * args.h - the user's --container-* options, parsed and validated.
 *
 * Pure logic: no Slurm calls, so the same code is unit-tested through cgo
 * (spank/cgotest). Every setter writes a one-line reason into err on failure.
 */
#ifndef PHPC_ARGS_H
#define PHPC_ARGS_H

#include <stddef.h>

/* Tri-state for flags that have an admin default: unset means "use it". */
enum phpc_tristate { PHPC_UNSET = -1, PHPC_NO = 0, PHPC_YES = 1 };

struct phpc_mount {
	char *src;
	char *dst;
	char *flags; /* '+'-joined, as the user wrote them; NULL when none */
};

struct phpc_args {
	char *image;
	char *workdir;
	struct phpc_mount *mounts;
	size_t n_mounts;
	char **env_names; /* --container-env: host values win for these */
	size_t n_env_names;
	int writable;     /* enum phpc_tristate */
	int mount_home;   /* enum phpc_tristate */
	char *name;       /* --container-name's NAME */
	char *name_mode;  /* its mode: auto (default), create, exec, no_exec */
	char *save;       /* --container-save's PATH */
	int entrypoint;   /* enum phpc_tristate */
	int entrypoint_log;
	int remap_root;   /* enum phpc_tristate */
	char *unshare;    /* --container-unshare: comma-separated, validated */
	char *hooks;      /* --container-hooks, as given: the daemon resolves the names */
};

void phpc_args_init(struct phpc_args *a);
void phpc_args_free(struct phpc_args *a);

/* Each returns 0, or -1 with a reason in err. */
int phpc_args_set_image(struct phpc_args *a, const char *v, char *err, size_t errlen);
int phpc_args_set_workdir(struct phpc_args *a, const char *v, char *err, size_t errlen);
int phpc_args_add_mounts(struct phpc_args *a, const char *v, char *err, size_t errlen);
int phpc_args_add_env_names(struct phpc_args *a, const char *v, char *err, size_t errlen);
int phpc_args_set_hooks(struct phpc_args *a, const char *v, char *err, size_t errlen);

int phpc_args_set_name(struct phpc_args *a, const char *v, char *err, size_t errlen);
int phpc_args_set_save(struct phpc_args *a, const char *v, char *err, size_t errlen);
int phpc_args_set_unshare(struct phpc_args *a, const char *v, char *err, size_t errlen);

/* --container-mounts' special sources (pkg/wire's TmpfsSource, UmountSource). */
#define PHPC_TMPFS_SOURCE "tmpfs"
#define PHPC_UMOUNT_SOURCE "umount"

/* Decodes fstab's octal escapes (\040 a space...) of in into out, as
 * pkg/wire's UnescapeFstab. Returns 0, or -1 with errno (EINVAL for \000,
 * ENAMETOOLONG when out is too short). */
int phpc_fstab_unescape(const char *in, char *out, size_t outlen);

/* In srun, before the job: every absolute mount source exists, and an
 * absolute --container-save path is no directory (relative ones are the
 * job's working directory's, which srun does not know: slurmstepd's). Returns 0, or -1
 * with the reason in err. */
int phpc_args_check_local(const struct phpc_args *a, char *err, size_t errlen);

/* In slurmstepd: makes the relative paths of the user's options (a
 * squashfs image, mount sources, the save path) absolute in cwd, the job's
 * working directory, as a shell there reads them. Returns 0, or -1 with the
 * reason in err. */
int phpc_args_resolve(struct phpc_args *a, const char *cwd, char *err, size_t errlen);

/* Sets a tri-state flag; giving both spellings (e.g. --container-writable and
 * --container-readonly) with different meanings is an error, as in pyxis. */
int phpc_args_set_flag(int *flag, int value, const char *name, char *err, size_t errlen);

#endif
