/*
 * A set of PDQ hashes answering "every stored hash within Hamming distance d of this
 * one", exactly: a linear scan of the packed hashes (32 bytes each) with a popcount of
 * the XOR, plus an open-addressing table (slot + 1 per entry, at most half full) so
 * add and remove find a hash in O(1). Remove moves the last hash into the freed slot.
 *
 * Memory: 32 bytes per hash in the array plus 8-16 bytes of table (4-byte entries at
 * load 1/4..1/2), after `enf_pdq_index_reserve` or growth by doubling (array capacity
 * up to 2x the count between doublings; `enf_pdq_index_memory` reports the bytes held).
 *
 * Not thread-safe: the caller serialises every call on one index (the Python wrapper
 * holds a lock). No global state besides the popcount choice made at load time.
 */
#include "enforce_native.h"

#include <stdlib.h>
#include <string.h>

struct enf_pdq_index {
    uint64_t *hashes; /* count x 4 words, the hash bytes as stored */
    uint64_t count, cap;
    uint32_t *table;  /* slot + 1, 0 = empty; table_cap is a power of two */
    uint64_t table_cap;
};

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define ENF_PDQ_X86 1
static int pdq_popcnt_hw;
__attribute__((constructor)) static void pdq_index_init(void) {
    __builtin_cpu_init();
    pdq_popcnt_hw = __builtin_cpu_supports("popcnt");
}
#endif

#define SCAN_BODY                                                                        \
    uint64_t found = 0;                                                                  \
    for (uint64_t s = 0; s < count; s++) {                                               \
        const uint64_t *h = hashes + 4 * s;                                              \
        uint32_t d = (uint32_t)(__builtin_popcountll(h[0] ^ q[0]) +                      \
                                __builtin_popcountll(h[1] ^ q[1]) +                      \
                                __builtin_popcountll(h[2] ^ q[2]) +                      \
                                __builtin_popcountll(h[3] ^ q[3]));                      \
        if (d <= max_distance) {                                                         \
            if (found < cap) {                                                           \
                out_slots[found] = s;                                                    \
                out_dist[found] = d;                                                     \
            }                                                                            \
            found++;                                                                     \
        }                                                                                \
    }                                                                                    \
    return found;

static uint64_t scan_soft(const uint64_t *hashes, uint64_t count, const uint64_t *q,
                          uint32_t max_distance, uint64_t *out_slots, uint32_t *out_dist,
                          uint64_t cap) {
    SCAN_BODY
}

#if defined(ENF_PDQ_X86)
__attribute__((target("popcnt"))) static uint64_t scan_hw(
    const uint64_t *hashes, uint64_t count, const uint64_t *q, uint32_t max_distance,
    uint64_t *out_slots, uint32_t *out_dist, uint64_t cap) {
    SCAN_BODY
}
#endif

static uint64_t mix(const uint64_t *h) {
    uint64_t x = h[0] ^ (h[1] * 0x9e3779b97f4a7c15ull) ^ (h[2] * 0xc2b2ae3d27d4eb4full) ^ h[3];
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29);
}

/* The table position holding `h`, or the empty position where it would go. */
static uint64_t find(const enf_pdq_index *ix, const uint64_t *h) {
    uint64_t mask = ix->table_cap - 1;
    uint64_t pos = mix(h) & mask;
    for (;;) {
        uint32_t e = ix->table[pos];
        if (e == 0 || memcmp(ix->hashes + 4 * (uint64_t)(e - 1), h, 32) == 0) return pos;
        pos = (pos + 1) & mask;
    }
}

static int rebuild_table(enf_pdq_index *ix, uint64_t table_cap) {
    uint32_t *table = calloc(table_cap, sizeof(uint32_t));
    if (!table) return ENF_ERR_NOMEM;
    free(ix->table);
    ix->table = table;
    ix->table_cap = table_cap;
    for (uint64_t s = 0; s < ix->count; s++) ix->table[find(ix, ix->hashes + 4 * s)] = (uint32_t)(s + 1);
    return ENF_OK;
}

int enf_pdq_index_reserve(enf_pdq_index *ix, uint64_t capacity) {
    if (capacity > ENF_PDQ_INDEX_MAX) return ENF_ERR_TOO_LARGE;
    if (capacity > ix->cap) {
        uint64_t *grown = realloc(ix->hashes, capacity * 32);
        if (!grown) return ENF_ERR_NOMEM;
        ix->hashes = grown;
        ix->cap = capacity;
    }
    uint64_t want = 16;
    while (want < 2 * capacity) want <<= 1;
    if (want > ix->table_cap) return rebuild_table(ix, want);
    return ENF_OK;
}

int enf_pdq_index_new(uint64_t capacity, enf_pdq_index **out) {
    enf_pdq_index *ix = calloc(1, sizeof(*ix));
    if (!ix) return ENF_ERR_NOMEM;
    int rc = enf_pdq_index_reserve(ix, capacity < 8 ? 8 : capacity);
    if (rc != ENF_OK) {
        enf_pdq_index_free(ix);
        return rc;
    }
    *out = ix;
    return ENF_OK;
}

void enf_pdq_index_free(enf_pdq_index *ix) {
    if (!ix) return;
    free(ix->hashes);
    free(ix->table);
    free(ix);
}

uint64_t enf_pdq_index_count(const enf_pdq_index *ix) { return ix->count; }

uint64_t enf_pdq_index_memory(const enf_pdq_index *ix) {
    return sizeof(*ix) + ix->cap * 32 + ix->table_cap * sizeof(uint32_t);
}

int enf_pdq_index_add(enf_pdq_index *ix, const uint8_t *hash, int *added) {
    uint64_t h[4];
    memcpy(h, hash, 32);
    *added = 0;
    if (ix->table[find(ix, h)] != 0) return ENF_OK;
    if (ix->count == ix->cap) {
        if (ix->count >= ENF_PDQ_INDEX_MAX) return ENF_ERR_TOO_LARGE;
        uint64_t grown = ix->cap * 2 > ENF_PDQ_INDEX_MAX ? ENF_PDQ_INDEX_MAX : ix->cap * 2;
        int rc = enf_pdq_index_reserve(ix, grown);
        if (rc != ENF_OK) return rc;
    }
    memcpy(ix->hashes + 4 * ix->count, h, 32);
    ix->count++;
    ix->table[find(ix, h)] = (uint32_t)ix->count;
    *added = 1;
    return ENF_OK;
}

int enf_pdq_index_remove(enf_pdq_index *ix, const uint8_t *hash, int *removed) {
    uint64_t h[4];
    memcpy(h, hash, 32);
    uint64_t pos = find(ix, h);
    *removed = 0;
    if (ix->table[pos] == 0) return ENF_OK;
    uint64_t slot = ix->table[pos] - 1;
    /* Delete from the table with backward shift (linear probing keeps no tombstones). */
    uint64_t mask = ix->table_cap - 1;
    uint64_t hole = pos;
    for (uint64_t next = (hole + 1) & mask; ix->table[next] != 0; next = (next + 1) & mask) {
        uint64_t home = mix(ix->hashes + 4 * (uint64_t)(ix->table[next] - 1)) & mask;
        /* move entry `next` into the hole unless its home lies cyclically in (hole, next] */
        int stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (!stays) {
            ix->table[hole] = ix->table[next];
            hole = next;
        }
    }
    ix->table[hole] = 0;
    uint64_t last = ix->count - 1;
    if (slot != last) {
        memcpy(ix->hashes + 4 * slot, ix->hashes + 4 * last, 32);
        ix->table[find(ix, ix->hashes + 4 * slot)] = (uint32_t)(slot + 1);
    }
    ix->count--;
    *removed = 1;
    return ENF_OK;
}

int enf_pdq_index_contains(const enf_pdq_index *ix, const uint8_t *hash) {
    uint64_t h[4];
    memcpy(h, hash, 32);
    return ix->table[find(ix, h)] != 0;
}

void enf_pdq_index_get(const enf_pdq_index *ix, uint64_t slot, uint8_t *out) {
    memcpy(out, ix->hashes + 4 * slot, 32);
}

uint64_t enf_pdq_index_query(const enf_pdq_index *ix, const uint8_t *query, uint32_t max_distance,
                             uint64_t *out_slots, uint32_t *out_dist, uint64_t cap) {
    uint64_t q[4];
    memcpy(q, query, 32);
#if defined(ENF_PDQ_X86)
    if (pdq_popcnt_hw) return scan_hw(ix->hashes, ix->count, q, max_distance, out_slots, out_dist, cap);
#endif
    return scan_soft(ix->hashes, ix->count, q, max_distance, out_slots, out_dist, cap);
}
