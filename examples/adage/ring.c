/* MPI ring for the ADAGE MPI example: rank 0 sends a token around the ring LAPS times,
 * each rank adding its rank number; rank 0 checks the final value and prints it.
 * Build: mpicc -O2 -o ring ring.c    Run: mpirun -np 4 ./ring 3 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int rank, size, laps = argc > 1 ? atoi(argv[1]) : 1;
    long token = 0;
    char host[MPI_MAX_PROCESSOR_NAME];
    int hostlen;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &hostlen);
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    for (int lap = 0; lap < laps; lap++) {
        if (rank == 0) {
            MPI_Send(&token, 1, MPI_LONG, next, 0, MPI_COMM_WORLD);
            MPI_Recv(&token, 1, MPI_LONG, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(&token, 1, MPI_LONG, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            token += rank;
            MPI_Send(&token, 1, MPI_LONG, next, 0, MPI_COMM_WORLD);
        }
    }
    printf("rank %d of %d on %s done\n", rank, size, host);
    if (rank == 0) {
        long expected = (long)laps * size * (size - 1) / 2;
        printf("ring: token=%ld expected=%ld laps=%d ranks=%d\n", token, expected, laps, size);
        MPI_Finalize();
        return token == expected ? 0 : 1;
    }
    MPI_Finalize();
    return 0;
}
