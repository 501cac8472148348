/*
 * podman-hpc-init: the first process of every podman-hpc container. It only
 * waits, so that the container's namespaces live while the step's tasks join
 * them, and exits on SIGTERM, SIGINT or SIGHUP. It runs as the job user with
 * no capabilities, from a static binary bound into the container, so it needs
 * nothing of the image.
 *
 * It is PID 1 of the container's PID namespace: what the image's entrypoint
 * left running (a detached child, say) is reparented to it, and it reaps
 * them; when it dies at teardown, the kernel kills them all.
 *
 * It is C, and apart from podman-hpcd (which can stand in for it as
 * "podman-hpcd init"), because it starts on every node of every step: this
 * one in a tenth of a millisecond, a Go program in a few.
 */
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
{
	sigset_t set;
	int sig;

	/* Not dumpable: the tasks run as the same user in the same user
	 * namespace, and must not ptrace it into running something outside
	 * their step (ptrace now needs CAP_SYS_PTRACE over the container's
	 * user namespace, which no task holds). */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return 1;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return 1;
	for (;;) {
		sig = sigwaitinfo(&set, NULL);
		if (sig == SIGCHLD) {
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
			continue;
		}
		if (sig < 0)
			continue; /* EINTR */
		return 0;
	}
}
