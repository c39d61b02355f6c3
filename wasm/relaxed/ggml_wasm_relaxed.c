// A WebAssembly relaxed-SIMD version of ggml's hottest wasm vec-dot kernel (q4_1 x q8_1), for
// the llamart "relaxed" module variants.  Compiled on its own by a clang that knows relaxed SIMD
// (clang >= 16; Debian's emcc 3.1.6 has clang 14) with -msimd128 -mrelaxed-simd; the pinned
// ggml's own definitions are left out of that build (LLAMART_WASM_RELAXED_Q4_1, see
// cmake/patches/wasm-relaxed-q4_1.patch).
//
// The results are bit-identical to ggml's SIMD128 kernel: every i32 lane sums the same bytes
// as ggml's extend/dot chain (i16x8.relaxed_dot pairs bytes 2m,2m+1, as i32x4.dot_i16x8 on
// the extended halves does; lane j then takes i16 lanes j and j+4), so the per-lane float
// scaling and the final reduction see the same integers in the same order.
// Deterministic on every engine: the i7 operand (q4 nibbles 0..15) never has its top bit set,
// and no i16 pair sum can saturate (|15 * -128 * 2| = 3840).
//
// Also the four-rows-a-call matrix-vector kernels for q4_1 and q8_0 weights (below), which
// ggml's mul_mat calls in these modules (cmake/patches/wasm-relaxed-mat-vec.patch).
#include <wasm_simd128.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>

#define GGML_COMMON_DECL_C
#include "ggml-common.h"

#ifndef __wasm_relaxed_simd__
#error "compile with -mrelaxed-simd"
#endif

#ifndef LLAMART_RELAXED_PREFIX
#define LLAMART_RELAXED_PREFIX
#endif
#define LR_CAT2(a, b) a##b
#define LR_CAT(a, b) LR_CAT2(a, b)
#define LR_NAME(n) LR_CAT(LLAMART_RELAXED_PREFIX, n)

extern float ggml_table_f32_f16[1 << 16];

static inline float fp16_to_fp32(ggml_half h) {
    uint16_t s;
    memcpy(&s, &h, sizeof(s));
    return ggml_table_f32_f16[s];
}

// One q4_1 block of a row times the column's q8_1 block (ys_lo/ys_hi: its 32 int8s; dy, sy: its
// scale and scaled sum), added to the row's lane sums and min term in ggml's order.
static inline void q4_1_block(const block_q4_1 * restrict x, v128_t ys_lo, v128_t ys_hi, float dy,
                              float sy, v128_t * sumv, float * summs) {
    *summs += fp16_to_fp32(x->m) * sy;

    const v128_t raw = wasm_v128_load(x->qs);
    const v128_t v0s = wasm_v128_and(raw, wasm_i8x16_splat(0x0F));
    const v128_t v1s = wasm_u8x16_shr(raw, 4);

    // i16 lane m: bytes 2m, 2m+1 of the low nibbles (+ the high nibbles)
    const v128_t p = wasm_i16x8_add(wasm_i16x8_relaxed_dot_i8x16_i7x16(ys_lo, v0s),
                                    wasm_i16x8_relaxed_dot_i8x16_i7x16(ys_hi, v1s));
    const v128_t acc = wasm_i32x4_add(wasm_i32x4_extend_low_i16x8(p),
                                      wasm_i32x4_extend_high_i16x8(p));

    *sumv = wasm_f32x4_add(*sumv, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(acc),
                                                 wasm_f32x4_splat(fp16_to_fp32(x->d) * dy)));
}

#define LR_HSUM(v) (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + \
                    wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3))

void LR_NAME(ggml_vec_dot_q4_1_q8_1)(int n, float * restrict s, size_t bs, const void * restrict vx,
                                     size_t bx, const void * restrict vy, size_t by, int nrc) {
    const int nb = n / QK8_1;
    assert(n % QK8_1 == 0);
    assert(nrc == 1);
    (void) bs; (void) bx; (void) by; (void) nrc;

    const block_q4_1 * restrict x = vx;
    const block_q8_1 * restrict y = vy;

    v128_t sumv = wasm_f32x4_splat(0.0f);
    float summs = 0.0f;
    for (int ib = 0; ib < nb; ++ib) {
        q4_1_block(&x[ib], wasm_v128_load(y[ib].qs), wasm_v128_load(y[ib].qs + 16),
                   fp16_to_fp32(y[ib].d), fp16_to_fp32(y[ib].s), &sumv, &summs);
    }
    *s = LR_HSUM(sumv) + summs;
}

// Four rows at once, for a matrix times one column (ggml's mul_mat calls these through
// cmake/patches/wasm-relaxed-mat-vec.patch): the column's block is loaded and its scales looked
// up once for four rows instead of once a row, and one call replaces four.  Each row's floats
// are computed by exactly the operations, in exactly the order, of the one-row kernel above
// (q4_1) or of ggml's SIMD128 kernel (q8_0), so the results are the same bits.
// vx: row 0; bx: bytes from one row to the next; s: four results.
void LR_NAME(llamart_vec_dot_q4_1_q8_1_x4)(int n, float * restrict s, const void * restrict vx,
                                         size_t bx, const void * restrict vy) {
    const int nb = n / QK8_1;
    assert(n % QK8_1 == 0);
    const block_q4_1 * restrict x0 = vx;
    const block_q4_1 * restrict x1 = (const block_q4_1 *) ((const char *) vx + bx);
    const block_q4_1 * restrict x2 = (const block_q4_1 *) ((const char *) vx + 2 * bx);
    const block_q4_1 * restrict x3 = (const block_q4_1 *) ((const char *) vx + 3 * bx);
    const block_q8_1 * restrict y = vy;

    v128_t sumv0 = wasm_f32x4_splat(0.0f), sumv1 = sumv0, sumv2 = sumv0, sumv3 = sumv0;
    float summs0 = 0.0f, summs1 = 0.0f, summs2 = 0.0f, summs3 = 0.0f;
    for (int ib = 0; ib < nb; ++ib) {
        const float dy = fp16_to_fp32(y[ib].d);
        const float sy = fp16_to_fp32(y[ib].s);
        const v128_t ys_lo = wasm_v128_load(y[ib].qs);
        const v128_t ys_hi = wasm_v128_load(y[ib].qs + 16);
        q4_1_block(&x0[ib], ys_lo, ys_hi, dy, sy, &sumv0, &summs0);
        q4_1_block(&x1[ib], ys_lo, ys_hi, dy, sy, &sumv1, &summs1);
        q4_1_block(&x2[ib], ys_lo, ys_hi, dy, sy, &sumv2, &summs2);
        q4_1_block(&x3[ib], ys_lo, ys_hi, dy, sy, &sumv3, &summs3);
    }
    s[0] = LR_HSUM(sumv0) + summs0;
    s[1] = LR_HSUM(sumv1) + summs1;
    s[2] = LR_HSUM(sumv2) + summs2;
    s[3] = LR_HSUM(sumv3) + summs3;
}

// One q8_0 block of a row times the column's (its halves extended to i16 once, for four rows):
// ggml's SIMD128 q8_0 kernel's steps for that block.
static inline void q8_0_block(const block_q8_0 * restrict x, v128_t y0l, v128_t y0h, v128_t y1l,
                              v128_t y1h, float dy, v128_t * sumv) {
    const v128_t a0 = wasm_v128_load(x->qs);
    const v128_t a1 = wasm_v128_load(x->qs + 16);
    const v128_t d00 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a0), y0l);
    const v128_t d01 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a0), y0h);
    const v128_t d10 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a1), y1l);
    const v128_t d11 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a1), y1h);
    const v128_t sd = wasm_i32x4_add(wasm_i32x4_add(d00, d01), wasm_i32x4_add(d10, d11));
    *sumv = wasm_f32x4_add(*sumv, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(sd),
                                                 wasm_f32x4_splat(fp16_to_fp32(x->d) * dy)));
}

void LR_NAME(llamart_vec_dot_q8_0_q8_0_x4)(int n, float * restrict s, const void * restrict vx,
                                         size_t bx, const void * restrict vy) {
    const int nb = n / QK8_0;
    assert(n % QK8_0 == 0);
    const block_q8_0 * restrict x0 = vx;
    const block_q8_0 * restrict x1 = (const block_q8_0 *) ((const char *) vx + bx);
    const block_q8_0 * restrict x2 = (const block_q8_0 *) ((const char *) vx + 2 * bx);
    const block_q8_0 * restrict x3 = (const block_q8_0 *) ((const char *) vx + 3 * bx);
    const block_q8_0 * restrict y = vy;

    v128_t sumv0 = wasm_f32x4_splat(0.0f), sumv1 = sumv0, sumv2 = sumv0, sumv3 = sumv0;

    for (int ib = 0; ib < nb; ++ib) {
        const float dy = fp16_to_fp32(y[ib].d);
        const v128_t b0 = wasm_v128_load(y[ib].qs);
        const v128_t b1 = wasm_v128_load(y[ib].qs + 16);
        const v128_t y0l = wasm_i16x8_extend_low_i8x16(b0), y0h = wasm_i16x8_extend_high_i8x16(b0);
        const v128_t y1l = wasm_i16x8_extend_low_i8x16(b1), y1h = wasm_i16x8_extend_high_i8x16(b1);
        q8_0_block(&x0[ib], y0l, y0h, y1l, y1h, dy, &sumv0);
        q8_0_block(&x1[ib], y0l, y0h, y1l, y1h, dy, &sumv1);
        q8_0_block(&x2[ib], y0l, y0h, y1l, y1h, dy, &sumv2);
        q8_0_block(&x3[ib], y0l, y0h, y1l, y1h, dy, &sumv3);
    }

    s[0] = LR_HSUM(sumv0);
    s[1] = LR_HSUM(sumv1);
    s[2] = LR_HSUM(sumv2);
    s[3] = LR_HSUM(sumv3);
}

// Not i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113): binaryen 108 (Debian's wasm-opt, run
// by emcc 3.1.6 at every link) reads that opcode as an older proposal's two-operand
// i16x8.dot_i8x16_i7x16_u and writes an invalid module; it would also sum other bytes per lane.

#ifdef LLAMART_RELAXED_BENCH_Q8_0
// q8_0 x q8_0 (measured only: no faster than ggml's in Chromium 156, 0.6x in Node 20): |x| as
// the i7 operand, x's sign moved onto y.  Exact while x != -128 (ggml's quantizers give
// -127..127).
static inline v128_t q8_dot16(v128_t x, v128_t y) {
    const v128_t neg = wasm_i8x16_lt(x, wasm_i8x16_splat(0));
    const v128_t sy = wasm_v128_bitselect(wasm_i8x16_neg(y), y, neg);
    return wasm_i16x8_relaxed_dot_i8x16_i7x16(sy, wasm_i8x16_abs(x));
}

void LR_NAME(ggml_vec_dot_q8_0_q8_0)(int n, float * restrict s, size_t bs, const void * restrict vx,
                                     size_t bx, const void * restrict vy, size_t by, int nrc) {
    const int nb = n / QK8_0;
    assert(n % QK8_0 == 0);
    assert(nrc == 1);
    (void) bs; (void) bx; (void) by; (void) nrc;

    const block_q8_0 * restrict x = vx;
    const block_q8_0 * restrict y = vy;

    v128_t sumv = wasm_f32x4_splat(0.0f);

    for (int ib = 0; ib < nb; ++ib) {
        const block_q8_0 * restrict x0 = &x[ib];
        const block_q8_0 * restrict y0 = &y[ib];

        const v128_t p0 = q8_dot16(wasm_v128_load(x0->qs), wasm_v128_load(y0->qs));
        const v128_t p1 = q8_dot16(wasm_v128_load(x0->qs + 16), wasm_v128_load(y0->qs + 16));
        // |pair sum| <= 32258 each: widen before adding the two halves
        const v128_t acc = wasm_i32x4_add(
            wasm_i32x4_add(wasm_i32x4_extend_low_i16x8(p0), wasm_i32x4_extend_high_i16x8(p0)),
            wasm_i32x4_add(wasm_i32x4_extend_low_i16x8(p1), wasm_i32x4_extend_high_i16x8(p1)));

        const float scale = fp16_to_fp32(x0->d) * fp16_to_fp32(y0->d);
        sumv = wasm_f32x4_add(sumv, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(acc),
                                                   wasm_f32x4_splat(scale)));
    }

    *s = wasm_f32x4_extract_lane(sumv, 0) + wasm_f32x4_extract_lane(sumv, 1) +
         wasm_f32x4_extract_lane(sumv, 2) + wasm_f32x4_extract_lane(sumv, 3);
}
#endif
