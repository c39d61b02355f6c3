// A WebAssembly relaxed-SIMD version of ggml's hottest wasm vec-dot kernel (q4_1 x q8_1), for
// the llamart "relaxed" module variants.  Compiled on its own by a clang that knows relaxed SIMD
// (clang >= 16; Debian's emcc 3.1.6 has clang 14) with -msimd128 -mrelaxed-simd; the pinned
// ggml's own definitions are left out of that build (LLAMART_WASM_RELAXED_Q4_1, see
// cmake/patches/wasm-relaxed-q4_1.patch).  Its block step (wasm/mat_vec/ggml_wasm_blocks.h, with
// the relaxed dot for the integer products) gives ggml's SIMD128 kernel's bits; the same clang
// builds the relaxed modules' four-row kernels (wasm/mat_vec/ggml_wasm_mat_vec.c) from it.
#include <assert.h>

#include "../mat_vec/ggml_wasm_blocks.h"

#ifndef __wasm_relaxed_simd__
#error "compile with -mrelaxed-simd"
#endif

#ifndef LLAMART_RELAXED_PREFIX
#define LLAMART_RELAXED_PREFIX
#endif
#define LR_CAT2(a, b) a##b
#define LR_CAT(a, b) LR_CAT2(a, b)
#define LR_NAME(n) LR_CAT(LLAMART_RELAXED_PREFIX, n)

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
        const lm_col_q8_1 c = lm_col_q8_1_load(&y[ib]);
        lm_q4_1_block(&x[ib], &c, &sumv, &summs);
    }
    *s = LM_HSUM(sumv) + summs;
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

        const float scale = lm_fp16_to_fp32(x0->d) * lm_fp16_to_fp32(y0->d);
        sumv = wasm_f32x4_add(sumv, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(acc),
                                                   wasm_f32x4_splat(scale)));
    }

    *s = wasm_f32x4_extract_lane(sumv, 0) + wasm_f32x4_extract_lane(sumv, 1) +
         wasm_f32x4_extract_lane(sumv, 2) + wasm_f32x4_extract_lane(sumv, 3);
}
#endif
