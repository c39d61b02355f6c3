// One block step of llamart's WebAssembly kernels (wasm/mat_vec/ggml_wasm_mat_vec.c and
// wasm/relaxed/ggml_wasm_relaxed.c): ggml's SIMD128 q4_1 x q8_1 and q8_0 x q8_0 kernels' work
// for one block of a row, with the column's block loaded once (lm_col_*) so that several rows
// can share it.  The float operations are ggml's, in ggml's order, so a kernel built from these
// steps gives ggml's bits.  Built with relaxed SIMD (-mrelaxed-simd) the q4_1 step takes its
// integer products with i16x8.relaxed_dot_i8x16_i7x16_s: every i32 lane still sums the same
// bytes (the dot pairs bytes 2m, 2m+1, as i32x4.dot_i16x8 on the extended halves does; lane j
// then takes i16 lanes j and j+4), deterministic on every engine (the i7 operand is a nibble,
// 0..15) and without saturation (|15 * -128 * 2| = 3840).
#pragma once

#include <wasm_simd128.h>
#include <stdint.h>
#include <string.h>

#define GGML_COMMON_DECL_C
#include "ggml-common.h"

extern float ggml_table_f32_f16[1 << 16];  // ggml-cpu's fp16 -> float table

static inline float lm_fp16_to_fp32(ggml_half h) {
    uint16_t s;
    memcpy(&s, &h, sizeof(s));
    return ggml_table_f32_f16[s];
}

#define LM_HSUM(v) (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + \
                    wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3))

// A q8_1 column block, loaded once: its 32 int8s (relaxed: two vectors; else their four i16
// halves), its scale d and its scaled sum s.
#if defined(__wasm_relaxed_simd__)
#define LM_COL_Q8_1_PARTS 2
#else
#define LM_COL_Q8_1_PARTS 4
#endif
typedef struct {
    v128_t q[LM_COL_Q8_1_PARTS];
    float d, s;
} lm_col_q8_1;

static inline lm_col_q8_1 lm_col_q8_1_load(const block_q8_1 * y) {
    lm_col_q8_1 c;
    const v128_t lo = wasm_v128_load(y->qs), hi = wasm_v128_load(y->qs + 16);
#if defined(__wasm_relaxed_simd__)
    c.q[0] = lo;
    c.q[1] = hi;
#else
    c.q[0] = wasm_i16x8_extend_low_i8x16(lo);
    c.q[1] = wasm_i16x8_extend_high_i8x16(lo);
    c.q[2] = wasm_i16x8_extend_low_i8x16(hi);
    c.q[3] = wasm_i16x8_extend_high_i8x16(hi);
#endif
    c.d = lm_fp16_to_fp32(y->d);
    c.s = lm_fp16_to_fp32(y->s);
    return c;
}

// One q4_1 block of a row times the column block, added to the row's lane sums and min term.
static inline void lm_q4_1_block(const block_q4_1 * restrict x, const lm_col_q8_1 * c,
                                 v128_t * sumv, float * summs) {
    *summs += lm_fp16_to_fp32(x->m) * c->s;

    const v128_t raw = wasm_v128_load(x->qs);
    const v128_t v0s = wasm_v128_and(raw, wasm_i8x16_splat(0x0F));
    const v128_t v1s = wasm_u8x16_shr(raw, 4);
#if defined(__wasm_relaxed_simd__)
    // i16 lane m: bytes 2m, 2m+1 of the low nibbles (+ the high nibbles)
    const v128_t p = wasm_i16x8_add(wasm_i16x8_relaxed_dot_i8x16_i7x16(c->q[0], v0s),
                                    wasm_i16x8_relaxed_dot_i8x16_i7x16(c->q[1], v1s));
    const v128_t acc = wasm_i32x4_add(wasm_i32x4_extend_low_i16x8(p),
                                      wasm_i32x4_extend_high_i16x8(p));
#else
    const v128_t acc = wasm_i32x4_add(
        wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(v0s), c->q[0]),
                       wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(v0s), c->q[1])),
        wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(v1s), c->q[2]),
                       wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(v1s), c->q[3])));
#endif
    *sumv = wasm_f32x4_add(*sumv, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(acc),
                                                 wasm_f32x4_splat(lm_fp16_to_fp32(x->d) * c->d)));
}

// A q8_0 column block, loaded once: its 32 int8s as four i16 halves, and its scale.
typedef struct {
    v128_t q[4];
    float d;
} lm_col_q8_0;

static inline lm_col_q8_0 lm_col_q8_0_load(const block_q8_0 * y) {
    lm_col_q8_0 c;
    const v128_t lo = wasm_v128_load(y->qs), hi = wasm_v128_load(y->qs + 16);
    c.q[0] = wasm_i16x8_extend_low_i8x16(lo);
    c.q[1] = wasm_i16x8_extend_high_i8x16(lo);
    c.q[2] = wasm_i16x8_extend_low_i8x16(hi);
    c.q[3] = wasm_i16x8_extend_high_i8x16(hi);
    c.d = lm_fp16_to_fp32(y->d);
    return c;
}

// One q8_0 block of a row times the column block, added to the row's lane sums.
static inline void lm_q8_0_block(const block_q8_0 * restrict x, const lm_col_q8_0 * c,
                                 v128_t * sumv) {
    const v128_t a0 = wasm_v128_load(x->qs);
    const v128_t a1 = wasm_v128_load(x->qs + 16);
    const v128_t d00 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a0), c->q[0]);
    const v128_t d01 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a0), c->q[1]);
    const v128_t d10 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a1), c->q[2]);
    const v128_t d11 = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a1), c->q[3]);
    const v128_t sd = wasm_i32x4_add(wasm_i32x4_add(d00, d01), wasm_i32x4_add(d10, d11));
    *sumv = wasm_f32x4_add(*sumv, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(sd),
                                                 wasm_f32x4_splat(lm_fp16_to_fp32(x->d) * c->d)));
}
