/*
 * args.c - parsing of the --container-* option values (see args.h).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "request.h"

void phpc_args_init(struct phpc_args *a)
{
	memset(a, 0, sizeof(*a));
	a->writable = PHPC_UNSET;
	a->mount_home = PHPC_UNSET;
	a->entrypoint = PHPC_UNSET;
	a->remap_root = PHPC_UNSET;
}

void phpc_args_free(struct phpc_args *a)
{
	size_t i;

	free(a->image);
	free(a->workdir);
	for (i = 0; i < a->n_mounts; i++) {
		free(a->mounts[i].src);
		free(a->mounts[i].dst);
		free(a->mounts[i].flags);
	}
	free(a->mounts);
	for (i = 0; i < a->n_env_names; i++)
		free(a->env_names[i]);
	free(a->env_names);
	free(a->name);
	free(a->name_mode);
	free(a->save);
	free(a->unshare);
	free(a->hooks);
	phpc_args_init(a);
}

static int has_space_or_ctrl(const char *s)
{
	for (; *s != '\0'; s++)
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			return 1;
	return 0;
}

/* Whether paths a and b are the same as typed, or once the relative one
 * is read in this process's working directory: a batch script's srun steps
 * inherit sbatch's paths made absolute (stepd.c), and a step may name the
 * same file again as ./x. */
static int same_path(const char *a, const char *b)
{
	char cwd[PATH_MAX];
	const char *rel, *abs;
	size_t n;

	if (strcmp(a, b) == 0)
		return 1;
	if ((a[0] == '/') == (b[0] == '/'))
		return 0;
	rel = a[0] == '/' ? b : a;
	abs = a[0] == '/' ? a : b;
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return 0;
	if (strcmp(cwd, "/") == 0)
		cwd[0] = '\0';
	n = strlen(cwd);
	return strncmp(abs, cwd, n) == 0 && abs[n] == '/' && strcmp(abs + n + 1, rel) == 0;
}

int phpc_args_set_image(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-image: empty image name; give IMAGE[:TAG], REGISTRY#IMAGE[:TAG] or a squashfs path");
		return -1;
	}
	if (has_space_or_ctrl(v)) {
		snprintf(err, errlen, "--container-image: \"%s\" contains white space", v);
		return -1;
	}
	/* pyxis: the same option given twice must agree (srun line vs #SBATCH). */
	if (a->image != NULL) {
		if (same_path(a->image, v))
			return 0;
		snprintf(err, errlen, "--container-image: given twice with different values (\"%s\" and \"%s\"); keep one", a->image, v);
		return -1;
	}
	a->image = strdup(v);
	if (a->image == NULL) {
		snprintf(err, errlen, "--container-image: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int phpc_args_set_workdir(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	/* A relative one is resolved inside the container's root by the
	 * daemon ("../" is /), as pyxis does. */
	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-workdir: empty path");
		return -1;
	}
	if (a->workdir != NULL && strcmp(a->workdir, v) != 0) {
		snprintf(err, errlen, "--container-workdir: given twice with different values (\"%s\" and \"%s\")", a->workdir, v);
		return -1;
	}
	free(a->workdir);
	a->workdir = strdup(v);
	return a->workdir ? 0 : -1;
}

static int in_list(const char *s, const char *const *list)
{
	size_t i;

	for (i = 0; list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

/* A tmpfs option's value: digits with an optional suffix from suffixes. */
static int is_size(const char *v, const char *suffixes)
{
	size_t n = strspn(v, "0123456789");

	if (n == 0 || n > 20)
		return 0;
	return v[n] == '\0' || (strchr(suffixes, v[n]) != NULL && v[n + 1] == '\0');
}

/* One option of tmpfs:/DST:OPTIONS, as pkg/wire's TmpfsOption checks it. */
static int is_tmpfs_option(const char *o)
{
	static const char *const huge[] = { "never", "always", "within_size", "advise", NULL };
	const char *v = strchr(o, '=');
	size_t n;

	if (v == NULL)
		return in_list(o, phpc_tmpfs_flags);
	v++;
	if (strncmp(o, "size=", 5) == 0)
		return is_size(v, "kKmMgGtTpPeE%");
	if (strncmp(o, "nr_blocks=", 10) == 0 || strncmp(o, "nr_inodes=", 10) == 0)
		return is_size(v, "kKmMgGtTpPeE");
	if (strncmp(o, "mode=", 5) == 0) {
		/* 1 to 4 octal digits, after an optional leading 0 */
		n = strspn(v, "01234567");
		return n >= 1 && v[n] == '\0' && (n <= 4 || (n == 5 && v[0] == '0'));
	}
	if (strncmp(o, "huge=", 5) == 0)
		return in_list(v, huge);
	return 0;
}

static int check_mount_flags(const char *flags, int tmpfs, char *err, size_t errlen)
{
	char *copy, *tok, *save = NULL;
	int rv = -1;

	copy = strdup(flags);
	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, "+", &save); tok; tok = strtok_r(NULL, "+", &save)) {
		if (tmpfs && !is_tmpfs_option(tok)) {
			snprintf(err, errlen, "--container-mounts: bad tmpfs option \"%s\" (known: size=, nr_blocks=, nr_inodes=, mode=, huge=, ro, rw, nosuid, nodev, noexec; join several with '+')", tok);
			goto out;
		}
		if (!tmpfs && !in_list(tok, phpc_mount_flags)) {
			snprintf(err, errlen, "--container-mounts: unknown mount flag \"%s\" (known: ro, rw, [r]bind, nosuid, nodev, noexec, [r]private, [r]slave, [r]shared, [r]unbindable; join several with '+')", tok);
			goto out;
		}
	}
	rv = 0;
out:
	free(copy);
	return rv;
}

/* A new string: a then b. */
static char *join_path(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 1;
	char *s = malloc(n);

	if (s != NULL)
		snprintf(s, n, "%s%s", a, b);
	return s;
}

/* Whether p, read from the container's root, goes above it ("../home"). */
static int climbs_out(const char *p)
{
	const char *c = p, *end;
	long depth = 0;
	size_t n;

	while (*c != '\0') {
		end = strchr(c, '/');
		if (end == NULL)
			end = c + strlen(c);
		n = (size_t)(end - c);
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (--depth < 0)
				return 1;
		} else if (n > 0 && !(n == 1 && c[0] == '.')) {
			depth++;
		}
		c = *end ? end + 1 : end;
	}
	return 0;
}

static int is_special_source(const char *src)
{
	return strcmp(src, PHPC_TMPFS_SOURCE) == 0 || strcmp(src, PHPC_UMOUNT_SOURCE) == 0;
}

int phpc_fstab_unescape(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	int v;

	for (; *in != '\0'; in++) {
		if (o + 1 >= outlen) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (in[0] == '\\' && in[1] >= '0' && in[1] <= '7' && in[2] >= '0' && in[2] <= '7' && in[3] >= '0' && in[3] <= '7') {
			v = (in[1] - '0') << 6 | (in[2] - '0') << 3 | (in[3] - '0');
			if (v == 0 || v > 0377) {
				errno = EINVAL;
				return -1;
			}
			out[o++] = (char)v;
			in += 3;
			continue;
		}
		out[o++] = *in;
	}
	out[o] = '\0';
	return 0;
}

/* One "SRC[:DST[:FLAGS]]" entry. DST defaults to SRC, as in pyxis; a DST
 * given is absolute (a relative SRC as DST is read from the container's
 * root, sent with a leading '/'). SRC may be "tmpfs" or "umount" (with a DST). Paths keep their
 * fstab escapes: the daemon decodes them (pkg/wire). */
static int add_one_mount(struct phpc_args *a, char *entry, char *err, size_t errlen)
{
	char *src = entry, *dst, *flags = NULL, given[512];
	struct phpc_mount *m;
	int special;

	/* The entry as the user wrote it, for the messages (it is split in place). */
	snprintf(given, sizeof(given), "%s", entry);
	dst = strchr(src, ':');
	if (dst != NULL) {
		*dst++ = '\0';
		flags = strchr(dst, ':');
		if (flags != NULL) {
			*flags++ = '\0';
			if (strchr(flags, ':') != NULL) {
				snprintf(err, errlen, "--container-mounts: \"%s\" has too many ':' (want SRC:DST[:FLAGS])", given);
				return -1;
			}
		}
	} else {
		dst = src;
	}
	special = is_special_source(src);
	if (*src == '\0' || *dst == '\0') {
		snprintf(err, errlen, "--container-mounts: empty source or destination in \"%s\" (want SRC:DST[:FLAGS])", given);
		return -1;
	}
	if (special && dst == src) {
		snprintf(err, errlen, "--container-mounts: \"%s\" needs a destination (%s:/DST)", src, src);
		return -1;
	}
	if (climbs_out(dst)) {
		snprintf(err, errlen, "--container-mounts: destination \"%s\" climbs out of the container's root: Invalid cross-device link", dst);
		return -1;
	}
	/* A target given is absolute, as pyxis wants it (one left out is the
	 * source's path). */
	if (dst != src && dst[0] != '/') {
		snprintf(err, errlen, "--container-mounts: destination \"%s\" in \"%s\" is relative: give the absolute path in the container (/%s)", dst, given, dst);
		return -1;
	}
	if (strcmp(src, PHPC_UMOUNT_SOURCE) == 0 && flags != NULL && *flags != '\0') {
		snprintf(err, errlen, "--container-mounts: umount:%s takes no flags", dst);
		return -1;
	}
	if (flags != NULL && *flags != '\0' && check_mount_flags(flags, strcmp(src, PHPC_TMPFS_SOURCE) == 0, err, errlen) < 0)
		return -1;

	m = realloc(a->mounts, (a->n_mounts + 1) * sizeof(*m));
	if (m == NULL)
		return -1;
	a->mounts = m;
	m = &a->mounts[a->n_mounts];
	m->src = strdup(src);
	m->dst = join_path(dst[0] == '/' ? "" : "/", dst);
	m->flags = (flags && *flags) ? strdup(flags) : NULL;
	if (m->src == NULL || m->dst == NULL || (flags && *flags && m->flags == NULL)) {
		free(m->src);
		free(m->dst);
		free(m->flags);
		return -1;
	}
	a->n_mounts++;
	return 0;
}

int phpc_args_add_mounts(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	char *copy, *entry, *save = NULL;
	int rv = -1;

	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-mounts: empty value (want SRC:DST[:FLAGS][,...])");
		return -1;
	}
	copy = strdup(v);
	if (copy == NULL)
		return -1;
	for (entry = strtok_r(copy, ",", &save); entry; entry = strtok_r(NULL, ",", &save))
		if (add_one_mount(a, entry, err, errlen) < 0)
			goto out;
	rv = 0;
out:
	free(copy);
	return rv;
}

static int is_env_name(const char *s)
{
	if (!(isalpha((unsigned char)*s) || *s == '_'))
		return 0;
	for (s++; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_'))
			return 0;
	return 1;
}

int phpc_args_add_env_names(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	char *copy, *name, *save = NULL, **names;
	int rv = -1;

	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-env: empty value (want NAME[,NAME...])");
		return -1;
	}
	if (v[0] == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,") != NULL) {
		snprintf(err, errlen, "--container-env: empty variable name in \"%s\" (a comma at the start or the end, or two in a row)", v);
		return -1;
	}
	copy = strdup(v);
	if (copy == NULL)
		return -1;
	for (name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		if (!is_env_name(name)) {
			snprintf(err, errlen, "--container-env: \"%s\" is not a valid variable name", name);
			goto out;
		}
		names = realloc(a->env_names, (a->n_env_names + 1) * sizeof(*names));
		if (names == NULL)
			goto out;
		a->env_names = names;
		a->env_names[a->n_env_names] = strdup(name);
		if (a->env_names[a->n_env_names] == NULL)
			goto out;
		a->n_env_names++;
	}
	rv = 0;
out:
	free(copy);
	return rv;
}

int phpc_args_set_flag(int *flag, int value, const char *name, char *err, size_t errlen)
{
	if (*flag != PHPC_UNSET && *flag != value) {
		snprintf(err, errlen, "%s: conflicts with an earlier option that says the opposite; keep one", name);
		return -1;
	}
	*flag = value;
	return 0;
}

/* Replaces *dst with a copy of v unless it is already set to something else. */
static int set_once(char **dst, const char *v, const char *opt, char *err, size_t errlen)
{
	if (*dst != NULL) {
		if (strcmp(*dst, v) == 0)
			return 0;
		snprintf(err, errlen, "%s: given twice with different values (\"%s\" and \"%s\"); keep one", opt, *dst, v);
		return -1;
	}
	*dst = strdup(v);
	return *dst ? 0 : -1;
}

int phpc_args_set_name(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	const char *const *modes = phpc_name_modes;
	char name[128];
	const char *colon, *mode = modes[0], *p;
	size_t len;
	int i;

	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-name: empty value (want NAME[:auto|create|exec|no_exec])");
		return -1;
	}
	colon = strchr(v, ':');
	len = colon ? (size_t)(colon - v) : strlen(v);
	if (colon != NULL)
		mode = colon + 1;
	if (len == 0 || len >= 64) {
		snprintf(err, errlen, "--container-name: a name is 1 to 63 characters");
		return -1;
	}
	for (p = v; p < v + len; p++) {
		if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.')) {
			snprintf(err, errlen, "--container-name: \"%.*s\" may hold only letters, digits, '_', '-' and '.'", (int)len, v);
			return -1;
		}
	}
	for (i = 0; modes[i]; i++)
		if (strcmp(mode, modes[i]) == 0)
			break;
	if (modes[i] == NULL) {
		snprintf(err, errlen, "--container-name: unknown mode \"%s\" (want auto, create, exec or no_exec)", mode);
		return -1;
	}
	memcpy(name, v, len);
	name[len] = '\0';
	if (set_once(&a->name, name, "--container-name", err, errlen) < 0)
		return -1;
	return set_once(&a->name_mode, mode, "--container-name", err, errlen);
}

int phpc_args_set_save(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-save: empty path");
		return -1;
	}
	if (v[strlen(v) - 1] == '/') {
		snprintf(err, errlen, "--container-save: \"%s\" is a directory; name the file to write", v);
		return -1;
	}
	if (a->save != NULL && same_path(a->save, v))
		return 0;
	return set_once(&a->save, v, "--container-save", err, errlen);
}

int phpc_args_set_unshare(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	char *copy, *tok, *save = NULL;
	int rv = -1;
	size_t i;

	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-unshare: empty value (want net, ipc, uts, comma-separated)");
		return -1;
	}
	copy = strdup(v);
	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; phpc_unshare_namespaces[i]; i++)
			if (strcmp(tok, phpc_unshare_namespaces[i]) == 0)
				break;
		if (phpc_unshare_namespaces[i] == NULL) {
			snprintf(err, errlen, "--container-unshare: unknown namespace \"%s\" (want net, ipc, uts)", tok);
			goto out;
		}
	}
	rv = set_once(&a->unshare, v, "--container-unshare", err, errlen);
out:
	free(copy);
	return rv;
}

/* NAME[,NAME...]: module or hooks.d names, no-NAME, none. Only the spelling
 * is checked here; the node's daemon knows which names it offers. */
int phpc_args_set_hooks(struct phpc_args *a, const char *v, char *err, size_t errlen)
{
	const char *p;

	if (v == NULL || *v == '\0') {
		snprintf(err, errlen, "--container-hooks: empty value (want NAME[,NAME...], no-NAME or none)");
		return -1;
	}
	for (p = v; *p; p++) {
		if (!(isalnum((unsigned char)*p) || strchr("_.+-,", *p) != NULL)) {
			snprintf(err, errlen, "--container-hooks: \"%s\": a name has letters, digits, '_', '.', '+' and '-' only", v);
			return -1;
		}
	}
	if (a->hooks != NULL && strcmp(a->hooks, v) != 0) {
		snprintf(err, errlen, "--container-hooks: given twice with different values (\"%s\" and \"%s\"); keep one", a->hooks, v);
		return -1;
	}
	free(a->hooks);
	a->hooks = strdup(v);
	return a->hooks ? 0 : -1;
}

int phpc_args_check_local(const struct phpc_args *a, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	size_t i;

	for (i = 0; i < a->n_mounts; i++) {
		const struct phpc_mount *m = &a->mounts[i];

		/* A relative source is the job's working directory's, which
		 * srun does not know (--chdir): slurmstepd checks it. */
		if (is_special_source(m->src) || m->src[0] != '/')
			continue;
		if (phpc_fstab_unescape(m->src, path, sizeof(path)) < 0) {
			snprintf(err, errlen, "--container-mounts: source \"%s\": %s", m->src, strerror(errno));
			return -1;
		}
		if (stat(path, &st) < 0 && (errno == ENOENT || errno == ENOTDIR)) {
			snprintf(err, errlen, "--container-mounts: source path does not exist: %s", path);
			return -1;
		}
	}
	if (a->save != NULL && a->save[0] == '/' && stat(a->save, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "--container-save: \"%s\" is a directory; name the file to write", a->save);
		return -1;
	}
	return 0;
}

/* *p relative to cwd (prefix: cwd as it goes in front of it). */
static int make_absolute(char **p, const char *prefix)
{
	char *abs;
	size_t n;

	if (*p == NULL || (*p)[0] == '/')
		return 0;
	n = strlen(prefix) + strlen(*p) + 2;
	if ((abs = malloc(n)) == NULL)
		return -1;
	snprintf(abs, n, "%s/%s", prefix, *p);
	free(*p);
	*p = abs;
	return 0;
}

/* cwd with fstab's escapes for what a mount entry cannot hold as it is
 * (pkg/wire decodes them). */
static char *escape_path(const char *s)
{
	char *out = malloc(strlen(s) * 4 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++) {
		if (*s == '\\' || *s == ':' || *s == ',' || (unsigned char)*s <= ' ')
			o += sprintf(o, "\\%03o", (unsigned char)*s);
		else
			*o++ = *s;
	}
	*o = '\0';
	return out;
}

int phpc_args_resolve(struct phpc_args *a, const char *cwd, char *err, size_t errlen)
{
	char *escaped = NULL;
	int rv = -1;
	size_t i;

	if (cwd == NULL || cwd[0] != '/') {
		snprintf(err, errlen, "the job's working directory \"%s\" is not an absolute path", cwd ? cwd : "");
		return -1;
	}
	if (strcmp(cwd, "/") == 0)
		cwd = ""; /* "/x", not "//x" */
	/* A squashfs image is a value starting with '/' or '.' (pyxis). */
	if (a->image != NULL && a->image[0] == '.' && make_absolute(&a->image, cwd) < 0)
		goto out;
	if (make_absolute(&a->save, cwd) < 0)
		goto out;
	for (i = 0; i < a->n_mounts; i++) {
		if (is_special_source(a->mounts[i].src) || a->mounts[i].src[0] == '/')
			continue;
		if (escaped == NULL && (escaped = escape_path(cwd)) == NULL)
			goto out;
		if (make_absolute(&a->mounts[i].src, escaped) < 0)
			goto out;
	}
	rv = 0;
out:
	if (rv < 0)
		snprintf(err, errlen, "couldn't resolve relative paths in %s: %s", cwd, strerror(errno));
	free(escaped);
	return rv;
}
