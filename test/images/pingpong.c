/*
 * pingpong: MPI point-to-point latency and bandwidth between two ranks.
 *
 * Rank 0 sends a message to rank 1, which sends it straight back.  Latency
 * is half a round trip with a small message; bandwidth is the message size
 * over half a round trip with a large one.  Each is measured in BATCHES
 * batches after a warm-up, and the median batch is reported, so that a
 * batch slowed down by another process on a shared machine does not count.
 *
 * Usage: pingpong [BATCHES]     (exactly two ranks; default 9 batches)
 *
 * Output (rank 0), for tests and benchmarks to parse:
 *   pingpong: ranks on HOST0 and HOST1
 *   pingpong: latency_us 12.34        (8-byte messages)
 *   pingpong: bandwidth_mbs 1234.5    (1 MiB messages, MB = 10^6 bytes)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL 8
#define LARGE (1 << 20)
#define SMALL_ROUNDS 1000
#define LARGE_ROUNDS 20
#define TAG 7

/* Seconds for n round trips of size bytes between ranks 0 and 1. */
static double round_trips(char *buf, int size, int n, int rank)
{
    int peer = 1 - rank;
    double t0;

    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    for (int i = 0; i < n; i++) {
        if (rank == 0) {
            MPI_Send(buf, size, MPI_CHAR, peer, TAG, MPI_COMM_WORLD);
            MPI_Recv(buf, size, MPI_CHAR, peer, TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, size, MPI_CHAR, peer, TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, size, MPI_CHAR, peer, TAG, MPI_COMM_WORLD);
        }
    }
    return MPI_Wtime() - t0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over batches of the one-way time of a size-byte message, in s. */
static double one_way(char *buf, int size, int n, int batches, int rank)
{
    double *t = calloc((size_t)batches, sizeof(*t)), m;

    if (t == NULL)
        MPI_Abort(MPI_COMM_WORLD, 1);
    round_trips(buf, size, n / 10 + 1, rank); /* warm-up: connections, caches */
    for (int b = 0; b < batches; b++)
        t[b] = round_trips(buf, size, n, rank) / (2.0 * n);
    qsort(t, (size_t)batches, sizeof(*t), cmp);
    m = t[batches / 2];
    free(t);
    return m;
}

int main(int argc, char **argv)
{
    int rank, size, len, batches = 9;
    char host[MPI_MAX_PROCESSOR_NAME], peer_host[MPI_MAX_PROCESSOR_NAME];
    char *buf;
    double lat, bw;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1)
        batches = atoi(argv[1]);
    if (size != 2 || batches < 1) {
        if (rank == 0)
            fprintf(stderr, "pingpong: needs exactly 2 ranks (got %d) and BATCHES >= 1\n", size);
        MPI_Finalize();
        return 2;
    }

    memset(host, 0, sizeof(host));
    MPI_Get_processor_name(host, &len);
    MPI_Sendrecv(host, sizeof(host), MPI_CHAR, 1 - rank, TAG, peer_host, sizeof(peer_host),
                 MPI_CHAR, 1 - rank, TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);

    buf = malloc(LARGE);
    if (buf == NULL)
        MPI_Abort(MPI_COMM_WORLD, 1);
    memset(buf, 1, LARGE);
    lat = one_way(buf, SMALL, SMALL_ROUNDS, batches, rank);
    bw = one_way(buf, LARGE, LARGE_ROUNDS, batches, rank);

    if (rank == 0) {
        printf("pingpong: ranks on %s and %s\n", host, peer_host);
        printf("pingpong: latency_us %.2f\n", lat * 1e6);
        printf("pingpong: bandwidth_mbs %.1f\n", LARGE / bw / 1e6);
        fflush(stdout);
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
