// Session lifecycle (model + context) and the model's facts and metadata.
#include "internal.h"

#include "ggml-backend.h"

#include <algorithm>
#include <new>

namespace {

// A metadata string by index through one of llama.cpp's snprintf-style getters.
template <typename Handle>
int32_t meta_str(int32_t (*fn)(const Handle *, int32_t, char *, size_t), const Handle * h,
                 int32_t count, int32_t i, char * buf, int32_t size) {
    if (i < 0 || i >= count || size < 0) {
        return lm::fail(LM_ERR_ARG, "metadata index " + std::to_string(i) + " is out of range (" +
                                        std::to_string(count) + " entries)");
    }
    char empty = '\0';
    const int32_t n = fn(h, i, buf != nullptr ? buf : &empty, buf != nullptr ? (size_t) size : 0);
    return n < 0 ? lm::fail(LM_ERR_ARG, "metadata entry " + std::to_string(i) + " is unreadable") : n;
}

}  // namespace

namespace lm {

int32_t meta_key(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size) {
    return meta_str(llama_adapter_meta_key_by_index, a, llama_adapter_meta_count(a), i, buf, size);
}

int32_t meta_val(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size) {
    return meta_str(llama_adapter_meta_val_str_by_index, a, llama_adapter_meta_count(a), i, buf, size);
}

void reset_cache(lm_session * s, bool zero_data) {
    llama_memory_clear(llama_get_memory(s->ctx), zero_data);
    s->n_past = 0;
    s->cached.clear();
    s->have_logits = false;
    for (lm::Slot & slot : s->slots) {  // every sequence's KV is gone
        slot.cached.clear();
        slot.pending.clear();
        slot.sampled = -1;
        slot.logits_row = -1;
        slot.ready = false;
    }
}

}  // namespace lm

namespace {

// One persistent ggml threadpool per session (ggml is built without OpenMP), natively and in
// the pthreads WebAssembly module. Its workers serve whichever thread calls llama_decode, so
// callers on many threads (the parallel engine's scheduler, a server's worker pool) share one
// warm team; the embedding context uses the same pool (embed.cpp). Without it ggml starts its
// workers for every graph: natively with OpenMP every calling thread got a team of its own (a
// decode from a second thread ~7x slower on 2 cores); in WebAssembly each graph took workers
// from emscripten's pool and handed them back (a Web Worker message each way, per decode).
void attach_threadpool(lm_session * s, int32_t threads) {
#if !defined(__EMSCRIPTEN__) || defined(__EMSCRIPTEN_PTHREADS__)
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (reg == nullptr || threads < 2) {
        return;
    }
    auto tp_new = (ggml_threadpool * (*)(ggml_threadpool_params *))
        ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
    auto tp_free = (void (*)(ggml_threadpool *))
        ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");
    if (tp_new == nullptr || tp_free == nullptr) {
        return;  // ggml makes a threadpool per decode, as without this
    }
    ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    s->threadpool = tp_new(&tpp);
    if (s->threadpool != nullptr) {
        s->threadpool_free = tp_free;
        llama_attach_threadpool(s->ctx, s->threadpool, s->threadpool);
    }
#else
    (void) s;
    (void) threads;
#endif
}

}  // namespace

extern "C" {

lm_session * lm_session_load(const char * path, int32_t n_ctx, int32_t n_batch, int32_t n_threads,
                             int32_t use_mmap, int32_t vocab_only) {
    return lm_session_load_ex(path, n_ctx, n_batch, n_threads, use_mmap, vocab_only, 1);
}

lm_session * lm_session_load_ex(const char * path, int32_t n_ctx, int32_t n_batch, int32_t n_threads,
                                int32_t use_mmap, int32_t vocab_only, int32_t n_seq_max) {
    lm::begin_call();
    if (path == nullptr || n_ctx < 0 || n_batch < 0) {
        return lm::fail_null("invalid arguments (path NULL, or n_ctx/n_batch negative)");
    }
    if (n_seq_max < 1 || n_seq_max > 256) {
        return lm::fail_null("n_parallel must be 1.." + std::string("256") + ", got " +
                             std::to_string(n_seq_max));
    }
    if (!lm::cpu_error().empty()) {
        return lm::fail_null(lm::cpu_error());
    }
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    const bool mmap = use_mmap && (lm_capabilities() & LM_CAP_MMAP);
    mp.load_mode = mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
    mp.lazy_mode = LLAMA_LAZY_MODE_OFF;
    mp.vocab_only = vocab_only != 0;

    llama_model * model = llama_model_load_from_file(path, mp);
    if (model == nullptr) {
        return lm::fail_null("llama.cpp could not load the model");
    }
    auto * s = new (std::nothrow) lm_session();
    if (s == nullptr) {
        llama_model_free(model);
        return lm::fail_null("out of memory");
    }
    s->model = model;
    s->vocab = llama_model_get_vocab(model);
    s->n_vocab = llama_vocab_n_tokens(s->vocab);
    if (!vocab_only) {
        llama_context_params cp = llama_context_default_params();
        int32_t threads = n_threads > 0 ? n_threads : 1;
        const int32_t cap = lm_max_threads();
        if (cap > 0) {
            threads = std::min(threads, cap);  // more threads than cores near-hang in wasm
        }
        cp.n_ctx = (uint32_t) n_ctx;
        cp.n_batch = (uint32_t) (n_batch > 0 ? n_batch : 512);
        cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
        cp.n_seq_max = (uint32_t) n_seq_max;
        cp.kv_unified = n_seq_max > 1;  // one shared cache: a sequence may use all of n_ctx
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
        cp.no_perf = true;
        cp.swa_full = true;  // a full-size SWA cache: a reused prefix keeps every position
        s->ctx = llama_init_from_model(model, cp);
        if (s->ctx == nullptr) {
            llama_model_free(model);
            delete s;
            return lm::fail_null("llama.cpp could not create a context (n_ctx " +
                                 std::to_string(n_ctx) + ")");
        }
        attach_threadpool(s, threads);
    }
    if (!vocab_only && n_seq_max > 1) {
        s->slots.resize((size_t) n_seq_max);
    }
    return s;
}

void lm_session_free(lm_session * s) {
    if (s == nullptr) {
        return;
    }
    lm::sampling_free(s->samp);
    for (lm::Slot & slot : s->slots) {
        lm::sampling_free(slot.samp);
    }
    // adapters are unset from both contexts before they are freed; the contexts before the model
    if (s->ctx && (!s->active.empty() || s->ctx_mixed)) {
        llama_set_adapters_lora(s->ctx, nullptr, 0, nullptr);
    }
    lm::embed_free(s);  // unsets them from the embedding context, then frees it
    s->active.clear();
    s->active_scales.clear();
    if (s->ctx) {
        if (s->threadpool != nullptr) {
            llama_detach_threadpool(s->ctx);
        }
        llama_free(s->ctx);
        s->ctx = nullptr;
    }
    if (s->threadpool != nullptr) {
        s->threadpool_free(s->threadpool);
        s->threadpool = nullptr;
    }
    for (lm_adapter * a : s->adapters) {
        llama_adapter_lora_free(a->lora);
        delete a;
    }
    s->adapters.clear();
    llama_model_free(s->model);
    delete s;
}

int32_t lm_n_vocab(const lm_session * s) { return s ? s->n_vocab : 0; }
int32_t lm_n_ctx(const lm_session * s) { return (s && s->ctx) ? (int32_t) llama_n_ctx(s->ctx) : 0; }
int32_t lm_n_ctx_train(const lm_session * s) { return s ? llama_model_n_ctx_train(s->model) : 0; }
int32_t lm_n_batch(const lm_session * s) { return (s && s->ctx) ? (int32_t) llama_n_batch(s->ctx) : 0; }

int32_t lm_n_threads(const lm_session * s) { return (s && s->ctx) ? (int32_t) llama_n_threads(s->ctx) : 0; }
int32_t lm_n_embd(const lm_session * s) { return s ? llama_model_n_embd(s->model) : 0; }
int32_t lm_n_layer(const lm_session * s) { return s ? llama_model_n_layer(s->model) : 0; }
double lm_n_params(const lm_session * s) { return s ? (double) llama_model_n_params(s->model) : 0.0; }
double lm_model_size(const lm_session * s) { return s ? (double) llama_model_size(s->model) : 0.0; }
int32_t lm_token_bos(const lm_session * s) { return s ? llama_vocab_bos(s->vocab) : -1; }
int32_t lm_token_eos(const lm_session * s) { return s ? llama_vocab_eos(s->vocab) : -1; }

int32_t lm_model_desc(const lm_session * s, char * buf, int32_t size) {
    lm::begin_call();
    if (s == nullptr || size < 0) {
        return lm::fail(LM_ERR_ARG, "no session, or a negative size");
    }
    char tmp[256];
    llama_model_desc(s->model, tmp, sizeof(tmp));
    return lm::copy_out(tmp, buf, size);
}

int32_t lm_meta_count(const lm_session * s) { return s ? llama_model_meta_count(s->model) : 0; }

int32_t lm_meta_key(const lm_session * s, int32_t i, char * buf, int32_t size) {
    lm::begin_call();
    if (s == nullptr) {
        return lm::fail(LM_ERR_ARG, "no session");
    }
    return meta_str(llama_model_meta_key_by_index, s->model, llama_model_meta_count(s->model), i,
                    buf, size);
}

int32_t lm_meta_val(const lm_session * s, int32_t i, char * buf, int32_t size) {
    lm::begin_call();
    if (s == nullptr) {
        return lm::fail(LM_ERR_ARG, "no session");
    }
    return meta_str(llama_model_meta_val_str_by_index, s->model, llama_model_meta_count(s->model),
                    i, buf, size);
}

}  // extern "C"
