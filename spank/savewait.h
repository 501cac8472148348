/*
 * savewait.h - a step whose --container-save fails, fails: srun's exit
 * status and output say so (savewait.c).
 */
#ifndef PHPC_SAVEWAIT_H
#define PHPC_SAVEWAIT_H
#include <slurm/spank.h>

/* In slurmstepd's user_init, on the node that saves, before the tasks
 * fork: the count of the node's tasks whose program has ended, shared by
 * the tasks. Returns 0, or -1 (the save then stays slurmstepd's, at the
 * last task's exit, and a failure only reaches the node's log). */
int phpc_savewait_prepare(void);

/* In the task, as the job user, before it joins the container: keeps the
 * daemon's socket directory (close-on-exec), for the one connection the
 * node's last task makes from inside the container. */
void phpc_savewait_open(const char *socket);

/* In the task, last before its seccomp filter: on the node that saves,
 * forks. Returns 0 in the child, which goes on to exec the program. The
 * parent waits for it; the last of the node's tasks to see its program end
 * asks the daemon for the save, as the job user, and waits for it; each
 * exits as its program did, and the one that asked prints the cause and
 * exits 1 (if its program exited 0) when the save failed. Returns 0 at
 * once where this node does not save, -1 (said why) if fork fails. */
int phpc_savewait_fork(spank_t sp, const char *save);

/* In slurmstepd's task_exit: a task had the save done (or answered). */
int phpc_savewait_asked(void);
#endif
