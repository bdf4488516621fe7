/*
 * PDQ perceptual image hash, written from the published algorithm description
 * (Meta, "The TMK+PDQF Video-Hashing Algorithm and the PDQ Image Similarity
 * Algorithm", 2017; docs/images.md restates every step):
 *
 *   1. luminance Y = 0.299 R + 0.587 G + 0.114 B (in double, stored as float);
 *   2. two passes of a Jarosz filter (a separable 1-D box filter along rows, then
 *      along columns), window ceil(dim / 128) per pass, truncated at the edges;
 *   3. decimation to 64x64 by taking the sample at the centre of each cell;
 *   4. quality: the sum of the quantised gradients of the 64x64 image, / 90, capped
 *      at 100;
 *   5. the 16x16 lowest non-DC coefficients of the 2-D DCT-II of the 64x64 image;
 *   6. bit (16 i + j) is set when coefficient (i, j) exceeds the median of the 256
 *      (the lower median, the 128th smallest).
 *
 * The eight dihedral variants (rotations and mirrors) come from the DCT
 * coefficients directly: mirroring the image negates the coefficients of even
 * 0-based index along that axis (basis cos(pi (k+1)(2x+1)/128) is odd under
 * x -> 63-x when k is even), and transposing the image transposes them.
 *
 * No global state: each call allocates its own float buffers (the image twice) and
 * DCT table, so calls are thread-safe and fork-safe.
 */
#include "enforce_native.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PDQ_DIM 64
#define PDQ_DCT 16

/* Variant = (transpose, negate even source rows, negate even source columns), in PDQ's
 * variant order. */
static const unsigned char PDQ_VARIANT_OPS[ENF_PDQ_VARIANTS][3] = {
    {0, 0, 0}, /* original */
    {1, 0, 1}, /* rotate90 */
    {0, 1, 1}, /* rotate180 */
    {1, 1, 0}, /* rotate270 */
    {0, 1, 0}, /* flipx: mirror top-bottom */
    {0, 0, 1}, /* flipy: mirror left-right */
    {1, 0, 0}, /* flipplus1: transpose */
    {1, 1, 1}, /* flipminus1: anti-transpose */
};

/* Mean over the window [i - back, i + fwd] clipped to [0, n), along a line of n floats
 * `stride` apart. fwd = (w + 2) / 2 - 1, back = w - 1 - fwd. */
static void box_line(const float *in, float *out, size_t n, size_t stride, size_t w) {
    size_t fwd = (w + 2) / 2 - 1;
    size_t back = w - 1 - fwd;
    float sum = 0.0f;
    for (size_t r = 0; r < fwd && r < n; r++) sum += in[r * stride];
    for (size_t i = 0; i < n; i++) {
        if (i + fwd < n) sum += in[(i + fwd) * stride];
        if (i >= back + 1) sum -= in[(i - back - 1) * stride];
        size_t lo = i >= back ? i - back : 0;
        size_t hi = i + fwd < n ? i + fwd : n - 1;
        out[i * stride] = sum / (float)(hi - lo + 1);
    }
}

/* The same filter down every column at once, a row at a time (cache friendly). */
static void box_columns(const float *in, float *out, size_t rows, size_t cols, size_t w,
                        float *sum) {
    size_t fwd = (w + 2) / 2 - 1;
    size_t back = w - 1 - fwd;
    memset(sum, 0, cols * sizeof(float));
    for (size_t r = 0; r < fwd && r < rows; r++) {
        const float *row = in + r * cols;
        for (size_t c = 0; c < cols; c++) sum[c] += row[c];
    }
    for (size_t i = 0; i < rows; i++) {
        if (i + fwd < rows) {
            const float *add = in + (i + fwd) * cols;
            for (size_t c = 0; c < cols; c++) sum[c] += add[c];
        }
        if (i >= back + 1) {
            const float *sub = in + (i - back - 1) * cols;
            for (size_t c = 0; c < cols; c++) sum[c] -= sub[c];
        }
        size_t lo = i >= back ? i - back : 0;
        size_t hi = i + fwd < rows ? i + fwd : rows - 1;
        float count = (float)(hi - lo + 1);
        float *dst = out + i * cols;
        for (size_t c = 0; c < cols; c++) dst[c] = sum[c] / count;
    }
}

static void luma(const uint8_t *px, size_t rows, size_t cols, size_t channels, float *y) {
    size_t n = rows * cols;
    if (channels == 1) {
        for (size_t i = 0; i < n; i++) y[i] = (float)px[i];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = px + 3 * i;
        /* In double, rounded once to float: the reference (pdqhash) forms luma this way,
         * and on images with exact ties in the DCT any rounding difference flips bits. */
        y[i] = (float)(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]);
    }
}

static int quality_of(const float a[PDQ_DIM][PDQ_DIM]) {
    long total = 0;
    for (int i = 0; i < PDQ_DIM; i++) {
        for (int j = 0; j < PDQ_DIM; j++) {
            if (i + 1 < PDQ_DIM) total += labs((long)(int)(((a[i][j] - a[i + 1][j]) * 100) / 255));
            if (j + 1 < PDQ_DIM) total += labs((long)(int)(((a[i][j] - a[i][j + 1]) * 100) / 255));
        }
    }
    long q = total / 90;
    return q > 100 ? 100 : (int)q;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void bits_of(const float c[PDQ_DCT][PDQ_DCT], int op, uint8_t *out) {
    const unsigned char *v = PDQ_VARIANT_OPS[op];
    float t[PDQ_DCT][PDQ_DCT];
    float sorted[PDQ_DCT * PDQ_DCT];
    for (int i = 0; i < PDQ_DCT; i++) {
        for (int j = 0; j < PDQ_DCT; j++) {
            float x = c[i][j];
            if (v[1] && (i & 1) == 0) x = -x;
            if (v[2] && (j & 1) == 0) x = -x;
            if (v[0]) t[j][i] = x; else t[i][j] = x;
        }
    }
    memcpy(sorted, t, sizeof(sorted));
    qsort(sorted, PDQ_DCT * PDQ_DCT, sizeof(float), cmp_float);
    float median = sorted[PDQ_DCT * PDQ_DCT / 2 - 1];
    memset(out, 0, ENF_PDQ_HASH_BYTES);
    /* Bit k = 16 i + j lives in 16-bit word i, bit j; the text prints word 15 first,
     * each word big-endian, and out[] is that text's bytes. */
    for (int i = 0; i < PDQ_DCT; i++) {
        for (int j = 0; j < PDQ_DCT; j++) {
            if (t[i][j] > median) {
                size_t byte = 2 * (size_t)(15 - i) + (j >= 8 ? 0 : 1);
                out[byte] |= (uint8_t)(1u << (j & 7));
            }
        }
    }
}

typedef struct {
    float *a, *b, *sum;
    float dct[PDQ_DCT][PDQ_DIM];
} pdq_work;

static int work_init(pdq_work *w, size_t rows, size_t cols) {
    size_t n = rows * cols;
    w->a = malloc(n * sizeof(float));
    w->b = malloc(n * sizeof(float));
    w->sum = malloc(cols * sizeof(float));
    if (!w->a || !w->b || !w->sum) {
        free(w->a);
        free(w->b);
        free(w->sum);
        return ENF_ERR_NOMEM;
    }
    const double pi = 3.14159265358979323846;
    const float scale = (float)sqrt(2.0 / PDQ_DIM); /* float, as the description's table */
    for (int k = 0; k < PDQ_DCT; k++)
        for (int x = 0; x < PDQ_DIM; x++)
            w->dct[k][x] = (float)(scale * cos(pi / (2.0 * PDQ_DIM) * (k + 1) * (2 * x + 1)));
    return ENF_OK;
}

static void work_free(pdq_work *w) {
    free(w->a);
    free(w->b);
    free(w->sum);
}

static void hash_one(pdq_work *w, const uint8_t *px, size_t rows, size_t cols,
                     size_t channels, int variants, uint8_t *out, int *quality) {
    float small[PDQ_DIM][PDQ_DIM];
    float half[PDQ_DCT][PDQ_DIM];
    float coef[PDQ_DCT][PDQ_DCT];
    size_t wr = (cols + 2 * PDQ_DIM - 1) / (2 * PDQ_DIM); /* window along a row */
    size_t wc = (rows + 2 * PDQ_DIM - 1) / (2 * PDQ_DIM); /* window down a column */
    luma(px, rows, cols, channels, w->a);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t r = 0; r < rows; r++) box_line(w->a + r * cols, w->b + r * cols, cols, 1, wr);
        box_columns(w->b, w->a, rows, cols, wc, w->sum);
    }
    for (int i = 0; i < PDQ_DIM; i++) {
        size_t r = ((2 * (size_t)i + 1) * rows) / (2 * PDQ_DIM);
        for (int j = 0; j < PDQ_DIM; j++) {
            size_t c = ((2 * (size_t)j + 1) * cols) / (2 * PDQ_DIM);
            small[i][j] = w->a[r * cols + c];
        }
    }
    *quality = quality_of(small);
    /* coef = D * small * D^T, through half = D * small. */
    for (int k = 0; k < PDQ_DCT; k++) {
        for (int x = 0; x < PDQ_DIM; x++) half[k][x] = 0.0f;
        for (int y = 0; y < PDQ_DIM; y++) {
            float d = w->dct[k][y];
            for (int x = 0; x < PDQ_DIM; x++) half[k][x] += d * small[y][x];
        }
    }
    for (int k = 0; k < PDQ_DCT; k++) {
        for (int l = 0; l < PDQ_DCT; l++) {
            float s = 0.0f;
            for (int x = 0; x < PDQ_DIM; x++) s += half[k][x] * w->dct[l][x];
            coef[k][l] = s;
        }
    }
    for (int v = 0; v < variants; v++) bits_of((const float(*)[PDQ_DCT])coef, v, out + (size_t)v * ENF_PDQ_HASH_BYTES);
}

static int check_shape(size_t rows, size_t cols, size_t channels, int variants) {
    if (rows < ENF_PDQ_MIN_DIM || cols < ENF_PDQ_MIN_DIM) return ENF_ERR_ARG;
    if (rows > ENF_PDQ_MAX_PIXELS / cols) return ENF_ERR_ARG;
    if (channels != 1 && channels != 3) return ENF_ERR_ARG;
    if (variants != 1 && variants != ENF_PDQ_VARIANTS) return ENF_ERR_ARG;
    return ENF_OK;
}

int enf_pdq_hash_batch(const uint8_t *pixels, size_t count, size_t image_stride, size_t rows,
                       size_t cols, size_t channels, int variants, uint8_t *out, int *quality) {
    int rc = check_shape(rows, cols, channels, variants);
    if (rc != ENF_OK) return rc;
    if (count > 1 && image_stride < rows * cols * channels) return ENF_ERR_ARG;
    if (count == 0) return ENF_OK;
    pdq_work w;
    rc = work_init(&w, rows, cols);
    if (rc != ENF_OK) return rc;
    for (size_t n = 0; n < count; n++) {
        hash_one(&w, pixels + n * image_stride, rows, cols, channels, variants,
                 out + n * (size_t)variants * ENF_PDQ_HASH_BYTES, quality + n);
    }
    work_free(&w);
    return ENF_OK;
}

int enf_pdq_hash(const uint8_t *pixels, size_t rows, size_t cols, size_t channels,
                 int variants, uint8_t *out, int *quality) {
    return enf_pdq_hash_batch(pixels, 1, 0, rows, cols, channels, variants, out, quality);
}
