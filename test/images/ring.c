/*
 * ring: a minimal MPI smoke test for the podman-hpc test images.
 *
 * Rank 0 injects a counter into a ring of all ranks.  Every rank forwards
 * it to its right-hand neighbour; rank 0 decrements it each time it comes
 * back, so the message travels LAPS times around the ring.  A zero is
 * forwarded once more so that every rank sees it and leaves the loop.
 *
 * Usage: ring [LAPS]        (default 10)
 *
 * The output lines all start with "ring: " so tests can grep for them.
 * Two environment variables serve the tests and benchmarks:
 *   RING_TIMING=1      every rank prints how long its MPI_Init took
 *   RING_CRASH_RANK=R  rank R dies of SIGSEGV after MPI_Init, mid-ring
 */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TAG_RING 42

int main(int argc, char **argv)
{
    int rank, size, len, laps = 10, msg, seen = 0;
    int next, prev;
    char host[MPI_MAX_PROCESSOR_NAME];
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    const char *crash = getenv("RING_CRASH_RANK");
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    MPI_Init(&argc, &argv);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);

    if (getenv("RING_TIMING") != NULL) {
        printf("ring: rank %d MPI_Init took %.1f ms\n", rank,
               (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
        fflush(stdout);
    }

    if (argc > 1)
        laps = atoi(argv[1]);
    if (laps < 1) {
        if (rank == 0)
            fprintf(stderr, "ring: LAPS must be >= 1\n");
        MPI_Finalize();
        return 2;
    }

    if (rank == 0) {
        /* Only the first line of the version string: tests use it to tell
         * which MPI implementation the binary actually ran against. */
        MPI_Get_library_version(lib, &len);
        for (int i = 0; lib[i] != '\0'; i++) {
            if (lib[i] == '\n' || lib[i] == ',') {
                lib[i] = '\0';
                break;
            }
            if (lib[i] == '\t')    /* MPICH: "MPICH Version:\t4.0.2" */
                lib[i] = ' ';
        }
        printf("ring: library %s\n", lib);
    }
    printf("ring: rank %d of %d on %s\n", rank, size, host);
    fflush(stdout);

    /* The others are left waiting in the ring, as in a real crash. */
    if (crash != NULL && atoi(crash) == rank)
        raise(SIGSEGV);

    next = (rank + 1) % size;
    prev = (rank + size - 1) % size;

    if (rank == 0) {
        msg = laps;
        MPI_Send(&msg, 1, MPI_INT, next, TAG_RING, MPI_COMM_WORLD);
    }

    for (;;) {
        MPI_Recv(&msg, 1, MPI_INT, prev, TAG_RING, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        if (rank == 0) {
            msg--;
            seen++;
        }
        MPI_Send(&msg, 1, MPI_INT, next, TAG_RING, MPI_COMM_WORLD);
        if (msg == 0)
            break;
    }

    /* The final zero sent by rank 0 comes back once more; drain it so no
     * message is left in flight at MPI_Finalize. */
    if (rank == 0) {
        MPI_Recv(&msg, 1, MPI_INT, prev, TAG_RING, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        printf("ring: rank 0 got the message back after %d laps\n", seen);
        fflush(stdout);
    }

    MPI_Finalize();
    return (rank == 0 && seen != laps) ? 1 : 0;
}
