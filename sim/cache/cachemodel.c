/* Golden model of hwloop's set-associative cache and prefetchers (see docs/caches.md).
 * Built once by sim/cache/model.py through hwloop's build cache and called with ctypes.
 * Every rule here (victim choice, tie-breaking, LFSR, initial state, prefetch queue) is the
 * one the RTL implements; change both together. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { P_LRU = 0, P_PLRU = 1, P_SRRIP = 2, P_RANDOM = 3, P_TABLE = 4, P_OPT = 5 };
enum { F_NONE = 0, F_NEXTLINE = 1, F_STRIDE = 2, F_TABLE = 3 };
enum { C_HITS, C_MISSES, C_EVICTIONS, C_WRITEBACKS, C_PF_REQUESTS, C_PF_ISSUED, C_PF_USEFUL,
       C_PF_LATE, C_PF_EVICTED_UNUSED, C_PF_DROPPED, C_COUNT };

#define PF_TABLE_RRPV 6

static inline uint64_t fold(uint64_t x, int n) {
    if (n == 0) return 0;
    uint64_t m = (1ull << n) - 1, o = 0;
    while (x) { o ^= x & m; x >>= n; }
    return o;
}

static inline uint64_t rotl(uint64_t f, int r, int n) {
    if (n == 0) return 0;
    r %= n;
    if (r == 0) return f;
    uint64_t m = (1ull << n) - 1;
    return ((f << r) | (f >> (n - r))) & m;
}

typedef struct {
    int sets, ways, ibits, policy;
    uint32_t lfsr;
    uint64_t *tag;
    uint8_t *valid, *dirty, *st, *pf, *plru;
    int64_t *nu;
    uint64_t *cnt;
} cache_t;

static int lookup(cache_t *c, int64_t base, uint64_t tag) {
    for (int w = 0; w < c->ways; w++)
        if (c->valid[base + w] && c->tag[base + w] == tag) return w;
    return -1;
}

/* The way a miss fills; replacement side effects (aging, LFSR step) happen here. */
static int pick(cache_t *c, int64_t s) {
    int64_t base = s * c->ways;
    int W = c->ways;
    for (int w = 0; w < W; w++)
        if (!c->valid[base + w]) return w;
    switch (c->policy) {
    case P_LRU:
        for (int w = 0; w < W; w++)
            if (c->st[base + w] == W - 1) return w;
        return 0;
    case P_PLRU: {
        int n = 0;
        while (n < W - 1) n = 2 * n + 1 + c->plru[base + n];
        return n - (W - 1);
    }
    case P_SRRIP:
    case P_TABLE: {
        int top = c->policy == P_SRRIP ? 3 : 7, mx = 0, v = 0;
        for (int w = 0; w < W; w++)
            if (c->st[base + w] > mx) mx = c->st[base + w];
        for (int w = W - 1; w >= 0; w--)
            if (c->st[base + w] == mx) v = w;
        for (int w = 0; w < W; w++) c->st[base + w] += top - mx;
        return v;
    }
    case P_RANDOM: {
        int v = (int)(((uint64_t)c->lfsr * (uint64_t)W) >> 16);
        uint32_t lsb = c->lfsr & 1;
        c->lfsr >>= 1;
        if (lsb) c->lfsr ^= 0xB400u;
        return v;
    }
    case P_OPT: {
        int v = 0;
        for (int w = 1; w < W; w++)
            if (c->nu[base + w] > c->nu[base + v]) v = w;
        return v;
    }
    }
    return 0;
}

/* Update the policy state after way w of set s was hit (hit=1) or filled (hit=0).
 * r: the insertion RRPV of the table policy. */
static void touch(cache_t *c, int64_t s, int w, int hit, int r) {
    int64_t base = s * c->ways;
    switch (c->policy) {
    case P_LRU: {
        uint8_t a = c->st[base + w];
        for (int v = 0; v < c->ways; v++)
            if (c->st[base + v] < a) c->st[base + v]++;
        c->st[base + w] = 0;
        break;
    }
    case P_PLRU: {
        int n = w + c->ways - 1;
        while (n > 0) {
            int p = (n - 1) / 2;
            c->plru[base + p] = (n == 2 * p + 1) ? 1 : 0;
            n = p;
        }
        break;
    }
    case P_SRRIP: c->st[base + w] = hit ? 0 : 2; break;
    case P_TABLE: c->st[base + w] = hit ? (r == 7 ? 7 : 0) : (uint8_t)r; break;
    default: break;
    }
}

/* Install a prefetched line unless present. */
static void pf_fill(cache_t *c, uint64_t line) {
    int64_t s = (int64_t)(line & (uint64_t)(c->sets - 1));
    uint64_t tag = line >> c->ibits;
    int64_t base = s * c->ways;
    if (lookup(c, base, tag) >= 0) return;
    int w = pick(c, s);
    if (c->valid[base + w]) {
        c->cnt[C_EVICTIONS]++;
        if (c->dirty[base + w]) c->cnt[C_WRITEBACKS]++;
        if (c->pf[base + w]) c->cnt[C_PF_EVICTED_UNUSED]++;
    }
    c->valid[base + w] = 1;
    c->tag[base + w] = tag;
    c->dirty[base + w] = 0;
    c->pf[base + w] = 1;
    touch(c, s, w, 0, PF_TABLE_RRPV);
    c->cnt[C_PF_ISSUED]++;
}

/* params: 0 sets, 1 ways, 2 offset_bits, 3 index_bits, 4 addr_bits, 5 policy, 6 seed,
 *   7 table index bits, 8 table entry bits, 9 table history,
 *   10 prefetcher kind, 11 degree, 12 latency, 13 queue depth, 14 stride/table index bits,
 *   15 prefetch table entry bits (unused), 16 prefetch table history.
 * rtable: replacement table values; ptable/pconf: prefetch deltas and confidences. */
int hwl_cache_run(int64_t n, const uint64_t *addr, const uint64_t *pc, const uint8_t *wr,
                  const int64_t *next_use, const int64_t *params, const int64_t *rtable,
                  const int64_t *ptable, const int64_t *pconf, uint8_t *hit_out,
                  int8_t *way_out, uint8_t *evict_out, uint8_t *wb_out, uint64_t *cnt) {
    cache_t c;
    c.sets = (int)params[0];
    c.ways = (int)params[1];
    int obits = (int)params[2];
    c.ibits = (int)params[3];
    int abits = (int)params[4];
    c.policy = (int)params[5];
    c.lfsr = (uint32_t)params[6];
    int tn = (int)params[7], tk = (int)params[8], th = (int)params[9];
    int fkind = (int)params[10], degree = (int)params[11];
    int64_t latency = params[12];
    int qdepth = (int)params[13], fn = (int)params[14], fh = (int)params[16];
    c.cnt = cnt;
    memset(cnt, 0, sizeof(uint64_t) * C_COUNT);
    int64_t lines = (int64_t)c.sets * c.ways;
    c.tag = calloc(lines, sizeof(uint64_t));
    c.valid = calloc(lines, 1);
    c.dirty = calloc(lines, 1);
    c.st = calloc(lines, 1);
    c.pf = calloc(lines, 1);
    c.plru = calloc(lines, 1);
    c.nu = calloc(lines, sizeof(int64_t));
    int64_t fentries = (int64_t)1 << fn;
    uint64_t *s_last = calloc(fentries, sizeof(uint64_t));
    uint16_t *s_stride = calloc(fentries, sizeof(uint16_t));
    uint8_t *s_conf = calloc(fentries, 1);
    uint64_t *q_line = calloc(qdepth > 0 ? qdepth : 1, sizeof(uint64_t));
    int64_t *q_ready = calloc(qdepth > 0 ? qdepth : 1, sizeof(int64_t));
    if (!c.tag || !c.valid || !c.dirty || !c.st || !c.pf || !c.plru || !c.nu || !s_last
        || !s_stride || !s_conf || !q_line || !q_ready)
        return -1;
    for (int64_t i = 0; i < lines; i++) {
        int w = (int)(i % c.ways);
        c.st[i] = c.policy == P_LRU ? (uint8_t)w : c.policy == P_SRRIP ? 3 : 7;
    }
    uint64_t amask = abits >= 64 ? ~0ull : ((1ull << abits) - 1);
    int lbits = abits - obits;
    uint64_t lmask = lbits >= 64 ? ~0ull : ((1ull << lbits) - 1);
    uint64_t pc_hist[5] = {0, 0, 0, 0, 0};
    uint64_t d_hist[5] = {0, 0, 0, 0, 0};
    uint64_t prev_line = 0;
    int q_head = 0, q_count = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t line = (addr[i] & amask) >> obits;
        int64_t s = (int64_t)(line & (uint64_t)(c.sets - 1));
        uint64_t tag = line >> c.ibits;
        int64_t base = s * c.ways;
        /* prefetch fills whose time has come go first */
        while (q_count > 0 && q_ready[q_head] <= i) {
            pf_fill(&c, q_line[q_head]);
            q_head = (q_head + 1) % qdepth;
            q_count--;
        }
        int r = 0;
        if (c.policy == P_TABLE) {
            pc_hist[0] = pc[i];
            uint64_t idx = 0;
            for (int j = 0; j <= th; j++) idx ^= rotl(fold(pc_hist[j] >> 2, tn), j, tn);
            int64_t e = rtable[idx];
            r = (int)(e >> (tk - 3));
            for (int j = 4; j > 0; j--) pc_hist[j] = pc_hist[j - 1];
        }
        int w = lookup(&c, base, tag);
        int pf_hit = 0;
        if (w >= 0) {
            cnt[C_HITS]++;
            hit_out[i] = 1;
            evict_out[i] = 0;
            wb_out[i] = 0;
            if (wr[i]) c.dirty[base + w] = 1;
            if (c.pf[base + w]) {
                cnt[C_PF_USEFUL]++;
                c.pf[base + w] = 0;
                pf_hit = 1;
            }
            touch(&c, s, w, 1, r);
        } else {
            cnt[C_MISSES]++;
            hit_out[i] = 0;
            for (int k = 0; k < q_count; k++)
                if (q_line[(q_head + k) % qdepth] == line) {
                    cnt[C_PF_LATE]++;
                    break;
                }
            w = pick(&c, s);
            evict_out[i] = 0;
            wb_out[i] = 0;
            if (c.valid[base + w]) {
                cnt[C_EVICTIONS]++;
                evict_out[i] = 1;
                if (c.dirty[base + w]) {
                    cnt[C_WRITEBACKS]++;
                    wb_out[i] = 1;
                }
                if (c.pf[base + w]) cnt[C_PF_EVICTED_UNUSED]++;
            }
            c.valid[base + w] = 1;
            c.tag[base + w] = tag;
            c.dirty[base + w] = wr[i] ? 1 : 0;
            c.pf[base + w] = 0;
            touch(&c, s, w, 0, r);
        }
        way_out[i] = (int8_t)w;
        if (c.policy == P_OPT) c.nu[base + w] = next_use[i];
        if (fkind == F_NONE) continue;
        /* the prefetcher trains on this access and proposes up to `degree` lines */
        uint64_t step = 0;
        int go = 0;
        if (fkind == F_NEXTLINE) {
            go = !hit_out[i] || pf_hit;
            step = 1;
        } else if (fkind == F_STRIDE) {
            uint64_t e = fold(pc[i] >> 2, fn);
            uint16_t d = (uint16_t)((line - s_last[e]) & 0xFFFF);
            if (d == s_stride[e]) {
                if (s_conf[e] < 3) s_conf[e]++;
            } else if (s_conf[e] == 0) {
                s_stride[e] = d;
            } else {
                s_conf[e]--;
            }
            s_last[e] = line;
            go = s_conf[e] >= 2 && s_stride[e] != 0;
            step = (uint64_t)(int64_t)(int16_t)s_stride[e];
        } else if (fkind == F_TABLE) {
            d_hist[0] = (line - prev_line) & lmask;
            uint64_t idx = fold(pc[i] >> 2, fn);
            for (int j = 1; j <= fh; j++) idx ^= rotl(fold(d_hist[j - 1], fn), j, fn);
            int64_t delta = ptable[idx];
            go = delta != 0 && pconf[idx] >= 2;
            step = (uint64_t)delta;
            for (int j = 4; j > 0; j--) d_hist[j] = d_hist[j - 1];
            prev_line = line;
        }
        if (!go) continue;
        for (int k = 1; k <= degree; k++) {
            uint64_t cand = (line + step * (uint64_t)k) & lmask;
            int dup = 0;
            for (int j = 0; j < q_count; j++)
                if (q_line[(q_head + j) % qdepth] == cand) { dup = 1; break; }
            if (dup) continue;
            if (q_count == qdepth) { cnt[C_PF_DROPPED]++; continue; }
            int tail = (q_head + q_count) % qdepth;
            q_line[tail] = cand;
            q_ready[tail] = i + 1 + latency;
            q_count++;
            cnt[C_PF_REQUESTS]++;
        }
    }
    /* requests whose time has come by the end of the trace still fill (the RTL drains them) */
    while (q_count > 0 && q_ready[q_head] <= n) {
        pf_fill(&c, q_line[q_head]);
        q_head = (q_head + 1) % qdepth;
        q_count--;
    }
    free(c.tag); free(c.valid); free(c.dirty); free(c.st); free(c.pf); free(c.plru); free(c.nu);
    free(s_last); free(s_stride); free(s_conf); free(q_line); free(q_ready);
    return 0;
}
