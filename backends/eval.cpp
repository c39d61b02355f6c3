// Evaluation: the KV cache position, batched decodes, prefix reuse, the last token's logits.
#include "internal.h"

#include <algorithm>

namespace {

// Check a token array before anything is evaluated: every id inside the vocabulary.
int32_t check_tokens(lm_session * s, const int32_t * tokens, int32_t n_tokens) {
    if (s == nullptr || s->ctx == nullptr || n_tokens < 0 || (tokens == nullptr && n_tokens > 0)) {
        return lm::fail(LM_ERR_ARG, "no context to evaluate in");
    }
    if (!s->slots.empty()) {
        return lm::fail(LM_ERR_STATE, "a parallel session evaluates through lm_slot_prompt / lm_step");
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (!lm::in_vocab(s, tokens[i])) {
            return lm::fail(LM_ERR_ARG, lm::outside_vocab(s, tokens[i]));
        }
    }
    return LM_OK;
}

int32_t context_full(int32_t n_needed, int32_t n_ctx) {
    return lm::fail(LM_ERR_CONTEXT, std::to_string(n_needed) +
                                        " tokens do not fit in the context of " +
                                        std::to_string(n_ctx));
}

// Keep only the first n cached positions. False when the memory cannot drop a suffix (recurrent
// state) or no longer holds every kept position: the caller then starts from position 0.
bool keep_prefix(lm_session * s, int32_t n) {
    if (n == s->n_past) {
        return true;
    }
    llama_memory_t mem = llama_get_memory(s->ctx);
    if (!llama_memory_seq_rm(mem, 0, n, -1)) {
        return false;
    }
    s->cached.resize((size_t) n);
    s->n_past = n;
    s->have_logits = false;
    // a sliding-window cache may have dropped early positions (the context is made with
    // swa_full, so this is a guard, not the expected path)
    return n == 0 || llama_memory_seq_pos_min(mem, 0) == 0;
}

}  // namespace

namespace lm {

int32_t decode_tokens(lm_session * s, const llama_token * tokens, int32_t n_tokens) {
    const int32_t n_batch = (int32_t) llama_n_batch(s->ctx);
    std::vector<llama_token> chunk;
    for (int32_t i = 0; i < n_tokens; i += n_batch) {
        const int32_t n = std::min(n_batch, n_tokens - i);
        chunk.assign(tokens + i, tokens + i + n);
        const int32_t rc = llama_decode(s->ctx, llama_batch_get_one(chunk.data(), n));
        if (rc != 0) {
            // a failed decode leaves the cache in an unknown state: start over next time
            reset_cache(s, true);
            return fail(rc == 1 ? LM_ERR_CONTEXT : LM_ERR_DECODE,
                        "llama_decode failed (" + std::to_string(rc) + ")");
        }
        s->n_past += n;
        s->cached.insert(s->cached.end(), tokens + i, tokens + i + n);
        s->have_logits = true;
    }
    return LM_OK;
}

}  // namespace lm

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
    const int32_t rc = check_tokens(s, tokens, n_tokens);
    if (rc != LM_OK) {
        return rc;
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(s->ctx);
    if (n_tokens > n_ctx - s->n_past) {
        return context_full(s->n_past + n_tokens, n_ctx);
    }
    return lm::decode_tokens(s, tokens, n_tokens);
}

int32_t lm_eval_prompt(lm_session * s, const int32_t * tokens, int32_t n_tokens) {
    lm::begin_call();
    const int32_t rc = check_tokens(s, tokens, n_tokens);
    if (rc != LM_OK) {
        return rc;
    }
    if (n_tokens == 0) {
        return lm::fail(LM_ERR_ARG, "an empty prompt has no logits");
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(s->ctx);
    if (n_tokens > n_ctx) {
        return context_full(n_tokens, n_ctx);
    }
    int32_t p = 0;
    const int32_t n_common = std::min(s->n_past, n_tokens);
    while (p < n_common && s->cached[(size_t) p] == tokens[p]) {
        p++;
    }
    if (p == n_tokens && p == s->n_past && s->have_logits) {
        return p;  // exactly the cached tokens, whose last logits are still there
    }
    // otherwise the last prompt token is decoded again for its logits (only the last decode's
    // are kept)
    p = std::min(p, n_tokens - 1);
    if (!keep_prefix(s, p)) {
        lm::reset_cache(s, false);
        p = 0;
    }
    const int32_t drc = lm::decode_tokens(s, tokens + p, n_tokens - p);
    return drc != LM_OK ? drc : p;
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
