/* hwloop recipe "sort": the C library's qsort as an index sort: an array of pointers to random
 * 32-bit integers is sorted by the values they point to, so every comparison dereferences two
 * pointers into a scattered array. Usage: sort [count] [seed]. Prints a checksum. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int compare(const void *a, const void *b) {
    uint32_t x = **(uint32_t *const *)a, y = **(uint32_t *const *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1 << 16;
    uint64_t state = argc > 2 ? strtoull(argv[2], NULL, 10) : 2463534242ull;
    if (state == 0 || n == 0) return 1;
    uint32_t *values = malloc(n * sizeof *values);
    uint32_t **index = malloc(n * sizeof *index);
    if (!values || !index) return 1;
    for (size_t i = 0; i < n; i++) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        values[i] = (uint32_t)state;
        index[i] = &values[i];
    }
    qsort(index, n, sizeof *index, compare);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && *index[i - 1] > *index[i]) { puts("sort: not sorted"); return 1; }
        sum = sum * 1000003 + (uint64_t)(index[i] - values);
    }
    printf("sort: %zu values, checksum %016llx\n", n, (unsigned long long)sum);
    free(values);
    free(index);
    return 0;
}
