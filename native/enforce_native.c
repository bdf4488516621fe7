/*
 * enforce_native: signature hash, blocked bloom filter, snapshot format.
 * Definitions (hash, bit layout, sizing, snapshot bytes) are in docs/native.md;
 * the code here must stay byte-for-byte compatible with them.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* posix_memalign under -std=c11 */
#endif
#include "enforce_native.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define ENF_HAVE_X86_CRC 1
#endif
#if defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#define ENF_HAVE_ARM_CRC 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ENF_PREFETCH_R(p) __builtin_prefetch((p), 0, 3)
#define ENF_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#define ENF_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define ENF_PREFETCH_R(p) ((void)(p))
#define ENF_PREFETCH_W(p) ((void)(p))
#define ENF_LIKELY(x) (x)
#endif

/* ------------------------------------------------------------------------- */
/* Portable little-endian reads: byte order and alignment never matter.      */

static inline uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline uint32_t get_le16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

/* ------------------------------------------------------------------------- */
/* sig64 v1                                                                  */

/* Fractional parts of sqrt(2), sqrt(3), sqrt(5), sqrt(7), sqrt(11), sqrt(13). */
#define K0 UINT64_C(0x6a09e667f3bcc908)
#define K1 UINT64_C(0xbb67ae8584caa73b)
#define K2 UINT64_C(0x3c6ef372fe94f82b)
#define K3 UINT64_C(0xa54ff53a5f1d36f1)
#define K4 UINT64_C(0x510e527fade682d1)
#define K5 UINT64_C(0x9b05688c2b3e6c1f)

/* The 128-bit product of a and b, folded to 64 bits by xor of its halves. */
static inline uint64_t fold(uint64_t a, uint64_t b)
{
#if defined(__SIZEOF_INT128__) && !defined(ENF_NO_INT128)
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

static inline uint64_t sig64(const uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed ^ K0;
    uint64_t a, b;
    if (ENF_LIKELY(n <= 16)) {
        if (n >= 8) {
            a = le64(p);
            b = le64(p + n - 8);
        } else if (n >= 4) {
            a = le32(p);
            b = le32(p + n - 4);
        } else if (n > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = 0;
            b = 0;
        }
    } else {
        size_t i = n;
        while (i > 16) {
            s = fold(le64(p) ^ K1, le64(p + 8) ^ s);
            p += 16;
            i -= 16;
        }
        /* The last 16 bytes of the key (overlapping what the loop read). */
        a = le64(p + i - 16);
        b = le64(p + i - 8);
    }
    s = fold(a ^ K2, b ^ s);
    return fold(s ^ K3, s ^ K4 ^ (uint64_t)n);
}

const char *enf_hash_name(uint32_t hash_id)
{
    return hash_id == ENF_HASH_ID ? "sig64-v1" : "unknown";
}

uint64_t enf_sig64(const char *data, size_t len, uint64_t seed)
{
    return sig64((const uint8_t *)data, len, seed);
}

/* Walks `count` '\n'-separated keys, running the trailing statements with i_ (index)
 * and sig_ (signature) bound; returns ENF_ERR_BATCH from the caller on a count mismatch. */
#define FOR_EACH_LINE(buf, len, count, seed, ...)                                    \
    do {                                                                             \
        const uint8_t *p_ = (const uint8_t *)(buf);                                  \
        const uint8_t *end_ = p_ + (len);                                            \
        for (size_t i_ = 0; i_ < (count); i_++) {                                    \
            const uint8_t *nl_ = memchr(p_, '\n', (size_t)(end_ - p_));              \
            const uint8_t *stop_ = nl_ ? nl_ : end_;                                 \
            if (!nl_ && i_ + 1 != (count)) return ENF_ERR_BATCH;                     \
            uint64_t sig_ = sig64(p_, (size_t)(stop_ - p_), (seed));                 \
            __VA_ARGS__;                                                             \
            p_ = nl_ ? nl_ + 1 : end_;                                               \
            if (i_ + 1 == (count) && nl_) return ENF_ERR_BATCH;                      \
        }                                                                            \
    } while (0)

int enf_sig64_lines(const char *buf, size_t len, size_t count, uint64_t seed, uint64_t *out)
{
    if (count == 0) return len == 0 ? ENF_OK : ENF_ERR_BATCH;
    FOR_EACH_LINE(buf, len, count, seed, out[i_] = sig_);
    return ENF_OK;
}

/* ------------------------------------------------------------------------- */
/* CRC32C                                                                    */

static uint32_t crc_table[8][256];
static int crc_ready;
#if defined(ENF_HAVE_X86_CRC)
static int crc_hw;
#endif

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
#if defined(ENF_HAVE_X86_CRC)
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
    crc_ready = 1;
}

#if defined(__GNUC__) || defined(__clang__)
/* Tables are built when the shared object is loaded, before any thread can call in. */
__attribute__((constructor)) static void enf_native_init(void) { crc_init(); }
#endif

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t v = le64(p) ^ c;
        c = crc_table[7][v & 0xFF] ^ crc_table[6][(v >> 8) & 0xFF] ^
            crc_table[5][(v >> 16) & 0xFF] ^ crc_table[4][(v >> 24) & 0xFF] ^
            crc_table[3][(v >> 32) & 0xFF] ^ crc_table[2][(v >> 40) & 0xFF] ^
            crc_table[1][(v >> 48) & 0xFF] ^ crc_table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return c;
}

#if defined(ENF_HAVE_X86_CRC)
__attribute__((target("sse4.2"))) static uint32_t crc_x86(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c64;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

#if defined(ENF_HAVE_ARM_CRC)
static uint32_t crc_arm(uint32_t c, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __crc32cd(c, v);
        p += 8;
        n -= 8;
    }
    while (n--) c = __crc32cb(c, *p++);
    return c;
}
#endif

static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc_ready) crc_init();
    uint32_t c = ~crc;
#if defined(ENF_HAVE_X86_CRC)
    if (crc_hw) return ~crc_x86(c, p, n);
#elif defined(ENF_HAVE_ARM_CRC)
    return ~crc_arm(c, p, n);
#endif
    return ~crc_soft(c, p, n);
}

uint32_t enf_crc32c(uint32_t crc, const char *data, size_t len)
{
    return crc32c(crc, (const uint8_t *)data, len);
}

uint32_t enf_crc32c_portable(uint32_t crc, const char *data, size_t len)
{
    if (!crc_ready) crc_init();
    return ~crc_soft(~crc, (const uint8_t *)data, len);
}

/* ------------------------------------------------------------------------- */
/* Sizing: exact FP of a blocked filter with k positions drawn with          */
/* replacement from 512 bits, keys spread binomially over the blocks.        */

struct fp_model {
    uint32_t k;
    double coef[ENF_MAX_K + 1]; /* FP given m bits thrown = sum_i coef[i] * (1-i/B)^m */
};

static void fp_model_init(struct fp_model *m, uint32_t k)
{
    /* P(d distinct positions among k draws) via the occupancy recurrence. */
    double pd[ENF_MAX_K + 1] = {0};
    pd[0] = 1.0;
    for (uint32_t draw = 0; draw < k; draw++) {
        double next[ENF_MAX_K + 1] = {0};
        for (uint32_t d = 0; d <= draw; d++) {
            next[d] += pd[d] * (double)d / ENF_BLOCK_BITS;
            next[d + 1] += pd[d] * (double)(ENF_BLOCK_BITS - d) / ENF_BLOCK_BITS;
        }
        memcpy(pd, next, sizeof pd);
    }
    /* P(d given positions all hit by m throws) = sum_i (-1)^i C(d,i) (1-i/B)^m. */
    m->k = k;
    for (uint32_t i = 0; i <= k; i++) {
        double c = 0.0;
        for (uint32_t d = i; d <= k; d++) {
            double binom = 1.0;
            for (uint32_t t = 0; t < i; t++) binom = binom * (double)(d - t) / (double)(t + 1);
            c += pd[d] * binom;
        }
        m->coef[i] = (i & 1) ? -c : c;
    }
}

static double fp_model_eval(const struct fp_model *m, uint64_t blocks, uint64_t keys)
{
    if (keys == 0) return 0.0;
    const double B = ENF_BLOCK_BITS;
    const double n = (double)keys, p = 1.0 / (double)blocks;
    const uint32_t k = m->k;
    /* Saturated: if even the lowest load j0 of the summed range puts j0*k >= 64*512
     * positions into a block, each bit is clear with probability < e^-64, every term
     * is 1.0 in double precision and so is the sum. Answering early also bounds the loops below (about 28 sd terms
     * from j0 < 2^15) to a few thousand terms and keeps j0..j1 far below 2^64, whatever
     * `keys` is. */
    const double saturated = 64.0 * B / (double)k;
    uint64_t j0, j1;
    double pmf, ratio;
    if (blocks == 1) {
        if (n >= saturated) return 1.0;
        j0 = j1 = keys;
        pmf = 1.0;
        ratio = 0.0;
    } else {
        const double lam = n * p, sd = sqrt(lam * (1.0 - p));
        double lo = floor(lam - 14.0 * sd - 30.0), hi = ceil(lam + 14.0 * sd + 30.0);
        if (lo >= saturated) return 1.0;
        j0 = lo < 0.0 ? 0 : (uint64_t)lo;
        j1 = hi >= n ? keys : (uint64_t)hi;
        /* Binomial(keys, 1/blocks) pmf at j0, then by the ratio of successive terms. */
        pmf = exp(lgamma(n + 1.0) - lgamma((double)j0 + 1.0) - lgamma(n - (double)j0 + 1.0) +
                  (double)j0 * log(p) + (n - (double)j0) * log1p(-p));
        ratio = p / (1.0 - p);
    }
    double step[ENF_MAX_K + 1], t0[ENF_MAX_K + 1], t[ENF_MAX_K + 1];
    for (uint32_t i = 0; i <= k; i++) {
        double r = 1.0 - (double)i / B;
        step[i] = pow(r, (double)k);
        t0[i] = t[i] = pow(r, (double)k * (double)j0);
    }
    const double pmf0 = pmf;
    double total = 0.0;
    for (uint64_t j = j0; j <= j1; j++) {
        double fj = 0.0;
        for (uint32_t i = 0; i <= k; i++) fj += m->coef[i] * t[i];
        total += pmf * (fj > 0.0 ? fj : 0.0);
        for (uint32_t i = 0; i <= k; i++) t[i] *= step[i];
        pmf *= (n - (double)j) / ((double)j + 1.0) * ratio;
    }
    if (total >= 1e-9) return total;
    /* Inclusion-exclusion cancels badly this low; (fill fraction)^k is stable there
     * (it underestimates by the small Jensen gap). */
    double naive = 0.0;
    pmf = pmf0;
    double t1 = t0[1];
    for (uint64_t j = j0; j <= j1; j++) {
        naive += pmf * pow(1.0 - t1, (double)k);
        t1 *= step[1];
        pmf *= (n - (double)j) / ((double)j + 1.0) * ratio;
    }
    return naive;
}

double enf_bloom_model_fp(uint64_t blocks, uint32_t k, uint64_t keys)
{
    if (blocks == 0 || k == 0 || k > ENF_MAX_K) return 1.0;
    struct fp_model m;
    fp_model_init(&m, k);
    return fp_model_eval(&m, blocks, keys);
}

int enf_bloom_plan(uint64_t keys, double fp, uint64_t *blocks_out, uint32_t *k_out)
{
    if (keys == 0 || !(fp > 0.0 && fp < 1.0)) return ENF_ERR_ARG;
    uint64_t best_blocks = 0;
    uint32_t best_k = 0;
    for (uint32_t k = 1; k <= ENF_MAX_K; k++) {
        struct fp_model m;
        fp_model_init(&m, k);
        /* Start near 64 keys per block, never above the largest allocatable filter. */
        uint64_t hi = keys / 64 + 1;
        if (hi > (uint64_t)ENF_MAX_BLOCKS) hi = (uint64_t)ENF_MAX_BLOCKS;
        while (fp_model_eval(&m, hi, keys) > fp) {
            if (hi >= (uint64_t)ENF_MAX_BLOCKS) break;
            hi = hi * 2 > (uint64_t)ENF_MAX_BLOCKS ? (uint64_t)ENF_MAX_BLOCKS : hi * 2;
        }
        if (fp_model_eval(&m, hi, keys) > fp) continue;
        uint64_t lo = 1; /* invariant: fp(hi) <= target */
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (fp_model_eval(&m, mid, keys) <= fp)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (best_k == 0 || hi < best_blocks) {
            best_blocks = hi;
            best_k = k;
        }
    }
    /* No k reaches the target within ENF_MAX_BLOCKS (every search above is capped there). */
    if (best_k == 0) return ENF_ERR_TOO_LARGE;
    *blocks_out = best_blocks;
    *k_out = best_k;
    return ENF_OK;
}

/* ------------------------------------------------------------------------- */
/* The filter                                                                */

struct enf_bloom {
    uint64_t *words; /* blocks * 8 words, 64-byte aligned */
    uint64_t blocks;
    uint64_t seed;
    uint64_t key_count;
    uint64_t seq;
    uint32_t k;
};

static inline uint64_t load_word(const uint64_t *w) { return __atomic_load_n(w, __ATOMIC_RELAXED); }
static inline void store_word(uint64_t *w, uint64_t v) { __atomic_store_n(w, v, __ATOMIC_RELAXED); }

static inline uint64_t block_of(uint64_t sig, uint64_t blocks)
{
#if defined(__SIZEOF_INT128__) && !defined(ENF_NO_INT128)
    return (uint64_t)(((unsigned __int128)sig * blocks) >> 64);
#else
    uint64_t sl = (uint32_t)sig, sh = sig >> 32, bl = (uint32_t)blocks, bh = blocks >> 32;
    uint64_t mid = ((sl * bl) >> 32) + (uint32_t)(sl * bh) + (uint32_t)(sh * bl);
    return sh * bh + ((sl * bh) >> 32) + ((sh * bl) >> 32) + (mid >> 32);
#endif
}

/* The k bit positions of a signature inside its block, as one mask per word. */
static inline void bit_masks(uint64_t sig, uint32_t k, uint64_t mask[8])
{
    uint64_t g = fold(sig, K5);
    for (int w = 0; w < 8; w++) mask[w] = 0;
    for (uint32_t i = 0, slot = 0; i < k; i++, slot++) {
        if (slot == 7) {
            g = fold(g, K5);
            slot = 0;
        }
        uint32_t pos = (uint32_t)(g >> (9 * slot)) & 511u;
        mask[pos >> 6] |= UINT64_C(1) << (pos & 63);
    }
}

static inline int block_add(uint64_t *blk, uint64_t sig, uint32_t k)
{
    uint64_t mask[8], changed = 0;
    bit_masks(sig, k, mask);
    for (int w = 0; w < 8; w++) {
        if (mask[w]) {
            uint64_t old = load_word(blk + w);
            if ((old & mask[w]) != mask[w]) {
                store_word(blk + w, old | mask[w]);
                changed = 1;
            }
        }
    }
    return (int)changed;
}

static inline int block_has(const uint64_t *blk, uint64_t sig, uint32_t k)
{
    uint64_t g = fold(sig, K5), miss = 0;
    for (uint32_t i = 0, slot = 0; i < k; i++, slot++) {
        if (slot == 7) {
            g = fold(g, K5);
            slot = 0;
        }
        uint32_t pos = (uint32_t)(g >> (9 * slot)) & 511u;
        miss |= ~load_word(blk + (pos >> 6)) & (UINT64_C(1) << (pos & 63));
    }
    return miss == 0;
}

static inline uint64_t *block_ptr(const enf_bloom *b, uint64_t sig)
{
    return b->words + block_of(sig, b->blocks) * 8;
}

static void *alloc_words(uint64_t blocks)
{
    size_t bytes = (size_t)blocks * ENF_BLOCK_BYTES;
#if defined(_WIN32)
    return _aligned_malloc(bytes, ENF_BLOCK_BYTES);
#else
    void *p = NULL;
    if (posix_memalign(&p, ENF_BLOCK_BYTES, bytes) != 0) return NULL;
    return p;
#endif
}

static void free_words(void *p)
{
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

static int bloom_alloc(uint64_t blocks, uint32_t k, uint64_t seed, int zero, enf_bloom **out)
{
    if (blocks == 0 || k == 0 || k > ENF_MAX_K) return ENF_ERR_ARG;
    if (blocks > (uint64_t)ENF_MAX_BLOCKS || blocks > SIZE_MAX / ENF_BLOCK_BYTES) return ENF_ERR_TOO_LARGE;
    enf_bloom *b = calloc(1, sizeof *b);
    if (!b) return ENF_ERR_NOMEM;
    b->words = alloc_words(blocks);
    if (!b->words) {
        free(b);
        return ENF_ERR_NOMEM;
    }
    if (zero) memset(b->words, 0, (size_t)blocks * ENF_BLOCK_BYTES);
    b->blocks = blocks;
    b->k = k;
    b->seed = seed;
    *out = b;
    return ENF_OK;
}

int enf_bloom_new(uint64_t blocks, uint32_t k, uint64_t seed, enf_bloom **out)
{
    return bloom_alloc(blocks, k, seed, 1, out);
}

int enf_bloom_copy(const enf_bloom *src, enf_bloom **out)
{
    enf_bloom *b;
    int rc = bloom_alloc(src->blocks, src->k, src->seed, 0, &b);
    if (rc != ENF_OK) return rc;
    size_t nwords = (size_t)src->blocks * 8;
    for (size_t i = 0; i < nwords; i++) b->words[i] = load_word(src->words + i);
    b->key_count = load_word(&src->key_count);
    b->seq = load_word(&src->seq);
    *out = b;
    return ENF_OK;
}

void enf_bloom_free(enf_bloom *b)
{
    if (!b) return;
    free_words(b->words);
    free(b);
}

uint64_t enf_bloom_blocks(const enf_bloom *b) { return b->blocks; }
uint32_t enf_bloom_k(const enf_bloom *b) { return b->k; }
uint64_t enf_bloom_seed(const enf_bloom *b) { return b->seed; }
uint64_t enf_bloom_key_count(const enf_bloom *b) { return load_word(&b->key_count); }
uint64_t enf_bloom_seq(const enf_bloom *b) { return load_word(&b->seq); }
void enf_bloom_set_seq(enf_bloom *b, uint64_t seq) { store_word(&b->seq, seq); }

double enf_bloom_fill_fp(const enf_bloom *b)
{
    /* A random absent key lands in a uniform block and draws k positions uniformly. */
    double table[ENF_BLOCK_BITS + 1];
    for (int i = 0; i <= ENF_BLOCK_BITS; i++) table[i] = pow((double)i / ENF_BLOCK_BITS, (double)b->k);
    double sum = 0.0;
    for (uint64_t blk = 0; blk < b->blocks; blk++) {
        const uint64_t *w = b->words + blk * 8;
        unsigned set = 0;
        for (int i = 0; i < 8; i++) set += (unsigned)__builtin_popcountll(load_word(w + i));
        sum += table[set];
    }
    return sum / (double)b->blocks;
}

int enf_bloom_add_key(enf_bloom *b, const char *key, size_t len)
{
    uint64_t sig = sig64((const uint8_t *)key, len, b->seed);
    int changed = block_add(block_ptr(b, sig), sig, b->k);
    store_word(&b->key_count, b->key_count + (uint64_t)changed);
    return changed;
}

int enf_bloom_contains_key(const enf_bloom *b, const char *key, size_t len)
{
    uint64_t sig = sig64((const uint8_t *)key, len, b->seed);
    return block_has(block_ptr(b, sig), sig, b->k);
}

int enf_bloom_add_sig(enf_bloom *b, uint64_t sig)
{
    int changed = block_add(block_ptr(b, sig), sig, b->k);
    store_word(&b->key_count, b->key_count + (uint64_t)changed);
    return changed;
}

int enf_bloom_contains_sig(const enf_bloom *b, uint64_t sig)
{
    return block_has(block_ptr(b, sig), sig, b->k);
}

/* Batches run in two passes over chunks: hash (and prefetch the block), then
 * touch the blocks, so the memory latency of CHUNK blocks overlaps. */
#define CHUNK 64

void enf_bloom_add_sigs(enf_bloom *b, const uint64_t *sigs, size_t n)
{
    uint64_t added = 0;
    for (size_t base = 0; base < n; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        uint64_t *blk[CHUNK];
        for (size_t i = 0; i < m; i++) {
            blk[i] = block_ptr(b, sigs[base + i]);
            ENF_PREFETCH_W(blk[i]);
        }
        for (size_t i = 0; i < m; i++) added += (uint64_t)block_add(blk[i], sigs[base + i], b->k);
    }
    store_word(&b->key_count, b->key_count + added);
}

void enf_bloom_contains_sigs(const enf_bloom *b, const uint64_t *sigs, size_t n, uint8_t *out)
{
    for (size_t base = 0; base < n; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        const uint64_t *blk[CHUNK];
        for (size_t i = 0; i < m; i++) {
            blk[i] = block_ptr(b, sigs[base + i]);
            ENF_PREFETCH_R(blk[i]);
        }
        for (size_t i = 0; i < m; i++) out[base + i] = (uint8_t)block_has(blk[i], sigs[base + i], b->k);
    }
}

int enf_bloom_contains_lines(const enf_bloom *b, const char *buf, size_t len, size_t count,
                             uint8_t *out)
{
    if (count == 0) return len == 0 ? ENF_OK : ENF_ERR_BATCH;
    uint64_t sigs[CHUNK];
    size_t fill = 0, done = 0;
    FOR_EACH_LINE(buf, len, count, b->seed, {
        sigs[fill++] = sig_;
        ENF_PREFETCH_R(block_ptr(b, sig_));
        if (fill == CHUNK) {
            enf_bloom_contains_sigs(b, sigs, fill, out + done);
            done += fill;
            fill = 0;
        }
    });
    if (fill) enf_bloom_contains_sigs(b, sigs, fill, out + done);
    return ENF_OK;
}

int enf_bloom_union(enf_bloom *dst, const enf_bloom *src)
{
    if (dst->blocks != src->blocks || dst->k != src->k || dst->seed != src->seed)
        return ENF_ERR_MISMATCH;
    if (dst == src) return ENF_OK;
    size_t nwords = (size_t)dst->blocks * 8;
    for (size_t i = 0; i < nwords; i++) {
        uint64_t s = load_word(src->words + i);
        uint64_t d = load_word(dst->words + i);
        if ((d | s) != d) store_word(dst->words + i, d | s);
    }
    store_word(&dst->key_count, dst->key_count + load_word(&src->key_count));
    if (load_word(&src->seq) > dst->seq) store_word(&dst->seq, load_word(&src->seq));
    return ENF_OK;
}

/* ------------------------------------------------------------------------- */
/* Snapshot v1 (little-endian):                                              */
/*   0 magic "ENFBLOOM" | 8 u16 version | 10 u16 header size | 12 u32 hash id */
/*  16 u64 seed | 24 u64 blocks | 32 u32 block bits | 36 u32 k               */
/*  40 u64 key count | 48 u64 seq | 56 u32 body crc32c | 60 u32 header crc32c */
/*  64 body: blocks * 8 words, each u64 little-endian                        */

static const uint8_t MAGIC[8] = {'E', 'N', 'F', 'B', 'L', 'O', 'O', 'M'};

size_t enf_snapshot_size(const enf_bloom *b)
{
    return ENF_SNAPSHOT_HEADER_SIZE + (size_t)b->blocks * ENF_BLOCK_BYTES;
}

int enf_snapshot_write(const enf_bloom *b, uint8_t *out, size_t cap)
{
    size_t body = (size_t)b->blocks * ENF_BLOCK_BYTES;
    if (cap < ENF_SNAPSHOT_HEADER_SIZE + body) return ENF_ERR_ARG;
    uint8_t *dst = out + ENF_SNAPSHOT_HEADER_SIZE;
    size_t nwords = (size_t)b->blocks * 8;
    /* Copy first, then checksum the copy: a concurrent add cannot make them disagree. */
    for (size_t i = 0; i < nwords; i++) {
        uint64_t v = load_word(b->words + i);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        put_le64(dst + 8 * i, v);
#else
        memcpy(dst + 8 * i, &v, 8);
#endif
    }
    uint8_t *h = out;
    memset(h, 0, ENF_SNAPSHOT_HEADER_SIZE);
    memcpy(h, MAGIC, 8);
    put_le16(h + 8, ENF_SNAPSHOT_VERSION);
    put_le16(h + 10, ENF_SNAPSHOT_HEADER_SIZE);
    put_le32(h + 12, ENF_HASH_ID);
    put_le64(h + 16, b->seed);
    put_le64(h + 24, b->blocks);
    put_le32(h + 32, ENF_BLOCK_BITS);
    put_le32(h + 36, b->k);
    put_le64(h + 40, load_word(&b->key_count));
    put_le64(h + 48, load_word(&b->seq));
    put_le32(h + 56, crc32c(0, dst, body));
    put_le32(h + 60, crc32c(0, h, 60));
    return ENF_OK;
}

int enf_snapshot_read(const char *buf, size_t len, enf_bloom **out)
{
    const uint8_t *h = (const uint8_t *)buf;
    /* Whatever bytes there are must start the magic: a short foreign file is foreign. */
    if (memcmp(h, MAGIC, len < 8 ? len : 8) != 0) return ENF_ERR_SNAP_MAGIC;
    if (len < 12) return ENF_ERR_SNAP_TRUNCATED;
    /* The header CRC is checked before the version is believed, so a flipped version
     * bit reads as corruption. Versions up to ours have a 64-byte header whatever the
     * size field says (the CRC covers that field too). A later version's layout is
     * unknown, but every version must keep bytes 0..11 and end its header (of at least
     * 64 bytes) with the CRC32C of the bytes before it (docs/native.md), so its CRC can
     * be found from the size field alone. */
    uint32_t version = get_le16(h + 8), header_size = get_le16(h + 10);
    uint32_t crc_at = ENF_SNAPSHOT_HEADER_SIZE - 4;
    if (version > ENF_SNAPSHOT_VERSION) {
        if (header_size < ENF_SNAPSHOT_HEADER_SIZE) return ENF_ERR_SNAP_HEADER;
        crc_at = header_size - 4;
    }
    if (len < (size_t)crc_at + 4) return ENF_ERR_SNAP_TRUNCATED;
    if (crc32c(0, h, crc_at) != (uint32_t)le32(h + crc_at)) return ENF_ERR_SNAP_HEADER_CRC;
    if (version > ENF_SNAPSHOT_VERSION) return ENF_ERR_SNAP_VERSION;
    if (version != ENF_SNAPSHOT_VERSION || header_size != ENF_SNAPSHOT_HEADER_SIZE)
        return ENF_ERR_SNAP_HEADER;
    if ((uint32_t)le32(h + 12) != ENF_HASH_ID) return ENF_ERR_SNAP_HASH;
    uint64_t seed = le64(h + 16), blocks = le64(h + 24);
    uint32_t block_bits = (uint32_t)le32(h + 32), k = (uint32_t)le32(h + 36);
    if (block_bits != ENF_BLOCK_BITS || k == 0 || k > ENF_MAX_K || blocks == 0 ||
        blocks > (uint64_t)ENF_MAX_BLOCKS)
        return ENF_ERR_SNAP_PARAMS;
    size_t body = (size_t)blocks * ENF_BLOCK_BYTES;
    if (len - ENF_SNAPSHOT_HEADER_SIZE < body) return ENF_ERR_SNAP_TRUNCATED;
    if (len - ENF_SNAPSHOT_HEADER_SIZE > body) return ENF_ERR_SNAP_TRAILING;
    const uint8_t *src = h + ENF_SNAPSHOT_HEADER_SIZE;
    if (crc32c(0, src, body) != (uint32_t)le32(h + 56)) return ENF_ERR_SNAP_BODY;
    enf_bloom *b;
    int rc = bloom_alloc(blocks, k, seed, 0, &b);
    if (rc != ENF_OK) return rc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < (size_t)blocks * 8; i++) b->words[i] = le64(src + 8 * i);
#else
    memcpy(b->words, src, body);
#endif
    b->key_count = le64(h + 40);
    b->seq = le64(h + 48);
    *out = b;
    return ENF_OK;
}

const char *enf_strerror(int code)
{
    switch (code) {
    case ENF_OK: return "ok";
    case ENF_ERR_NOMEM: return "out of memory";
    case ENF_ERR_ARG: return "invalid argument";
    case ENF_ERR_MISMATCH: return "filters differ in block count, k or seed";
    case ENF_ERR_BATCH: return "the key buffer does not hold the stated number of keys";
    case ENF_ERR_TOO_LARGE: return "the filter would exceed the maximum size";
    case ENF_ERR_SNAP_TRUNCATED: return "truncated: shorter than its header says";
    case ENF_ERR_SNAP_MAGIC: return "not a bloom snapshot (wrong magic)";
    case ENF_ERR_SNAP_VERSION: return "format version is newer than this build supports";
    case ENF_ERR_SNAP_HEADER: return "corrupt header (invalid version or header size)";
    case ENF_ERR_SNAP_HEADER_CRC: return "corrupt header (checksum mismatch)";
    case ENF_ERR_SNAP_PARAMS: return "corrupt header (parameters out of range)";
    case ENF_ERR_SNAP_BODY: return "corrupt body (checksum mismatch)";
    case ENF_ERR_SNAP_TRAILING: return "trailing bytes after the body";
    case ENF_ERR_SNAP_HASH: return "unknown hash id";
    default: return "unknown error";
    }
}
