/*
 * account.c - the job user through NSS (see account.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "account.h"

/* NSS buffers: the usual size, doubled on ERANGE up to this. */
#define NSS_BUF_MAX (1 << 20)

static char *group_name(gid_t gid)
{
	struct group gr, *res = NULL;
	size_t len = 16384;
	char *buf, *name = NULL;

	for (;;) {
		if ((buf = malloc(len)) == NULL)
			return NULL;
		if (getgrgid_r(gid, &gr, buf, len, &res) != ERANGE || len >= NSS_BUF_MAX)
			break;
		free(buf);
		len *= 2;
	}
	if (res != NULL && res->gr_name != NULL)
		name = strdup(res->gr_name);
	free(buf);
	return name;
}

static int add_group(struct phpc_account *a, gid_t gid)
{
	struct phpc_group *g;
	size_t i;

	for (i = 0; i < a->n_groups; i++)
		if (a->groups[i].gid == (uint32_t)gid)
			return 0;
	g = realloc(a->groups, (a->n_groups + 1) * sizeof(*g));
	if (g == NULL)
		return -1;
	a->groups = g;
	a->groups[a->n_groups].gid = (uint32_t)gid;
	a->groups[a->n_groups].name = group_name(gid);
	a->n_groups++;
	return 0;
}

int phpc_account_resolve(struct phpc_account *a, uid_t uid, gid_t gid, const gid_t *sup, size_t n_sup)
{
	struct passwd pw, *res = NULL;
	size_t len = 16384, i;
	char *buf;

	memset(a, 0, sizeof(*a));
	for (;;) {
		if ((buf = malloc(len)) == NULL)
			return -1;
		if (getpwuid_r(uid, &pw, buf, len, &res) != ERANGE || len >= NSS_BUF_MAX)
			break;
		free(buf);
		len *= 2;
	}
	if (res != NULL) {
		a->user = strdup(res->pw_name ? res->pw_name : "");
		a->home = strdup(res->pw_dir ? res->pw_dir : "");
		a->shell = strdup(res->pw_shell ? res->pw_shell : "");
	}
	free(buf);
	if (res != NULL && (a->user == NULL || a->home == NULL || a->shell == NULL))
		goto fail;
	if (add_group(a, gid) < 0)
		goto fail;
	for (i = 0; i < n_sup; i++)
		if (add_group(a, sup[i]) < 0)
			goto fail;
	return 0;
fail:
	phpc_account_free(a);
	errno = ENOMEM;
	return -1;
}

void phpc_account_free(struct phpc_account *a)
{
	size_t i;

	free(a->user);
	free(a->home);
	free(a->shell);
	for (i = 0; i < a->n_groups; i++)
		free((char *)a->groups[i].name);
	free(a->groups);
	memset(a, 0, sizeof(*a));
}

void phpc_account_to_request(const struct phpc_account *a, struct phpc_request *r)
{
	r->user = a->user;
	r->home = a->home;
	r->shell = a->shell;
	r->groups = a->groups;
	r->n_groups = a->n_groups;
}
