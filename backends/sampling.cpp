// Sampling: the sampler chain, a vectorised argmax for greedy runs, the generation step.
#include "internal.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <random>

namespace {

// First maximum of logits[0..n) (the token llama_sampler_init_greedy picks), in one
// branch-free pass over 4-float vectors (GCC/clang vector extensions: SSE natively, SIMD128 in
// WebAssembly): each lane keeps its first maximum and that index, then the lanes are merged
// (largest value, smallest index on ties).  NaN logits never win; all NaN gives token 0.
typedef float   lm_v4f __attribute__((vector_size(16)));
typedef int32_t lm_v4i __attribute__((vector_size(16)));

llama_token argmax(const float * logits, int32_t n) {
    int32_t best_i = 0;
    float best = logits[0];
    int32_t i = 0;
    if (n >= 8) {
        const float ninf = -INFINITY;  // a lane starts below any logit; NaN never replaces
        lm_v4f va = {ninf, ninf, ninf, ninf};
        lm_v4f vb = va;
        lm_v4i ia = {-8, -7, -6, -5};
        lm_v4i ib = {-4, -3, -2, -1};
        lm_v4i idx_a = {0, 0, 0, 0};
        lm_v4i idx_b = idx_a;
        const lm_v4i step = {8, 8, 8, 8};
        for (i = 0; i + 8 <= n; i += 8) {
            ia += step;
            ib += step;
            lm_v4f xa, xb;
            std::memcpy(&xa, logits + i, sizeof xa);
            std::memcpy(&xb, logits + i + 4, sizeof xb);
            const lm_v4i ga = xa > va;
            const lm_v4i gb = xb > vb;
            va = ga ? xa : va;
            vb = gb ? xb : vb;
            idx_a = ga ? ia : idx_a;
            idx_b = gb ? ib : idx_b;
        }
        best = ninf;
        best_i = 0;
        for (int k = 0; k < 4; k++) {
            const float cand[2] = {va[k], vb[k]};
            const int32_t cand_i[2] = {idx_a[k], idx_b[k]};
            for (int j = 0; j < 2; j++) {
                if (cand[j] > best || (cand[j] == best && cand_i[j] < best_i)) {
                    best = cand[j];
                    best_i = cand_i[j];
                }
            }
        }
    }
    for (; i < n; i++) {  // the tail (or all of a tiny vocabulary)
        if (logits[i] > best) {
            best = logits[i];
            best_i = i;
        }
    }
    return best_i;
}

// llama_sampler_penalties_apply's change of one logit (frequency and presence penalties 0).
inline float penalised(float logit, float repeat) {
    return logit <= 0 ? logit * repeat : logit / repeat;
}

// The penalty on candidates in token order (all_candidates'): the window's tokens only.
void apply_penalty(const lm::Sampling & st, llama_token_data_array * arr) {
    for (const auto & [tok, n] : st.penalty.count) {
        if (n > 0 && (size_t) tok < arr->size && arr->data[tok].id == tok) {
            arr->data[tok].logit = penalised(arr->data[tok].logit, st.penalty.repeat);
        }
    }
}

// The greedy token: the first maximum of the logits, the window's tokens penalised (changed in
// place for the one vectorised pass, then restored).
llama_token penalised_argmax(const lm_session * s, lm::Sampling & st, float * logits) {
    if (st.penalty.count.empty()) {
        return argmax(logits, s->n_vocab);
    }
    std::vector<std::pair<llama_token, float>> saved;
    saved.reserve(st.penalty.count.size());
    for (const auto & [tok, n] : st.penalty.count) {
        if (n > 0 && tok >= 0 && tok < s->n_vocab) {
            saved.emplace_back(tok, logits[tok]);
            logits[tok] = penalised(logits[tok], st.penalty.repeat);
        }
    }
    const llama_token best = argmax(logits, s->n_vocab);
    for (const auto & [tok, logit] : saved) {
        logits[tok] = logit;
    }
    return best;
}

// Whether the grammar allows token t next (an end-of-generation token only where it may end).
bool grammar_allows(lm::Sampling & st, llama_token t) {
    llama_token_data one = {t, 1.0f, 0.0f};
    llama_token_data_array arr = {&one, 1, -1, false};
    llama_sampler_apply(st.grammar, &arr);
    return one.logit != -INFINITY;
}

// Every token with its logit, in st.candidates.
llama_token_data_array all_candidates(lm_session * s, lm::Sampling & st, const float * logits) {
    st.candidates.resize((size_t) s->n_vocab);
    for (int32_t i = 0; i < s->n_vocab; i++) {
        st.candidates[(size_t) i] = {i, logits[i], 0.0f};
    }
    return {st.candidates.data(), st.candidates.size(), -1, false};
}

// The candidates after the grammar removed what it refuses; false when it refuses them all.
bool grammar_candidates(lm_session * s, lm::Sampling & st, const float * logits, llama_token_data_array * arr) {
    *arr = all_candidates(s, st, logits);
    llama_sampler_apply(st.grammar, arr);
    for (size_t i = 0; i < arr->size; i++) {
        if (arr->data[i].logit != -INFINITY) {
            return true;
        }
    }
    return false;
}

// One token under the grammar, as llama.cpp's common_sampler_sample does it: the
// unconstrained choice when the grammar allows it (the common case, one cheap check), else
// the choice among what the grammar allows (the grammar runs over the whole vocabulary).
// The token is accepted into the chain and, unless it ends the generation, the grammar: only
// tokens the grammar allowed ever reach llama_grammar_accept_impl (others throw or abort).
// kNoGrammarToken when the grammar allows no token at all.
constexpr llama_token kNoGrammarToken = -2;

llama_token sample_grammar(lm_session * s, lm::Sampling & st, int32_t idx) {
    float * logits = llama_get_logits_ith(s->ctx, idx);
    if (logits == nullptr) {
        return -1;
    }
    llama_token tok = -1;
    if (st.greedy) {
        tok = penalised_argmax(s, st, logits);
    } else {
        llama_token_data_array arr = all_candidates(s, st, logits);
        apply_penalty(st, &arr);
        llama_sampler_apply(st.sampler, &arr);
        tok = arr.selected >= 0 ? arr.data[arr.selected].id : -1;
    }
    if (tok < 0 || !grammar_allows(st, tok)) {
        llama_token_data_array arr;
        if (!grammar_candidates(s, st, logits, &arr)) {
            return kNoGrammarToken;
        }
        apply_penalty(st, &arr);
        llama_sampler_apply(st.sampler, &arr);
        tok = arr.selected >= 0 ? arr.data[arr.selected].id : -1;
        if (tok < 0 || arr.data[arr.selected].logit == -INFINITY) {
            return kNoGrammarToken;
        }
    }
    lm::accept(st, tok);
    if (!llama_vocab_is_eog(s->vocab, tok)) {
        llama_sampler_accept(st.grammar, tok);
    }
    return tok;
}

llama_token sample_one(lm_session * s, lm::Sampling & st, int32_t idx) {
    if (st.grammar) {
        return sample_grammar(s, st, idx);
    }
    float * logits = llama_get_logits_ith(s->ctx, idx);
    if (logits == nullptr) {
        return -1;
    }
    llama_token tok;
    if (st.greedy) {
        // the argmax straight over the logits: the chain would copy n_vocab candidates per token
        tok = penalised_argmax(s, st, logits);
    } else {  // llama_sampler_sample's steps, the penalty applied to the window's tokens only
        llama_token_data_array arr = all_candidates(s, st, logits);
        apply_penalty(st, &arr);
        llama_sampler_apply(st.sampler, &arr);
        if (arr.selected < 0 || arr.selected >= (int64_t) arr.size) {
            return -1;
        }
        tok = arr.data[arr.selected].id;
    }
    lm::accept(st, tok);
    return tok;
}

}  // namespace

extern "C" {

int32_t lm_sampler_init(lm_session * s, float temperature, int32_t top_k, float top_p, float min_p,
                        float repeat_penalty, int32_t penalty_last_n, int64_t seed) {
    lm::begin_call();
    if (s == nullptr || s->ctx == nullptr) {
        return lm::fail(LM_ERR_ARG, "no context to sample in");
    }
    return lm::sampling_init(s, s->samp, temperature, top_k, top_p, min_p, repeat_penalty,
                             penalty_last_n, seed);
}

}  // extern "C"

namespace lm {

int32_t sampling_init(lm_session * s, Sampling & st, float temperature, int32_t top_k, float top_p,
                      float min_p, float repeat_penalty, int32_t penalty_last_n, int64_t seed) {
    if (!std::isfinite(temperature) || !std::isfinite(top_p) || !std::isfinite(min_p) ||
        !(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty)) {
        return lm::fail(LM_ERR_ARG, "invalid sampling parameters (temperature, top_p and min_p "
                                    "must be finite, repeat_penalty finite and > 0)");
    }
    if (st.sampler) {
        llama_sampler_free(st.sampler);
        st.sampler = nullptr;
    }
    lm::drop_grammar(st);
    llama_sampler * chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    // the penalty runs before the chain (as first in it, where llama.cpp's common/ puts it)
    st.penalty = Penalty();
    if (repeat_penalty != 1.0f && penalty_last_n != 0) {
        st.penalty.last_n = penalty_last_n < 0 ? s->n_vocab : penalty_last_n;
        st.penalty.repeat = repeat_penalty;
    }
    if (temperature <= 0.0f) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    } else {
        if (top_k > 0) {
            llama_sampler_chain_add(chain, llama_sampler_init_top_k(top_k));
        }
        if (top_p < 1.0f) {
            llama_sampler_chain_add(chain, llama_sampler_init_top_p(top_p, 1));
        }
        if (min_p > 0.0f) {
            llama_sampler_chain_add(chain, llama_sampler_init_min_p(min_p, 1));
        }
        llama_sampler_chain_add(chain, llama_sampler_init_temp(temperature));
        const uint32_t seed32 = seed < 0 ? std::random_device{}() : (uint32_t) (seed & 0xffffffff);
        llama_sampler_chain_add(chain, llama_sampler_init_dist(seed32));
    }
    st.sampler = chain;
    st.greedy = temperature <= 0.0f;
    return LM_OK;
}

void accept(Sampling & st, llama_token t) {
    Penalty & p = st.penalty;
    if (p.last_n > 0) {  // llama_sampler_penalties_accept's ring buffer and counts
        p.count[t]++;
        if (p.ring.size() < (size_t) p.last_n) {
            p.ring.push_back(t);
        } else {
            const llama_token old = p.ring[p.head];
            if (--p.count[old] == 0) {
                p.count.erase(old);
            }
            p.ring[p.head] = t;
            p.head = (p.head + 1) % p.ring.size();
        }
    }
    if (!st.greedy) {
        llama_sampler_accept(st.sampler, t);  // the chain (dist's and the like's state)
    }
}


llama_token sample(lm_session * s, Sampling & st, int32_t idx, int32_t * status) {
    *status = LM_OK;
    llama_token tok = -1;
    try {
        tok = sample_one(s, st, idx);
    } catch (const std::exception & e) {  // llama.cpp's grammar code throws
        *status = fail(LM_ERR_GRAMMAR, std::string("grammar: ") + e.what());
        return -1;
    }
    if (tok == kNoGrammarToken) {
        *status = fail(LM_ERR_GRAMMAR, "the grammar allows no token of this vocabulary "
                                       "here: it cannot be continued with this model");
        return -1;
    }
    if (!in_vocab(s, tok)) {
        *status = fail(LM_ERR_DECODE, "the sampler gave no token (" + std::to_string(tok) + ")");
        return -1;
    }
    if (llama_vocab_is_eog(s->vocab, tok)) {
        *status = LM_EOG;
    }
    return tok;
}

void sampling_free(Sampling & st) {
    if (st.sampler) {
        llama_sampler_free(st.sampler);
        st.sampler = nullptr;
    }
    drop_grammar(st);
}

}  // namespace lm

extern "C" {

int32_t lm_sampler_accept(lm_session * s, const int32_t * tokens, int32_t n_tokens) {
    lm::begin_call();
    if (s == nullptr || n_tokens < 0 || (tokens == nullptr && n_tokens > 0)) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_sampler_accept");
    }
    if (s->samp.sampler == nullptr) {
        return lm::fail(LM_ERR_STATE, "no sampler: call lm_sampler_init first");
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (!lm::in_vocab(s, tokens[i])) {
            return lm::fail(LM_ERR_ARG, lm::outside_vocab(s, tokens[i]));
        }
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        lm::accept(s->samp, tokens[i]);
    }
    return LM_OK;
}

int32_t lm_generate(lm_session * s, int32_t max_n, int32_t eval_last, int32_t * tokens,
                    int32_t * status, int32_t * cancel) {
    lm::begin_call();
    if (status == nullptr || (tokens == nullptr && max_n > 0) || max_n < 0) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_generate (status or tokens NULL, "
                                    "or max_n negative)");
    }
    *status = LM_OK;
    if (s == nullptr || s->ctx == nullptr) {
        return lm::fail(LM_ERR_STATE, "no context to generate in");
    }
    if (s->samp.sampler == nullptr) {
        return lm::fail(LM_ERR_STATE, "no sampler: call lm_sampler_init first");
    }
    if (!s->slots.empty()) {
        return lm::fail(LM_ERR_STATE, "a parallel session generates through lm_step");
    }
    if (!s->have_logits) {
        return lm::fail(LM_ERR_STATE, "nothing has been evaluated: no logits to sample from");
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(s->ctx);
    int32_t n = 0;
    while (n < max_n) {
        // consumed on read, so a stale request is reported once and the caller decides
        if (cancel != nullptr && __atomic_exchange_n(cancel, 0, __ATOMIC_ACQ_REL) != 0) {
            *status = LM_CANCELLED;
            return n;
        }
        llama_token tok = -1;
        try {
            tok = sample_one(s, s->samp, -1);
        } catch (const std::exception & e) {  // llama.cpp's grammar code throws
            *status = lm::fail(LM_ERR_GRAMMAR, std::string("grammar: ") + e.what());
            return n;
        }
        if (tok == kNoGrammarToken) {
            *status = lm::fail(LM_ERR_GRAMMAR, "the grammar allows no token of this vocabulary "
                                               "here: it cannot be continued with this model");
            return n;
        }
        if (!lm::in_vocab(s, tok)) {
            *status = lm::fail(LM_ERR_DECODE, "the sampler gave no token (" + std::to_string(tok) + ")");
            return n;
        }
        if (llama_vocab_is_eog(s->vocab, tok)) {
            *status = LM_EOG;
            return n;
        }
        tokens[n++] = tok;
        if (n == max_n && !eval_last) {
            break;
        }
        if (s->n_past >= n_ctx) {
            *status = LM_ERR_CONTEXT;
            return n;
        }
        llama_token t = tok;
        const int32_t rc = llama_decode(s->ctx, llama_batch_get_one(&t, 1));
        if (rc != 0) {
            s->have_logits = false;
            // tokens[n - 1] was sampled but not evaluated
            *status = lm::fail(LM_ERR_DECODE, "llama_decode failed (" + std::to_string(rc) + ")");
            return n;
        }
        s->n_past += 1;
        s->cached.push_back(tok);
    }
    return n;
}

}  // extern "C"
