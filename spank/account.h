/*
 * account.h - the job user as the node's NSS knows them (LDAP, SSSD and
 * files alike): resolved here, in slurmstepd, where NSS works, and sent to
 * the daemon (static Go, which reads /etc/passwd only). No Slurm calls.
 */
#ifndef PHPC_ACCOUNT_H
#define PHPC_ACCOUNT_H

#include <sys/types.h>

#include "request.h"

struct phpc_account {
	char *user, *home, *shell;     /* NULL user: unknown to NSS */
	struct phpc_group *groups;     /* the primary group first */
	size_t n_groups;
};

/* Resolves uid's name, home and shell, and the names of gid and of the
 * supplementary groups sup[0..n_sup) (Slurm's S_JOB_SUPPLEMENTARY_GIDS; gid
 * is skipped there). A user NSS does not know leaves a->user NULL; a group
 * it does not know keeps its gid with a NULL name. Returns 0, or -1 on
 * memory exhaustion (errno set). phpc_account_free releases a. */
int phpc_account_resolve(struct phpc_account *a, uid_t uid, gid_t gid, const gid_t *sup, size_t n_sup);
void phpc_account_free(struct phpc_account *a);

/* Points r's account fields at a's. */
void phpc_account_to_request(const struct phpc_account *a, struct phpc_request *r);

#endif
