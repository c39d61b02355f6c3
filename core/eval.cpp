// Evaluation: the KV cache position, batched decodes, the last token's logits.
#include "internal.h"

#include <algorithm>

extern "C" {

void lm_reset(lm_session * s) {
    if (s == nullptr || s->ctx == nullptr) {
        return;
    }
    // data=false: cells are freed and masked out, their stale contents are never read (as in
    // llama-server); zeroing the whole buffer cost ~30 ms per reset on a 400 MB model
    lm::reset_cache(s, false);
}

int32_t lm_eval(lm_session * s, const int32_t * tokens, int32_t n_tokens) {
    lm::begin_call();
    if (s == nullptr || s->ctx == nullptr || n_tokens < 0 || (tokens == nullptr && n_tokens > 0)) {
        return lm::fail(LM_ERR_ARG, "no context to evaluate in");
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (!lm::in_vocab(s, tokens[i])) {
            return lm::fail(LM_ERR_ARG, lm::outside_vocab(s, tokens[i]));
        }
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(s->ctx);
    if (n_tokens > n_ctx - s->n_past) {
        return lm::fail(LM_ERR_CONTEXT, std::to_string(s->n_past + n_tokens) +
                                            " tokens do not fit in the context of " +
                                            std::to_string(n_ctx));
    }
    const int32_t n_batch = (int32_t) llama_n_batch(s->ctx);
    std::vector<llama_token> chunk;
    for (int32_t i = 0; i < n_tokens; i += n_batch) {
        const int32_t n = std::min(n_batch, n_tokens - i);
        chunk.assign(tokens + i, tokens + i + n);
        const int32_t rc = llama_decode(s->ctx, llama_batch_get_one(chunk.data(), n));
        if (rc != 0) {
            // a failed decode leaves the cache in an unknown state: start over next time
            lm::reset_cache(s, true);
            return lm::fail(rc == 1 ? LM_ERR_CONTEXT : LM_ERR_DECODE,
                            "llama_decode failed (" + std::to_string(rc) + ")");
        }
        s->n_past += n;
        s->have_logits = true;
    }
    return LM_OK;
}

const float * lm_logits(lm_session * s) {
    lm::begin_call();
    if (s == nullptr || s->ctx == nullptr || !s->have_logits) {
        lm::fail(LM_ERR_STATE, "no logits: nothing has been evaluated");
        return nullptr;
    }
    return llama_get_logits_ith(s->ctx, -1);
}

}  // extern "C"
