/* hwloop recipe "compress": a gzip-like LZ77 compressor (hash chains over a 32 KiB window)
 * run on generated, text-like input.  Usage: compress [input_bytes] [seed]
 * Deterministic for given arguments; prints a checksum of the compressed stream. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 32768
#define HASH_BITS 15
#define MIN_MATCH 3
#define MAX_MATCH 258
#define MAX_CHAIN 48

static uint64_t rng_state;
static uint64_t next_random(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Text-like input: words from a skewed vocabulary separated by spaces and newlines. */
static void make_input(uint8_t *out, size_t n) {
    enum { WORDS = 2048 };
    static char vocab[WORDS][12];
    static uint8_t length[WORDS];
    for (int w = 0; w < WORDS; w++) {
        length[w] = (uint8_t)(2 + next_random() % 9);
        for (int c = 0; c < length[w]; c++) vocab[w][c] = (char)('a' + next_random() % 26);
    }
    size_t i = 0;
    while (i < n) {
        uint64_t r = next_random();
        /* skew: small word indices are far more frequent */
        int w = (int)((r % WORDS) * ((r >> 20) % WORDS) / WORDS);
        for (int c = 0; c < length[w] && i < n; c++) out[i++] = (uint8_t)vocab[w][c];
        if (i < n) out[i++] = (r >> 40) % 12 == 0 ? '\n' : ' ';
    }
}

static inline uint32_t hash3(const uint8_t *p) {
    return ((uint32_t)p[0] << 10 ^ (uint32_t)p[1] << 5 ^ p[2]) & ((1u << HASH_BITS) - 1);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1 << 20;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 88172645463325252ull;
    if (rng_state == 0) rng_state = 1;
    uint8_t *input = malloc(n + MAX_MATCH);
    uint8_t *output = malloc(n * 2 + 16);
    int32_t *head = malloc(sizeof(int32_t) << HASH_BITS);
    int32_t *prev = malloc(sizeof(int32_t) * WINDOW);
    if (!input || !output || !head || !prev) return 1;
    make_input(input, n);
    memset(input + n, 0, MAX_MATCH);
    for (size_t h = 0; h < (1u << HASH_BITS); h++) head[h] = -1;
    size_t out = 0, pos = 0, matches = 0;
    while (pos < n) {
        size_t best_len = 0, best_dist = 0;
        if (pos + MIN_MATCH <= n) {
            uint32_t h = hash3(input + pos);
            int32_t cand = head[h];
            for (int chain = 0; cand >= 0 && chain < MAX_CHAIN; chain++) {
                size_t dist = pos - (size_t)cand;
                if (dist > WINDOW - 1) break;
                size_t len = 0, limit = n - pos < MAX_MATCH ? n - pos : MAX_MATCH;
                while (len < limit && input[cand + len] == input[pos + len]) len++;
                if (len > best_len) { best_len = len; best_dist = dist; }
                if (len == limit) break;
                cand = prev[cand % WINDOW];
            }
            prev[pos % WINDOW] = head[h];
            head[h] = (int32_t)pos;
        }
        if (best_len >= MIN_MATCH) {
            output[out++] = 0xff;
            output[out++] = (uint8_t)best_len;
            output[out++] = (uint8_t)(best_dist >> 8);
            output[out++] = (uint8_t)best_dist;
            /* insert the skipped positions into the hash chains, as deflate does */
            for (size_t k = 1; k < best_len && pos + k + MIN_MATCH <= n; k++) {
                uint32_t h = hash3(input + pos + k);
                prev[(pos + k) % WINDOW] = head[h];
                head[h] = (int32_t)(pos + k);
            }
            pos += best_len;
            matches++;
        } else {
            output[out++] = input[pos++];
        }
    }
    uint32_t sum = 0;
    for (size_t k = 0; k < out; k++) sum = sum * 31 + output[k];
    printf("compress: %zu -> %zu bytes, %zu matches, checksum %08x\n", n, out, matches, sum);
    free(input); free(output); free(head); free(prev);
    return 0;
}
