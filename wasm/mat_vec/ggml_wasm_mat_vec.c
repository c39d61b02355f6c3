// Four rows of a matrix times one column, for q4_1 and q8_0 weights: ggml's mul_mat calls these
// in every llamart WebAssembly module (cmake/patches/wasm-mat-vec.patch) instead of one vec dot
// per row.  The column's block is loaded, and its scales looked up, once for four rows, and one
// call replaces four.  Each row's floats are the one-row kernel's (ggml_wasm_blocks.h), so the
// results are the same bits.  Built by emcc into the plain modules and by a clang with relaxed
// SIMD into the relaxed ones (wasm/CMakeLists.txt).
//
// LLAMART_WASM_MAT_VEC=0 in the module's environment (Module.ENV, read once) keeps ggml's
// one-row calls: the reference the tests compare with (tests/test_wasm_mat_vec.py).
#include <assert.h>
#include <stdlib.h>

#include "ggml_wasm_blocks.h"

int llamart_wasm_mat_vec_on(void) {
    static int on = -1;  // a benign race: every thread reads the same environment
    if (on < 0) {
        const char * e = getenv("LLAMART_WASM_MAT_VEC");
        on = !(e != NULL && strcmp(e, "0") == 0);
    }
    return on;
}

// vx: row 0; bx: bytes from one row to the next; vy: the column; s: four results
void llamart_vec_dot_q4_1_q8_1_x4(int n, float * restrict s, const void * restrict vx, size_t bx,
                                  const void * restrict vy) {
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
        const lm_col_q8_1 c = lm_col_q8_1_load(&y[ib]);
        lm_q4_1_block(&x0[ib], &c, &sumv0, &summs0);
        lm_q4_1_block(&x1[ib], &c, &sumv1, &summs1);
        lm_q4_1_block(&x2[ib], &c, &sumv2, &summs2);
        lm_q4_1_block(&x3[ib], &c, &sumv3, &summs3);
    }
    s[0] = LM_HSUM(sumv0) + summs0;
    s[1] = LM_HSUM(sumv1) + summs1;
    s[2] = LM_HSUM(sumv2) + summs2;
    s[3] = LM_HSUM(sumv3) + summs3;
}

void llamart_vec_dot_q8_0_q8_0_x4(int n, float * restrict s, const void * restrict vx, size_t bx,
                                  const void * restrict vy) {
    const int nb = n / QK8_0;
    assert(n % QK8_0 == 0);
    const block_q8_0 * restrict x0 = vx;
    const block_q8_0 * restrict x1 = (const block_q8_0 *) ((const char *) vx + bx);
    const block_q8_0 * restrict x2 = (const block_q8_0 *) ((const char *) vx + 2 * bx);
    const block_q8_0 * restrict x3 = (const block_q8_0 *) ((const char *) vx + 3 * bx);
    const block_q8_0 * restrict y = vy;

    v128_t sumv0 = wasm_f32x4_splat(0.0f), sumv1 = sumv0, sumv2 = sumv0, sumv3 = sumv0;
    for (int ib = 0; ib < nb; ++ib) {
        const lm_col_q8_0 c = lm_col_q8_0_load(&y[ib]);
        lm_q8_0_block(&x0[ib], &c, &sumv0);
        lm_q8_0_block(&x1[ib], &c, &sumv1);
        lm_q8_0_block(&x2[ib], &c, &sumv2);
        lm_q8_0_block(&x3[ib], &c, &sumv3);
    }
    s[0] = LM_HSUM(sumv0);
    s[1] = LM_HSUM(sumv1);
    s[2] = LM_HSUM(sumv2);
    s[3] = LM_HSUM(sumv3);
}
