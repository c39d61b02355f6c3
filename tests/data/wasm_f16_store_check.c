// Every float through the WebAssembly build's four-lane fp16 store (the patched
// ggml-cpu/simd-mappings.h, cmake/patches/wasm-f16-store.patch) against ggml's scalar
// ggml_compute_fp32_to_fp16 (ggml-impl.h): prints "checked N mismatches M", exits 1 on any.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "ggml-cpu/simd-mappings.h"

int main(void) {
    uint64_t checked = 0, bad = 0;
    uint32_t u = 0;
    do {
        const uint32_t b[4] = {u, u + 1, u + 2, u + 3};
        float f[4];
        memcpy(f, b, sizeof(f));
        ggml_fp16_t got[4];
        __wasm_f16x4_store(got, wasm_v128_load(f));
        for (int k = 0; k < 4; ++k) {
            const ggml_fp16_t want = ggml_compute_fp32_to_fp16(f[k]);
            if (got[k] != want && bad++ < 5) {
                printf("0x%08x: 0x%04x, ggml 0x%04x\n", (unsigned) b[k], got[k], want);
            }
        }
        checked += 4;
        u += 4;
    } while (u != 0);
    printf("checked %llu mismatches %llu\n", (unsigned long long) checked, (unsigned long long) bad);
    return bad != 0;
}
