// Embeddings: a second llama_context of the session (embeddings = true, one pooling type),
// created on the first lm_embed and again when the pooling type changes.  It never touches the
// generation context, so embedding between generations changes none of their results.
//
// Pooled embeddings are computed per ubatch: a text must never be split across two.  The
// context is sized so that n_ctx = n_batch = n_ubatch = the window (lm_embed_window); several
// texts are packed into one decode (distinct seq_ids, a unified KV cache cleared before each
// decode) while their tokens fit in that window (and kPackTokens), so every decode is one ubatch
// and no call can reach llama.cpp's n_batch / n_ubatch asserts.
#include "internal.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

namespace {

constexpr int32_t kMaxSeqs = 32;  // texts packed into one decode at most (n_seq_max)
// Tokens packed into one decode at most (a longer text still gets a decode of its own).  A
// decode's attention (and its KQ mask) grows as (its tokens)^2, its fixed cost is small: 32
// short texts (~16 tokens) took 1.3-1.4x less time packed to 128 tokens than one per decode,
// packed to 512 0.8-1.05x (tiny F32 fixture and SmolLM2, one loaded-machine run each).
constexpr int32_t kPackTokens = 128;

const char * pooling_name(int32_t p) {
    switch (p) {
        case LM_POOLING_MEAN: return "mean";
        case LM_POOLING_CLS: return "cls";
        case LM_POOLING_LAST: return "last";
        default: return "?";
    }
}

// The "<arch>.pooling_type" key of the model's GGUF (llama.cpp's enum), -1 when absent.
int32_t gguf_pooling(const llama_model * model) {
    char arch[64] = {0};
    if (llama_model_meta_val_str(model, "general.architecture", arch, sizeof(arch)) < 0) {
        return -1;
    }
    char val[32] = {0};
    const std::string key = std::string(arch) + ".pooling_type";
    if (llama_model_meta_val_str(model, key.c_str(), val, sizeof(val)) < 0) {
        return -1;
    }
    char * end = nullptr;
    const long v = std::strtol(val, &end, 10);
    return (end != val && *end == '\0') ? (int32_t) v : -1;
}

// Free the embedding context: its adapters unset first (see lm_session_free's order).
void drop_context(lm_session * s) {
    if (s->embed_ctx == nullptr) {
        return;
    }
    if (!s->active.empty()) {
        llama_set_adapters_lora(s->embed_ctx, nullptr, 0, nullptr);
    }
    if (s->threadpool != nullptr) {
        llama_detach_threadpool(s->embed_ctx);
    }
    llama_free(s->embed_ctx);
    s->embed_ctx = nullptr;
    s->embed_pooling = 0;
}

// The embedding context for pooling p (made, or remade for another p), with the session's
// active adapters set on it.  nullptr + lm::fail on failure.
llama_context * context_for(lm_session * s, int32_t p) {
    if (s->embed_ctx != nullptr && s->embed_pooling == p) {
        return s->embed_ctx;
    }
    drop_context(s);
    const int32_t window = lm_embed_window(s);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) window;
    cp.n_batch = (uint32_t) window;
    cp.n_ubatch = (uint32_t) window;
    cp.n_seq_max = kMaxSeqs;
    cp.kv_unified = true;  // one stream: split_simple keeps a decode in one ubatch
    cp.embeddings = true;
    // flash attention switches to a tiled kernel at 64 query tokens, so a text's vector would
    // depend on what it was packed with (measured: up to 5e-3 on SmolLM2 Q4_1); plain attention
    // computes every row alike
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    // an F32 cache: no F16 rounding of K and V (the cache holds one window, cleared per decode)
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.pooling_type = (enum llama_pooling_type) p;
    cp.n_threads = llama_n_threads(s->ctx);
    cp.n_threads_batch = llama_n_threads_batch(s->ctx);
    cp.no_perf = true;
    llama_context * ctx = nullptr;
    {
        lm::ExpectedLog expected("model default pooling_type is");  // we chose one on purpose
        ctx = llama_init_from_model(s->model, cp);
    }
    if (ctx == nullptr) {
        lm::fail(LM_ERR_ALLOC, "llama.cpp could not create the embedding context (" +
                                   std::to_string(window) + " tokens)");
        return nullptr;
    }
    if (s->threadpool != nullptr) {  // the session's workers (session.cpp), never a second team
        llama_attach_threadpool(ctx, s->threadpool, s->threadpool);
    }
    s->embed_ctx = ctx;
    s->embed_pooling = p;
    lm::embed_sync_adapters(s);
    return ctx;
}

void l2_normalize(float * v, int32_t n) {
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        sum += (double) v[i] * v[i];
    }
    if (sum > 0.0) {
        const double inv = 1.0 / std::sqrt(sum);
        for (int32_t i = 0; i < n; i++) {
            v[i] = (float) (v[i] * inv);
        }
    }
}

// One decode of texts [first, last): tokens from offset `at`; vectors written at out.
int32_t decode_group(lm_session * s, llama_context * ctx, const int32_t * tokens,
                     const int32_t * lengths, int32_t first, int32_t last, int32_t normalize,
                     float * out, int32_t n_embd) {
    int32_t total = 0;
    for (int32_t j = first; j < last; j++) {
        total += lengths[j];
    }
    llama_batch batch = llama_batch_init(total, 0, 1);
    int32_t k = 0;
    for (int32_t j = first; j < last; j++) {
        for (int32_t i = 0; i < lengths[j]; i++, k++) {
            batch.token[k] = tokens[k];
            batch.pos[k] = i;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = j - first;
            batch.logits[k] = 1;  // pooled embeddings need every token as an output
        }
    }
    batch.n_tokens = total;
    llama_memory_t mem = llama_get_memory(ctx);
    if (mem != nullptr) {
        llama_memory_clear(mem, false);
    }
    const int32_t rc = llama_decode(ctx, batch);
    llama_batch_free(batch);
    if (mem != nullptr) {
        llama_memory_clear(mem, false);
    }
    if (rc != 0) {
        return lm::fail(rc == 1 ? LM_ERR_CONTEXT : LM_ERR_DECODE,
                        "llama_decode failed on the embedding context (" + std::to_string(rc) + ")");
    }
    for (int32_t j = first; j < last; j++) {
        const float * v = llama_get_embeddings_seq(ctx, j - first);
        if (v == nullptr) {
            return lm::fail(LM_ERR_DECODE, "llama.cpp returned no embedding for text " +
                                               std::to_string(j));
        }
        float * dst = out + (size_t) j * n_embd;
        std::copy(v, v + n_embd, dst);
        if (normalize) {
            l2_normalize(dst, n_embd);
        }
    }
    (void) s;
    return LM_OK;
}

}  // namespace

namespace lm {

void embed_sync_adapters(lm_session * s) {
    if (s->embed_ctx != nullptr) {
        set_active_adapters(s, s->embed_ctx);
    }
}

void embed_unset_adapters(lm_session * s) {
    if (s->embed_ctx != nullptr) {
        llama_set_adapters_lora(s->embed_ctx, nullptr, 0, nullptr);
    }
}

void embed_free(lm_session * s) { drop_context(s); }

}  // namespace lm

extern "C" {


int32_t lm_n_embd_out(const lm_session * s) { return s ? llama_model_n_embd_out(s->model) : 0; }

int32_t lm_embed_window(const lm_session * s) {
    if (s == nullptr || s->ctx == nullptr) {
        return 0;
    }
    return (int32_t) std::min(llama_n_ctx(s->ctx), llama_n_batch(s->ctx));
}

int32_t lm_embed_pooling(const lm_session * s, int32_t pooling) {
    lm::begin_call();
    if (s == nullptr) {
        return lm::fail(LM_ERR_ARG, "no session");
    }
    int32_t p = pooling;
    if (p == LM_POOLING_MODEL) {
        p = gguf_pooling(s->model);
        if (p == -1 || p == 0) {  // none given, or "none" (per-token vectors): mean
            p = LM_POOLING_MEAN;
        }
    }
    if (p != LM_POOLING_MEAN && p != LM_POOLING_CLS && p != LM_POOLING_LAST) {
        return lm::fail(pooling == LM_POOLING_MODEL ? LM_ERR_UNSUPPORTED : LM_ERR_ARG,
                        "pooling type " + std::to_string(p) +
                            " is not one of mean (1), cls (2), last (3)" +
                            (pooling == LM_POOLING_MODEL ? " (the model's: e.g. rank, a reranker)" : ""));
    }
    return p;
}

int32_t lm_embed(lm_session * s, const int32_t * tokens, const int32_t * lengths, int32_t n_seqs,
                 int32_t pooling, int32_t normalize, float * out, int32_t out_size) {
    lm::begin_call();
    if (s == nullptr || s->ctx == nullptr || n_seqs < 0 || out_size < 0 ||
        (n_seqs > 0 && (tokens == nullptr || lengths == nullptr || out == nullptr))) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_embed (no context, or NULL arrays)");
    }
    const int32_t p = lm_embed_pooling(s, pooling);
    if (p < 0) {
        return p;
    }
    const int32_t n_embd = llama_model_n_embd_out(s->model);
    if ((int64_t) n_seqs * n_embd > out_size) {
        return lm::fail(LM_ERR_ARG, "out holds " + std::to_string(out_size) + " floats, " +
                                        std::to_string(n_seqs) + " embeddings need " +
                                        std::to_string((int64_t) n_seqs * n_embd));
    }
    const int32_t window = lm_embed_window(s);
    int64_t at = 0;
    for (int32_t j = 0; j < n_seqs; j++) {
        if (lengths[j] <= 0) {
            return lm::fail(LM_ERR_ARG, "text " + std::to_string(j) + " has no tokens");
        }
        if (lengths[j] > window) {
            return lm::fail(LM_ERR_CONTEXT, "text " + std::to_string(j) + " has " +
                                                std::to_string(lengths[j]) +
                                                " tokens; the embedding window is " +
                                                std::to_string(window) +
                                                " (min of n_ctx and n_batch)");
        }
        for (int32_t i = 0; i < lengths[j]; i++) {
            if (!lm::in_vocab(s, tokens[at + i])) {
                return lm::fail(LM_ERR_ARG, lm::outside_vocab(s, tokens[at + i]));
            }
        }
        at += lengths[j];
    }
    if (n_seqs == 0) {
        return LM_OK;
    }
    llama_context * ctx = context_for(s, p);
    if (ctx == nullptr) {
        return LM_ERR_ALLOC;
    }
    // pack texts into decodes of at most `window` tokens and kMaxSeqs texts
    const int32_t * group_tokens = tokens;
    for (int32_t first = 0; first < n_seqs;) {
        int32_t last = first, total = 0;
        while (last < n_seqs && last - first < kMaxSeqs && total + lengths[last] <= window &&
               (last == first || total + lengths[last] <= kPackTokens)) {
            total += lengths[last];
            last++;
        }
        const int32_t rc = decode_group(s, ctx, group_tokens, lengths, first, last, normalize,
                                        out, n_embd);
        if (rc != LM_OK) {
            return rc;
        }
        group_tokens += total;
        first = last;
    }
    return LM_OK;
}

}  // extern "C"
