// lm_gguf_scan_strings: the GGUF string-array walk behind the Python validator's fast path.
#include "internal.h"

#include <cstring>

extern "C" {

int32_t lm_gguf_scan_strings(const uint8_t * buf, int32_t size, int32_t n, int32_t max_len,
                             int32_t unique) {
    lm::begin_call();
    if (buf == nullptr || size < 0 || n < 0 || max_len < 0) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_gguf_scan_strings");
    }
    if (n > size / 8) {
        return lm::fail(LM_ERR_BUFFER, "the strings run past the buffer");  // 8 bytes each at least
    }
    if (unique && n > (1 << 21)) {
        return lm::fail(LM_ERR_ARG, "too many strings to check for repeats");  // the Python walk decides
    }
    // open addressing over (offset, length) pairs: one allocation for the whole vocabulary
    struct slot { int32_t off; int32_t len; };
    std::vector<slot> table;
    size_t mask = 0;
    if (unique) {
        size_t cap = 16;
        while (cap < (size_t) n * 2) {
            cap <<= 1;
        }
        table.assign(cap, slot{-1, 0});
        mask = cap - 1;
    }
    int64_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        if (size - pos < 8) {
            return lm::fail(LM_ERR_BUFFER, "string " + std::to_string(i) + " runs past the buffer");
        }
        uint64_t len = 0;  // little-endian whatever the host
        for (int b = 7; b >= 0; b--) {
            len = (len << 8) | buf[pos + b];
        }
        pos += 8;
        if (len > (uint64_t) max_len) {
            return lm::fail(LM_ERR_ARG, "string " + std::to_string(i) + " is longer than " +
                                            std::to_string(max_len) + " bytes");
        }
        if ((uint64_t) (size - pos) < len) {
            return lm::fail(LM_ERR_BUFFER, "string " + std::to_string(i) + " runs past the buffer");
        }
        if (unique) {
            if (len == 0) {
                return lm::fail(LM_ERR_ARG, "string " + std::to_string(i) + " is empty");
            }
            uint64_t h = 1469598103934665603ull;  // FNV-1a
            for (uint64_t k = 0; k < len; k++) {
                h = (h ^ buf[pos + k]) * 1099511628211ull;
            }
            for (size_t j = (size_t) h & mask;; j = (j + 1) & mask) {
                slot & e = table[j];
                if (e.off < 0) {
                    e = slot{(int32_t) pos, (int32_t) len};
                    break;
                }
                if (e.len == (int32_t) len && std::memcmp(buf + e.off, buf + pos, len) == 0) {
                    return lm::fail(LM_ERR_ARG, "string " + std::to_string(i) + " repeats an earlier one");
                }
            }
        }
        pos += (int64_t) len;
    }
    return (int32_t) pos;  // <= size
}

}  // extern "C"
