/* hwloop recipe "sort": qsort (the C library's) of random 32-bit integers.
 * Usage: sort [count] [seed]. Prints a checksum of the sorted array. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int compare(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1 << 18;
    uint64_t state = argc > 2 ? strtoull(argv[2], NULL, 10) : 2463534242ull;
    if (state == 0) state = 1;
    uint32_t *values = malloc(n * sizeof *values);
    if (!values) return 1;
    for (size_t i = 0; i < n; i++) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        values[i] = (uint32_t)state;
    }
    qsort(values, n, sizeof *values, compare);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && values[i - 1] > values[i]) { puts("sort: not sorted"); return 1; }
        sum = sum * 1000003 + values[i];
    }
    printf("sort: %zu values, checksum %016llx\n", n, (unsigned long long)sum);
    free(values);
    return 0;
}
