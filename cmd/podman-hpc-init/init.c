/*
 * podman-hpc-init: the first process of every podman-hpc container. It only
 * waits, so that the container's namespaces live while the step's tasks join
 * them, and exits on SIGTERM, SIGINT or SIGHUP. It runs as the job user with
 * no capabilities, from a static binary bound into the container, so it needs
 * nothing of the image.
 *
 * It is C, and apart from podman-hpcd (which can stand in for it as
 * "podman-hpcd init"), because it starts on every node of every step: this
 * one in a tenth of a millisecond, a Go program in a few.
 */
#include <signal.h>
#include <stddef.h>

int main(void)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return 1;
	return sigwait(&set, &sig) == 0 ? 0 : 1;
}
