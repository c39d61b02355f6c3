// Micro-benchmark: ggml's SIMD128 q4_1 x q8_1 and q8_0 x q8_0 vec dots (copied from the pinned
// ggml, built by emcc's clang 14) against ggml_wasm_relaxed.c's (clang >= 16, prefix relaxed_).
// Checks bit-identical results (unit scales: the integer sums; random scales: the floats), then
// times each over a 1536 x 2304 weight matrix (best of 30 x 20 passes).  G=ggml's folder
// (.cache/llama_cpp_python-*/vendor/llama.cpp/ggml):
//   clang-19 --target=wasm32-unknown-emscripten --sysroot=/usr/share/emscripten/cache/sysroot \
//     -O3 -DNDEBUG -msimd128 -mrelaxed-simd -mno-reference-types -mno-multivalue -I$G/src \
//     -I$G/include -DLLAMART_RELAXED_PREFIX=relaxed_ -DLLAMART_RELAXED_BENCH_Q8_0 \
//     -c wasm/relaxed/ggml_wasm_relaxed.c -o relaxed.o
//   emcc -O3 -DNDEBUG -msimd128 -I$G/src -I$G/include -c wasm/relaxed/bench_kernel.c -o bench.o
//   emcc -O3 -sENVIRONMENT=node -sALLOW_MEMORY_GROWTH=1 bench.o relaxed.o -o bench.js
//   node --experimental-wasm-relaxed-simd -e "delete globalThis.fetch; require('./bench.js')"
// (emcc 3.1.6's glue would fetch() the .wasm path under Node 20; in Chromium link with
// -sENVIRONMENT=web -sSINGLE_FILE=1 and load the .js from a page.)
#include <wasm_simd128.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <assert.h>
#include <emscripten.h>
#define GGML_COMMON_DECL_C
#include "ggml-common.h"
#define GGML_RESTRICT restrict
#define UNUSED(x) (void)(x)
float ggml_table_f32_f16[1 << 16];
#define GGML_CPU_FP16_TO_FP32(h) ggml_table_f32_f16[(h)]
typedef void (*vec_dot_t)(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void relaxed_ggml_vec_dot_q4_1_q8_1(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void relaxed_ggml_vec_dot_q8_0_q8_0(int, float *, size_t, const void *, size_t, const void *, size_t, int);
#ifdef BENCH_EXP
void exp_int_relaxed(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void exp_q4_1_x4(int, float *, size_t, const void *, size_t, const void *, size_t, int);
#endif
#define ggml_vec_dot_q4_1_q8_1_generic(...) abort()
#define ggml_vec_dot_q8_0_q8_0_generic(...) abort()
void ggml_vec_dot_q4_1_q8_1(int n, float * GGML_RESTRICT s, size_t bs, const void * GGML_RESTRICT vx, size_t bx, const void * GGML_RESTRICT vy, size_t by, int nrc) {
    const int qk = QK8_1;
    const int nb = n / qk;

    assert(n % qk == 0);
    assert(nrc == 1);
    UNUSED(nrc);
    UNUSED(bx);
    UNUSED(by);
    UNUSED(bs);

    const block_q4_1 * GGML_RESTRICT x = vx;
    const block_q8_1 * GGML_RESTRICT y = vy;

    float sumf = 0;

#if defined __wasm_simd128__
    v128_t sumv = wasm_f32x4_splat(0.0f);
    float summs = 0.0f;

    for (int ib = 0; ib < nb; ++ib) {
        const block_q4_1 * GGML_RESTRICT x0 = &x[ib];
        const block_q8_1 * GGML_RESTRICT y0 = &y[ib];

        summs += GGML_CPU_FP16_TO_FP32(x0->m) * GGML_CPU_FP16_TO_FP32(y0->s);

        const v128_t raw  = wasm_v128_load(x0->qs);
        const v128_t v0s  = wasm_v128_and(raw, wasm_i8x16_splat(0x0F));
        const v128_t v1s  = wasm_u8x16_shr(raw, 4);

        const v128_t ys_lo = wasm_v128_load(y0->qs);
        const v128_t ys_hi = wasm_v128_load(y0->qs + 16);

        const v128_t v0s_l = wasm_u16x8_extend_low_u8x16(v0s);
        const v128_t v0s_h = wasm_u16x8_extend_high_u8x16(v0s);
        const v128_t ylo_l = wasm_i16x8_extend_low_i8x16(ys_lo);
        const v128_t ylo_h = wasm_i16x8_extend_high_i8x16(ys_lo);
        const v128_t v1s_l = wasm_u16x8_extend_low_u8x16(v1s);
        const v128_t v1s_h = wasm_u16x8_extend_high_u8x16(v1s);
        const v128_t yhi_l = wasm_i16x8_extend_low_i8x16(ys_hi);
        const v128_t yhi_h = wasm_i16x8_extend_high_i8x16(ys_hi);

        const v128_t acc = wasm_i32x4_add(
            wasm_i32x4_add(
                wasm_i32x4_dot_i16x8(v0s_l, ylo_l),
                wasm_i32x4_dot_i16x8(v0s_h, ylo_h)),
            wasm_i32x4_add(
                wasm_i32x4_dot_i16x8(v1s_l, yhi_l),
                wasm_i32x4_dot_i16x8(v1s_h, yhi_h)));

        sumv = wasm_f32x4_add(sumv,
            wasm_f32x4_mul(
                wasm_f32x4_convert_i32x4(acc),
                wasm_f32x4_splat(GGML_CPU_FP16_TO_FP32(x0->d) * GGML_CPU_FP16_TO_FP32(y0->d))));
    }

    sumf = wasm_f32x4_extract_lane(sumv, 0) + wasm_f32x4_extract_lane(sumv, 1) +
           wasm_f32x4_extract_lane(sumv, 2) + wasm_f32x4_extract_lane(sumv, 3) + summs;

    *s = sumf;

#else
    UNUSED(nb);
    UNUSED(x);
    UNUSED(y);
    UNUSED(sumf);

    ggml_vec_dot_q4_1_q8_1_generic(
        n, s, bs, vx, bx, vy, by, nrc);
#endif
}
void ggml_vec_dot_q8_0_q8_0(int n, float * GGML_RESTRICT s, size_t bs, const void * GGML_RESTRICT vx, size_t bx, const void * GGML_RESTRICT vy, size_t by, int nrc) {
    const int qk = QK8_0;
    const int nb = n / qk;

    assert(n % qk == 0);
    assert(nrc == 1);
    UNUSED(nrc);
    UNUSED(bx);
    UNUSED(by);
    UNUSED(bs);

    const block_q8_0 * GGML_RESTRICT x = vx;
    const block_q8_0 * GGML_RESTRICT y = vy;

    int ib = 0;
    float sumf = 0;

#if defined __wasm_simd128__
    v128_t sumv = wasm_f32x4_splat(0.0f);

    for (; ib < nb; ++ib) {
        const block_q8_0 * GGML_RESTRICT x0 = &x[ib];
        const block_q8_0 * GGML_RESTRICT y0 = &y[ib];

        const v128_t x0_0 = wasm_v128_load(x0->qs);
        const v128_t x0_1 = wasm_v128_load(x0->qs + 16);
        const v128_t y0_0 = wasm_v128_load(y0->qs);
        const v128_t y0_1 = wasm_v128_load(y0->qs + 16);

        // Extend 8-bit to 16-bit
        const v128_t x0_0l = wasm_i16x8_extend_low_i8x16(x0_0);
        const v128_t x0_0h = wasm_i16x8_extend_high_i8x16(x0_0);
        const v128_t x0_1l = wasm_i16x8_extend_low_i8x16(x0_1);
        const v128_t x0_1h = wasm_i16x8_extend_high_i8x16(x0_1);

        const v128_t y0_0l = wasm_i16x8_extend_low_i8x16(y0_0);
        const v128_t y0_0h = wasm_i16x8_extend_high_i8x16(y0_0);
        const v128_t y0_1l = wasm_i16x8_extend_low_i8x16(y0_1);
        const v128_t y0_1h = wasm_i16x8_extend_high_i8x16(y0_1);

        // Compute dot products
        const v128_t dx0_0 = wasm_i32x4_dot_i16x8(x0_0l, y0_0l);
        const v128_t dx0_1 = wasm_i32x4_dot_i16x8(x0_0h, y0_0h);
        const v128_t dx1_0 = wasm_i32x4_dot_i16x8(x0_1l, y0_1l);
        const v128_t dx1_1 = wasm_i32x4_dot_i16x8(x0_1h, y0_1h);

        // Sum all dot products
        const v128_t sum_dots = wasm_i32x4_add(wasm_i32x4_add(dx0_0, dx0_1), wasm_i32x4_add(dx1_0, dx1_1));

        // Convert to float and accumulate
        const float scale = GGML_CPU_FP16_TO_FP32(x0->d) * GGML_CPU_FP16_TO_FP32(y0->d);
        sumv = wasm_f32x4_add(sumv, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(sum_dots), wasm_f32x4_splat(scale)));
    }

    sumf = wasm_f32x4_extract_lane(sumv, 0) + wasm_f32x4_extract_lane(sumv, 1) +
           wasm_f32x4_extract_lane(sumv, 2) + wasm_f32x4_extract_lane(sumv, 3);

    *s = sumf;
#else
    UNUSED(nb);
    UNUSED(x);
    UNUSED(y);
    UNUSED(ib);
    UNUSED(sumf);
    ggml_vec_dot_q8_0_q8_0_generic(n, s, bs, vx, bx, vy, by, nrc);
#endif
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float) man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float) (man | 0x400), (int) exp - 25);
    return sign ? -v : v;
}

static uint32_t rng = 12345;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }
// a random half in about [2^-8, 2^-3) (positive) as ggml's scales are
static uint16_t rnd_half(void) { return (uint16_t) ((7 + rnd() % 5) << 10 | (rnd() & 0x3ff)); }

static double maxrel(const float * a, const float * b, int rows) {
    double m = 0;
    for (int i = 0; i < rows; ++i) { double d = fabs((double) a[i] - b[i]) / (fabs(a[i]) + 1e-30); if (d > m) m = d; }
    return m;
}

static double now_ms(void) { return emscripten_get_now(); }

#define ITERS 20
static double bench(vec_dot_t f, int n, int rows, const char * w, size_t row_bytes, const void * a,
                    float * out, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        double t0 = now_ms();
        for (int it = 0; it < ITERS; ++it)  // browsers coarsen the clock to 0.1 ms
            for (int i = 0; i < rows; ++i) f(n, out + i, 0, w + i * row_bytes, 0, a, 0, 1);
        double t = (now_ms() - t0) / ITERS;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char ** argv) {
    for (int i = 0; i < 65536; ++i) ggml_table_f32_f16[i] = half_to_float((uint16_t) i);
    const int n = 576 * 4, rows = 1536, nb = n / 32, reps = 30;
    // q4_1 weights, q8_1 activations
    block_q4_1 * w41 = malloc(sizeof(block_q4_1) * nb * rows);
    block_q8_1 * a81 = malloc(sizeof(block_q8_1) * nb);
    block_q8_0 * w80 = malloc(sizeof(block_q8_0) * nb * rows);
    block_q8_0 * a80 = malloc(sizeof(block_q8_0) * nb);
    float * o_old = malloc(sizeof(float) * rows), * o_new = malloc(sizeof(float) * rows);
    int bad = 0;
    for (int pass = 0; pass < 2; ++pass) {  // pass 0: unit scales (integer sums), 1: random
        for (int i = 0; i < nb * rows; ++i) {
            w41[i].d = pass ? rnd_half() : 0x3C00; w41[i].m = pass ? rnd_half() | 0x8000 : 0;
            for (int k = 0; k < 16; ++k) w41[i].qs[k] = (uint8_t) rnd();
            w80[i].d = pass ? rnd_half() : 0x3C00;
            for (int k = 0; k < 32; ++k) w80[i].qs[k] = (int8_t) (rnd() % 255 - 127);
        }
        for (int i = 0; i < nb; ++i) {
            a81[i].d = pass ? rnd_half() : 0x3C00; a81[i].s = pass ? rnd_half() : 0;
            a80[i].d = a81[i].d;
            for (int k = 0; k < 32; ++k) {
                // the extremes too: -128 can come from q8_1's rounding, 127/-127 from q8_0's
                int v = (int) (rnd() % 256) - 128;
                a81[i].qs[k] = (int8_t) v;
                a80[i].qs[k] = (int8_t) (v == -128 ? -127 : v);
            }
        }
        struct { const char * name; vec_dot_t old, new; const void * w; size_t rb; const void * a; } k[] = {
            {"q4_1", ggml_vec_dot_q4_1_q8_1, relaxed_ggml_vec_dot_q4_1_q8_1, w41, sizeof(block_q4_1) * nb, a81},
            {"q8_0", ggml_vec_dot_q8_0_q8_0, relaxed_ggml_vec_dot_q8_0_q8_0, w80, sizeof(block_q8_0) * nb, a80},
#ifdef BENCH_EXP
            {"EXP int-only", ggml_vec_dot_q4_1_q8_1, exp_int_relaxed, w41, sizeof(block_q4_1) * nb, a81},
            {"EXP q4_1 x4", ggml_vec_dot_q4_1_q8_1, exp_q4_1_x4, w41, sizeof(block_q4_1) * nb, a81},
#endif
        };
        const int nk = sizeof(k) / sizeof(k[0]);
        for (int j = 0; j < nk; ++j) {
            double t_old = bench(k[j].old, n, rows, k[j].w, k[j].rb, k[j].a, o_old, pass ? reps : 1);
            double t_new = bench(k[j].new, n, rows, k[j].w, k[j].rb, k[j].a, o_new, pass ? reps : 1);
            int diff = 0;
            for (int i = 0; i < rows; ++i) diff += memcmp(&o_old[i], &o_new[i], 4) != 0;
            if (diff && j < 2) bad = 1;
            if (pass == 0)
                printf("%-10s unit scales: %d/%d rows differ (row0 %.1f vs %.1f)\n", k[j].name, diff, rows, o_old[0], o_new[0]);
            else
                printf("%-10s random scales: %d/%d rows differ; old %.3f ms, relaxed %.3f ms "
                       "(%.2f ns/block vs %.2f): x%.2f; max rel diff %.2g\n", k[j].name, diff, rows, t_old, t_new,
                       t_old * 1e6 / (rows * nb), t_new * 1e6 / (rows * nb), t_old / t_new, maxrel(o_old, o_new, rows));
        }
    }
    return bad;
}
