/* hwloop recipe "hashtable": a chained hash table of heap-allocated nodes; inserts, then
 * lookups with a skewed key popularity (a hot tenth of the keys gets most lookups), i.e.
 * pointer chasing with PC-dependent reuse. Usage: hashtable [keys] [lookups] [seed]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct node { uint64_t key; uint64_t value; struct node *next; };

static uint64_t state;
static uint64_t next_random(void) {
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return state;
}

int main(int argc, char **argv) {
    size_t keys = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    size_t lookups = argc > 2 ? strtoull(argv[2], NULL, 10) : 400000;
    state = argc > 3 ? strtoull(argv[3], NULL, 10) : 977;
    if (state == 0 || keys == 0) return 1;
    size_t buckets = 1;
    while (buckets < keys / 2) buckets <<= 1;
    struct node **table = calloc(buckets, sizeof *table);
    uint64_t *inserted = malloc(keys * sizeof *inserted);
    if (!table || !inserted) return 1;
    for (size_t i = 0; i < keys; i++) {
        struct node *node = malloc(sizeof *node);
        if (!node) return 1;
        node->key = next_random();
        node->value = i;
        size_t b = (node->key * 0x9E3779B97F4A7C15ull) >> 40 & (buckets - 1);
        node->next = table[b];
        table[b] = node;
        inserted[i] = node->key;
    }
    uint64_t found = 0, sum = 0;
    for (size_t i = 0; i < lookups; i++) {
        uint64_t r = next_random();
        size_t pick = r % 10 < 8 ? (r >> 8) % (keys / 10 + 1) : (r >> 8) % keys;
        uint64_t key = (r >> 4) % 16 == 0 ? r : inserted[pick];  /* some misses */
        size_t b = (key * 0x9E3779B97F4A7C15ull) >> 40 & (buckets - 1);
        for (struct node *node = table[b]; node; node = node->next)
            if (node->key == key) { found++; sum += node->value; break; }
    }
    printf("hashtable: %zu keys, %zu lookups, %llu found, sum %llu\n", keys, lookups,
           (unsigned long long)found, (unsigned long long)sum);
    return 0;
}
