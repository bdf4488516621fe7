/*
 * enforce_native: 64-bit key signatures, a cache-line-blocked bloom filter and
 * its versioned snapshot format. See docs/native.md for the definitions.
 *
 * The block between CDEF BEGIN and CDEF END is read by native/build_native.py
 * and handed to cffi, so it must stay plain declarations: no preprocessor
 * conditionals, and every #define a single integer constant (cffi reads the
 * values from the compiled C, never from Python).
 *
 * Thread safety: functions taking `const enf_bloom *` only read and may run
 * concurrently with each other and with ONE writer (add / union / set_seq):
 * bits are read and written as whole 64-bit words with relaxed atomics, and a
 * writer only ever sets bits, so a reader sees each word either before or after
 * an update, never a torn or cleared word. Two writers on one filter must be
 * serialised by the caller (the Python wrapper holds a lock).
 */
#ifndef ENFORCE_NATIVE_H
#define ENFORCE_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* CDEF BEGIN */
#define ENF_HASH_ID 1
#define ENF_SNAPSHOT_VERSION 1
#define ENF_SNAPSHOT_HEADER_SIZE 64
#define ENF_BLOCK_BYTES 64
#define ENF_BLOCK_BITS 512
#define ENF_MAX_K 16
#define ENF_MAX_BLOCKS 17179869184
#define ENF_DEFAULT_SEED 0

#define ENF_OK 0
#define ENF_ERR_NOMEM 1
#define ENF_ERR_ARG 2
#define ENF_ERR_MISMATCH 3
#define ENF_ERR_BATCH 4
#define ENF_ERR_TOO_LARGE 5
#define ENF_ERR_SNAP_TRUNCATED 10
#define ENF_ERR_SNAP_MAGIC 11
#define ENF_ERR_SNAP_VERSION 12
#define ENF_ERR_SNAP_HEADER 13
#define ENF_ERR_SNAP_PARAMS 14
#define ENF_ERR_SNAP_BODY 15
#define ENF_ERR_SNAP_TRAILING 16
#define ENF_ERR_SNAP_HASH 17
#define ENF_ERR_SNAP_HEADER_CRC 18

typedef struct enf_bloom enf_bloom;

/* A static English description of an ENF_* code (never NULL). */
const char *enf_strerror(int code);

/* The name of a hash id ("sig64-v1" for ENF_HASH_ID), "unknown" otherwise. */
const char *enf_hash_name(uint32_t hash_id);
/* The signature hash ("sig64 v1", hash id ENF_HASH_ID) of `len` bytes. */
uint64_t enf_sig64(const char *data, size_t len, uint64_t seed);
/* Signatures of `count` keys separated by '\n' in buf[0:len] into out[count].
 * ENF_ERR_BATCH if the buffer holds a different number of keys. */
int enf_sig64_lines(const char *buf, size_t len, size_t count, uint64_t seed, uint64_t *out);
/* CRC32C (Castagnoli), continuing from `crc` (0 to start). */
uint32_t enf_crc32c(uint32_t crc, const char *data, size_t len);
/* The table-driven CRC32C used where the CPU has no CRC instruction (for tests). */
uint32_t enf_crc32c_portable(uint32_t crc, const char *data, size_t len);

/* Smallest (blocks, k), blocks <= ENF_MAX_BLOCKS, whose blocked-filter FP rate for `keys`
 * keys is <= fp; ENF_ERR_TOO_LARGE if no k reaches fp within ENF_MAX_BLOCKS blocks. */
int enf_bloom_plan(uint64_t keys, double fp, uint64_t *blocks_out, uint32_t *k_out);
/* Expected FP rate of a filter of `blocks` blocks and `k` bits per key holding `keys` keys. */
double enf_bloom_model_fp(uint64_t blocks, uint32_t k, uint64_t keys);

int enf_bloom_new(uint64_t blocks, uint32_t k, uint64_t seed, enf_bloom **out);
int enf_bloom_copy(const enf_bloom *src, enf_bloom **out);
void enf_bloom_free(enf_bloom *b);
uint64_t enf_bloom_blocks(const enf_bloom *b);
uint32_t enf_bloom_k(const enf_bloom *b);
uint64_t enf_bloom_seed(const enf_bloom *b);
uint64_t enf_bloom_key_count(const enf_bloom *b);
uint64_t enf_bloom_seq(const enf_bloom *b);
void enf_bloom_set_seq(enf_bloom *b, uint64_t seq);
/* FP rate of a random absent key given the bits actually set (exact per block). */
double enf_bloom_fill_fp(const enf_bloom *b);

/* Add: 1 if the key set at least one new bit (it is counted), 0 if not. */
int enf_bloom_add_key(enf_bloom *b, const char *key, size_t len);
int enf_bloom_contains_key(const enf_bloom *b, const char *key, size_t len);
int enf_bloom_add_sig(enf_bloom *b, uint64_t sig);
int enf_bloom_contains_sig(const enf_bloom *b, uint64_t sig);
/* Membership of `count` '\n'-separated keys; ENF_ERR_BATCH on a count mismatch. */
int enf_bloom_contains_lines(const enf_bloom *b, const char *buf, size_t len, size_t count,
                             uint8_t *out);
void enf_bloom_add_sigs(enf_bloom *b, const uint64_t *sigs, size_t n);
void enf_bloom_contains_sigs(const enf_bloom *b, const uint64_t *sigs, size_t n, uint8_t *out);
/* dst |= src; ENF_ERR_MISMATCH unless blocks, k and seed are equal. */
int enf_bloom_union(enf_bloom *dst, const enf_bloom *src);

size_t enf_snapshot_size(const enf_bloom *b);
/* Write the whole snapshot into out[cap]; cap must be >= enf_snapshot_size(b). */
int enf_snapshot_write(const enf_bloom *b, uint8_t *out, size_t cap);
/* Validate a whole snapshot and build a filter from it; nothing is built on error.
 * The header CRC is checked before the version is trusted (docs/native.md gives the
 * order and the rule later versions keep so their header CRC can be found). */
int enf_snapshot_read(const char *buf, size_t len, enf_bloom **out);
/* PDQ perceptual image hash (docs/images.md). Pixels are uint8, row-major, `channels`
 * (1: luma as is, 3: RGB) bytes per pixel, rows packed. `variants` is 1 (the hash) or
 * ENF_PDQ_VARIANTS (the 8 dihedral hashes in PDQ's order: original, rotate90, rotate180,
 * rotate270, flipx, flipy, flipplus1, flipminus1); each hash is ENF_PDQ_HASH_BYTES bytes,
 * in the order of its 64-hex text. ENF_ERR_ARG for a shape out of range. */
#define ENF_PDQ_HASH_BYTES 32
#define ENF_PDQ_VARIANTS 8
#define ENF_PDQ_MIN_DIM 5
#define ENF_PDQ_MAX_PIXELS 268435456
int enf_pdq_hash(const uint8_t *pixels, size_t rows, size_t cols, size_t channels,
                 int variants, uint8_t *out, int *quality);
/* `count` images of one shape, `image_stride` bytes apart: out[count * variants * 32],
 * quality[count]; the scratch buffers are allocated once for the batch. */
int enf_pdq_hash_batch(const uint8_t *pixels, size_t count, size_t image_stride, size_t rows,
                       size_t cols, size_t channels, int variants, uint8_t *out, int *quality);
/* A set of PDQ hashes with exact range queries (native/pdq_index.c, docs/images.md).
 * Hashes are ENF_PDQ_HASH_BYTES bytes. Not thread-safe: serialise calls on one index. */
#define ENF_PDQ_INDEX_MAX 4294967295
typedef struct enf_pdq_index enf_pdq_index;
int enf_pdq_index_new(uint64_t capacity, enf_pdq_index **out);
void enf_pdq_index_free(enf_pdq_index *ix);
/* Room for `capacity` hashes without reallocating. */
int enf_pdq_index_reserve(enf_pdq_index *ix, uint64_t capacity);
uint64_t enf_pdq_index_count(const enf_pdq_index *ix);
/* Bytes the index holds (hash array and table, at their capacities). */
uint64_t enf_pdq_index_memory(const enf_pdq_index *ix);
/* *added = 1 if the hash was new, 0 if already held. */
int enf_pdq_index_add(enf_pdq_index *ix, const uint8_t *hash, int *added);
/* *removed = 1 if the hash was held (it is gone), 0 if not. */
int enf_pdq_index_remove(enf_pdq_index *ix, const uint8_t *hash, int *removed);
/* 1 if the index holds exactly this hash, else 0 (a table lookup, no scan). */
int enf_pdq_index_contains(const enf_pdq_index *ix, const uint8_t *hash);
/* The hash in `slot` (< count) into out[ENF_PDQ_HASH_BYTES]. */
void enf_pdq_index_get(const enf_pdq_index *ix, uint64_t slot, uint8_t *out);
/* The number of held hashes within max_distance of query; the first `cap` of them (slot
 * order) go to out_slots / out_dist. Slots are valid until the next add or remove. */
uint64_t enf_pdq_index_query(const enf_pdq_index *ix, const uint8_t *query, uint32_t max_distance,
                             uint64_t *out_slots, uint32_t *out_dist, uint64_t cap);
/* CDEF END */

#endif
