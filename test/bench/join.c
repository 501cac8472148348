/*
 * join.c - the cost of joining a container the way the plugin does (setns
 * into its mount namespace, then exec), against a plain fork+exec.
 *
 *   join NSPATH N ROUNDS    e.g. join /proc/1234/ns/mnt 64 20
 *
 * Prints, in ms: the median of ROUNDS single join+exec, the same for plain
 * fork+exec, and the median of ROUNDS bursts of N concurrent of each.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Starts n children, each joining ns (when ns >= 0) and running true;
 * returns the wall time until all have exited. */
static double burst(int ns, int n)
{
	double t0 = now_ms();
	int i, status;

	for (i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			exit(1);
		}
		if (pid == 0) {
			if (ns >= 0 && setns(ns, CLONE_NEWNS) < 0)
				_exit(2);
			execl("/bin/true", "true", (char *)NULL);
			_exit(3);
		}
	}
	for (i = 0; i < n; i++) {
		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "join: a child failed (status %d)\n", status);
			exit(1);
		}
	}
	return now_ms() - t0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(int ns, int n, int rounds)
{
	double *v = calloc((size_t)rounds, sizeof(*v)), m;
	int i;

	for (i = 0; i < rounds; i++)
		v[i] = burst(ns, n);
	qsort(v, (size_t)rounds, sizeof(*v), cmp);
	m = v[rounds / 2];
	free(v);
	return m;
}

int main(int argc, char **argv)
{
	int ns, n, rounds;

	if (argc != 4) {
		fprintf(stderr, "usage: %s NSPATH N ROUNDS\n", argv[0]);
		return 2;
	}
	n = atoi(argv[2]);
	rounds = atoi(argv[3]);
	ns = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (ns < 0 || n < 1 || rounds < 1) {
		perror(argv[1]);
		return 2;
	}
	printf("join_one_ms %.3f\n", median(ns, 1, rounds * 10));
	printf("plain_one_ms %.3f\n", median(-1, 1, rounds * 10));
	printf("join_burst_ms %.3f\n", median(ns, n, rounds));
	printf("plain_burst_ms %.3f\n", median(-1, n, rounds));
	return 0;
}
