// llamart C API over llama.h (see llamart.h for the contract and the safety rules).
#include "llamart.h"

#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#ifndef LLAMART_LLAMA_COMMIT
#define LLAMART_LLAMA_COMMIT "unknown"
#endif

struct lm_adapter {
    llama_adapter_lora * lora = nullptr;
};

struct lm_model {
    llama_model * model = nullptr;
    llama_context * ctx = nullptr;
    const llama_vocab * vocab = nullptr;
    llama_sampler * sampler = nullptr;
    std::vector<lm_adapter *> adapters;   // every adapter loaded for this model
    std::vector<lm_adapter *> active;     // the set applied on ctx now
    std::vector<float> active_scales;     // their scales
    int32_t n_past = 0;
    int32_t n_vocab = 0;
    bool have_logits = false;
    bool greedy_only = false;             // sampler is a plain argmax: sample without the chain
};

// ---------------------------------------------------------------- logging

namespace {

std::mutex g_log_mutex;
std::string g_log_pending;   // lines waiting for lm_log_take
std::string g_log_taken;     // what the last lm_log_take returned
std::string g_log_line;      // line being assembled from CONT pieces
int g_log_line_level = 0;
std::string g_errors;        // WARN/ERROR lines since the last clear_error()
std::string g_last_error;    // reason of the last failing call
int g_log_min_level = 2;     // our scale: 0 debug, 1 info, 2 warn, 3 error
bool g_log_installed = false;

int to_lm_level(ggml_log_level level) {
    switch (level) {
        case GGML_LOG_LEVEL_DEBUG: return 0;
        case GGML_LOG_LEVEL_INFO: return 1;
        case GGML_LOG_LEVEL_WARN: return 2;
        case GGML_LOG_LEVEL_ERROR: return 3;
        default: return 1;
    }
}

void flush_line_locked() {
    if (g_log_line.empty()) {
        return;
    }
    while (!g_log_line.empty() && (g_log_line.back() == '\n' || g_log_line.back() == '\r')) {
        g_log_line.pop_back();
    }
    if (g_log_line_level >= 2 && !g_log_line.empty()) {
        if (!g_errors.empty()) {
            g_errors += "\n";
        }
        g_errors += g_log_line;
        if (g_errors.size() > 16384) {
            g_errors.erase(0, g_errors.size() - 16384);
        }
    }
    if (g_log_line_level >= g_log_min_level && !g_log_line.empty() && g_log_pending.size() < (1u << 20)) {
        g_log_pending += std::to_string(g_log_line_level);
        g_log_pending += '\t';
        g_log_pending += g_log_line;
        g_log_pending += '\n';
    }
    g_log_line.clear();
}

void log_callback(ggml_log_level level, const char * text, void * /*user*/) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    if (level != GGML_LOG_LEVEL_CONT) {
        flush_line_locked();
        g_log_line_level = to_lm_level(level);
    }
    g_log_line += text ? text : "";
    if (!g_log_line.empty() && g_log_line.back() == '\n') {
        flush_line_locked();
    }
}

void ensure_log() {
    if (!g_log_installed) {
        llama_log_set(log_callback, nullptr);
        g_log_installed = true;
    }
}

void clear_error() {
    ensure_log();
    std::lock_guard<std::mutex> lock(g_log_mutex);
    flush_line_locked();
    g_errors.clear();
    g_last_error.clear();
}

// Record why a call failed: our own summary, then llama.cpp's log lines from that call.
void set_error(const std::string & what) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    flush_line_locked();
    g_last_error = what;
    if (!g_errors.empty()) {
        if (!g_last_error.empty()) {
            g_last_error += "\n";
        }
        g_last_error += g_errors;
    }
}

int32_t copy_out(const std::string & s, char * buf, int32_t size) {
    const int32_t n = (int32_t) s.size();
    if (buf == nullptr || size < n + 1) {
        return -(n + 1);
    }
    std::memcpy(buf, s.data(), (size_t) n);
    buf[n] = '\0';
    return n;
}

bool owns(const lm_model * m, const lm_adapter * a) {
    return std::find(m->adapters.begin(), m->adapters.end(), a) != m->adapters.end();
}

}  // namespace

extern "C" {

const char * lm_version(void) {
    return "llamart-c 0.1.0; llama.cpp " LLAMART_LLAMA_COMMIT;
}

const char * lm_system_info(void) {
    ensure_log();
    return llama_print_system_info();
}

void lm_log_set_level(int32_t level) {
    ensure_log();
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_log_min_level = std::max(0, std::min(4, (int) level));
}

const char * lm_log_take(void) {
    ensure_log();
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_log_taken.swap(g_log_pending);
    g_log_pending.clear();
    return g_log_taken.c_str();
}

const char * lm_last_error(void) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    return g_last_error.c_str();
}

// ---------------------------------------------------------------- lifecycle

lm_model * lm_model_load(const char * path, int32_t n_ctx, int32_t n_batch, int32_t n_threads,
                         int32_t use_mmap, int32_t vocab_only) {
    clear_error();
    if (path == nullptr || n_ctx < 0 || n_batch < 0) {
        set_error("invalid arguments");
        return nullptr;
    }
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.load_mode = use_mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
    mp.lazy_mode = LLAMA_LAZY_MODE_OFF;
    mp.vocab_only = vocab_only != 0;

    llama_model * model = llama_model_load_from_file(path, mp);
    if (model == nullptr) {
        set_error("llama.cpp could not load the model");
        return nullptr;
    }
    auto * m = new (std::nothrow) lm_model();
    if (m == nullptr) {
        llama_model_free(model);
        set_error("out of memory");
        return nullptr;
    }
    m->model = model;
    m->vocab = llama_model_get_vocab(model);
    m->n_vocab = llama_vocab_n_tokens(m->vocab);
    if (!vocab_only) {
        llama_context_params cp = llama_context_default_params();
        const int32_t threads = n_threads > 0 ? n_threads : 1;
        cp.n_ctx = (uint32_t) n_ctx;
        cp.n_batch = (uint32_t) (n_batch > 0 ? n_batch : 512);
        cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
        cp.n_seq_max = 1;
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
        cp.no_perf = true;
        m->ctx = llama_init_from_model(model, cp);
        if (m->ctx == nullptr) {
            llama_model_free(model);
            delete m;
            set_error("llama.cpp could not create a context (n_ctx " + std::to_string(n_ctx) + ")");
            return nullptr;
        }
    }
    return m;
}

void lm_model_free(lm_model * m) {
    if (m == nullptr) {
        return;
    }
    if (m->sampler) {
        llama_sampler_free(m->sampler);
        m->sampler = nullptr;
    }
    // adapters are unset from the context before they are freed; the context before the model
    if (m->ctx && !m->active.empty()) {
        llama_set_adapters_lora(m->ctx, nullptr, 0, nullptr);
    }
    m->active.clear();
    m->active_scales.clear();
    if (m->ctx) {
        llama_free(m->ctx);
        m->ctx = nullptr;
    }
    for (lm_adapter * a : m->adapters) {
        llama_adapter_lora_free(a->lora);
        delete a;
    }
    m->adapters.clear();
    llama_model_free(m->model);
    delete m;
}

int32_t lm_set_threads(lm_model * m, int32_t n_threads) {
    if (m == nullptr || m->ctx == nullptr || n_threads < 1) {
        return LM_ERR_ARG;
    }
    llama_set_n_threads(m->ctx, n_threads, n_threads);
    return LM_OK;
}

// ---------------------------------------------------------------- model facts

int32_t lm_n_vocab(const lm_model * m) { return m ? m->n_vocab : 0; }
int32_t lm_n_ctx(const lm_model * m) { return (m && m->ctx) ? (int32_t) llama_n_ctx(m->ctx) : 0; }
int32_t lm_n_ctx_train(const lm_model * m) { return m ? llama_model_n_ctx_train(m->model) : 0; }
int32_t lm_n_batch(const lm_model * m) { return (m && m->ctx) ? (int32_t) llama_n_batch(m->ctx) : 0; }
int32_t lm_n_embd(const lm_model * m) { return m ? llama_model_n_embd(m->model) : 0; }
int32_t lm_n_layer(const lm_model * m) { return m ? llama_model_n_layer(m->model) : 0; }
double lm_n_params(const lm_model * m) { return m ? (double) llama_model_n_params(m->model) : 0.0; }
double lm_model_size(const lm_model * m) { return m ? (double) llama_model_size(m->model) : 0.0; }

int32_t lm_model_desc(const lm_model * m, char * buf, int32_t size) {
    if (m == nullptr) {
        return LM_ERR_ARG;
    }
    char tmp[256];
    llama_model_desc(m->model, tmp, sizeof(tmp));
    return copy_out(tmp, buf, size);
}

int32_t lm_meta_count(const lm_model * m) { return m ? llama_model_meta_count(m->model) : 0; }

static int32_t meta_str(int32_t (*fn)(const llama_model *, int32_t, char *, size_t),
                        const lm_model * m, int32_t i, char * buf, int32_t size) {
    if (m == nullptr || i < 0 || i >= llama_model_meta_count(m->model)) {
        return LM_ERR_ARG;
    }
    const int32_t n = fn(m->model, i, nullptr, 0);
    if (n < 0) {
        return LM_ERR_ARG;
    }
    if (buf == nullptr || size < n + 1) {
        return -(n + 1);
    }
    fn(m->model, i, buf, (size_t) size);
    return n;
}

int32_t lm_meta_key(const lm_model * m, int32_t i, char * buf, int32_t size) {
    return meta_str(llama_model_meta_key_by_index, m, i, buf, size);
}

int32_t lm_meta_val(const lm_model * m, int32_t i, char * buf, int32_t size) {
    return meta_str(llama_model_meta_val_str_by_index, m, i, buf, size);
}

int32_t lm_token_bos(const lm_model * m) { return m ? llama_vocab_bos(m->vocab) : -1; }
int32_t lm_token_eos(const lm_model * m) { return m ? llama_vocab_eos(m->vocab) : -1; }

// ---------------------------------------------------------------- text

int32_t lm_tokenize(const lm_model * m, const char * text, int32_t text_len, int32_t * tokens,
                    int32_t n_max, int32_t add_special, int32_t parse_special) {
    if (m == nullptr || text_len < 0 || (text == nullptr && text_len > 0) || n_max < 0) {
        return LM_ERR_ARG;
    }
    const int32_t n = llama_tokenize(m->vocab, text ? text : "", text_len, tokens, n_max,
                                     add_special != 0, parse_special != 0);
    if (n == INT32_MIN) {
        return LM_ERR_ARG;  // overflow of int32 token count
    }
    return n;  // negative: -(tokens needed)
}

int32_t lm_token_to_piece(const lm_model * m, int32_t token, char * buf, int32_t size, int32_t special) {
    if (m == nullptr || token < 0 || token >= m->n_vocab || size < 0) {
        return LM_ERR_ARG;
    }
    return llama_token_to_piece(m->vocab, token, buf, size, 0, special != 0);
}

int32_t lm_detokenize(const lm_model * m, const int32_t * tokens, int32_t n_tokens, char * buf,
                      int32_t size, int32_t remove_special, int32_t unparse_special) {
    if (m == nullptr || n_tokens < 0 || size < 0 || (tokens == nullptr && n_tokens > 0)) {
        return LM_ERR_ARG;
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->n_vocab) {
            return LM_ERR_ARG;
        }
    }
    // A leading BOS is dropped and, like any first piece, loses the tokenizer's space prefix,
    // so that detokenize(tokenize(text, add_special)) == text for SentencePiece vocabularies.
    if (n_tokens > 0 && tokens[0] == llama_vocab_bos(m->vocab) && llama_vocab_get_add_bos(m->vocab)) {
        tokens++;
        n_tokens--;
    }
    return llama_detokenize(m->vocab, tokens, n_tokens, buf, size, remove_special != 0,
                            unparse_special != 0);
}

int32_t lm_chat_apply(const lm_model * m, const char * tmpl, const char ** roles,
                      const char ** contents, int32_t n_msg, int32_t add_assistant, char * buf,
                      int32_t size) {
    clear_error();
    if (m == nullptr || n_msg < 0 || size < 0 || (n_msg > 0 && (roles == nullptr || contents == nullptr))) {
        return LM_ERR_ARG;
    }
    const char * t = tmpl ? tmpl : llama_model_chat_template(m->model, nullptr);
    if (t == nullptr) {
        set_error("the model has no chat template");
        return LM_ERR_TEMPLATE;
    }
    std::vector<llama_chat_message> msgs((size_t) n_msg);
    for (int32_t i = 0; i < n_msg; i++) {
        if (roles[i] == nullptr || contents[i] == nullptr) {
            return LM_ERR_ARG;
        }
        msgs[(size_t) i] = {roles[i], contents[i]};
    }
    const int32_t n = llama_chat_apply_template(t, msgs.data(), msgs.size(), add_assistant != 0,
                                                buf, size);
    if (n < 0) {
        set_error("llama.cpp does not know the model's chat template (only built-in templates are supported)");
        return LM_ERR_TEMPLATE;
    }
    if (n + 1 > size) {
        return -(n + 1);
    }
    buf[n] = '\0';
    return n;
}

// ---------------------------------------------------------------- evaluation

void lm_reset(lm_model * m) {
    if (m == nullptr || m->ctx == nullptr) {
        return;
    }
    // data=false: cells are freed and masked out, their stale contents are never read (as in
    // llama-server); zeroing the whole buffer cost ~30 ms per reset on a 400 MB model
    llama_memory_clear(llama_get_memory(m->ctx), false);
    m->n_past = 0;
    m->have_logits = false;
}

int32_t lm_n_past(const lm_model * m) { return m ? m->n_past : 0; }

int32_t lm_eval(lm_model * m, const int32_t * tokens, int32_t n_tokens) {
    clear_error();
    if (m == nullptr || m->ctx == nullptr || n_tokens < 0 || (tokens == nullptr && n_tokens > 0)) {
        set_error("no context to evaluate in");
        return LM_ERR_ARG;
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->n_vocab) {
            set_error("token " + std::to_string(tokens[i]) + " is outside the vocabulary (0.." +
                      std::to_string(m->n_vocab - 1) + ")");
            return LM_ERR_ARG;
        }
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(m->ctx);
    if (n_tokens > n_ctx - m->n_past) {
        set_error(std::to_string(m->n_past + n_tokens) + " tokens do not fit in the context of " +
                  std::to_string(n_ctx));
        return LM_ERR_CONTEXT;
    }
    const int32_t n_batch = (int32_t) llama_n_batch(m->ctx);
    std::vector<llama_token> chunk;
    for (int32_t i = 0; i < n_tokens; i += n_batch) {
        const int32_t n = std::min(n_batch, n_tokens - i);
        chunk.assign(tokens + i, tokens + i + n);
        const int32_t rc = llama_decode(m->ctx, llama_batch_get_one(chunk.data(), n));
        if (rc != 0) {
            // a failed decode leaves the cache in an unknown state: start over next time
            llama_memory_clear(llama_get_memory(m->ctx), true);
            m->n_past = 0;
            m->have_logits = false;
            set_error("llama_decode failed (" + std::to_string(rc) + ")");
            return rc == 1 ? LM_ERR_CONTEXT : LM_ERR_DECODE;
        }
        m->n_past += n;
        m->have_logits = true;
    }
    return LM_OK;
}

const float * lm_logits(lm_model * m) {
    if (m == nullptr || m->ctx == nullptr || !m->have_logits) {
        return nullptr;
    }
    return llama_get_logits_ith(m->ctx, -1);
}

// ---------------------------------------------------------------- sampling

int32_t lm_sampler_init(lm_model * m, float temperature, int32_t top_k, float top_p, float min_p,
                        float repeat_penalty, int32_t penalty_last_n, int64_t seed) {
    if (m == nullptr || m->ctx == nullptr || !std::isfinite(temperature) || !std::isfinite(top_p) ||
        !std::isfinite(min_p) || !(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty)) {
        return LM_ERR_ARG;
    }
    if (m->sampler) {
        llama_sampler_free(m->sampler);
        m->sampler = nullptr;
    }
    llama_sampler * chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (repeat_penalty != 1.0f && penalty_last_n != 0) {
        llama_sampler_chain_add(chain, llama_sampler_init_penalties(
            m->n_vocab, penalty_last_n < 0 ? m->n_vocab : penalty_last_n, repeat_penalty, 0.0f, 0.0f));
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
        const uint32_t s = seed < 0 ? std::random_device{}() : (uint32_t) (seed & 0xffffffff);
        llama_sampler_chain_add(chain, llama_sampler_init_dist(s));
    }
    m->sampler = chain;
    m->greedy_only = temperature <= 0.0f && !(repeat_penalty != 1.0f && penalty_last_n != 0);
    return LM_OK;
}

void lm_sampler_accept(lm_model * m, const int32_t * tokens, int32_t n_tokens) {
    if (m == nullptr || m->sampler == nullptr || tokens == nullptr) {
        return;
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (tokens[i] >= 0 && tokens[i] < m->n_vocab) {
            llama_sampler_accept(m->sampler, tokens[i]);
        }
    }
}

// First maximum of logits[0..n) (the token llama_sampler_init_greedy picks), in one
// branch-free pass over 4-float vectors (GCC/clang vector extensions: SSE natively, SIMD128 in
// WebAssembly): each lane keeps its first maximum and that index, then the lanes are merged
// (largest value, smallest index on ties).  NaN logits never win; all NaN gives token 0.
typedef float   lm_v4f __attribute__((vector_size(16)));
typedef int32_t lm_v4i __attribute__((vector_size(16)));

static llama_token argmax(const float * logits, int32_t n) {
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

static llama_token sample_one(lm_model * m) {
    if (m->greedy_only) {
        // the argmax straight over the logits: the chain would copy n_vocab candidates per token
        const float * logits = llama_get_logits_ith(m->ctx, -1);
        return logits == nullptr ? -1 : argmax(logits, m->n_vocab);
    }
    // llama_sampler_sample also accepts the token into the sampler's history
    return llama_sampler_sample(m->sampler, m->ctx, -1);
}

int32_t lm_generate(lm_model * m, int32_t max_n, int32_t eval_last, int32_t * tokens,
                    int32_t * status, int32_t * cancel) {
    if (status == nullptr || tokens == nullptr || max_n < 0) {
        return LM_ERR_ARG;
    }
    *status = LM_OK;
    if (m == nullptr || m->ctx == nullptr || m->sampler == nullptr || !m->have_logits) {
        return LM_ERR_STATE;
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(m->ctx);
    int32_t n = 0;
    while (n < max_n) {
        // consumed on read, so a stale request is reported once and the caller decides
        if (cancel != nullptr && __atomic_exchange_n(cancel, 0, __ATOMIC_ACQ_REL) != 0) {
            *status = LM_CANCELLED;
            return n;
        }
        const llama_token tok = sample_one(m);
        if (tok < 0 || tok >= m->n_vocab) {
            *status = LM_ERR_DECODE;
            return n;
        }
        if (llama_vocab_is_eog(m->vocab, tok)) {
            *status = LM_EOG;
            return n;
        }
        tokens[n++] = tok;
        if (n == max_n && !eval_last) {
            break;
        }
        if (m->n_past >= n_ctx) {
            *status = LM_ERR_CONTEXT;
            return n;
        }
        llama_token t = tok;
        const int32_t rc = llama_decode(m->ctx, llama_batch_get_one(&t, 1));
        if (rc != 0) {
            clear_error();
            set_error("llama_decode failed (" + std::to_string(rc) + ")");
            m->have_logits = false;
            *status = LM_ERR_DECODE;  // tokens[n - 1] was sampled but not evaluated
            return n;
        }
        m->n_past += 1;
    }
    return n;
}

// ---------------------------------------------------------------- LoRA adapters

lm_adapter * lm_adapter_load(lm_model * m, const char * path) {
    clear_error();
    if (m == nullptr || path == nullptr) {
        set_error("invalid arguments");
        return nullptr;
    }
    llama_adapter_lora * lora = llama_adapter_lora_init(m->model, path);
    if (lora == nullptr) {
        set_error("");
        return nullptr;
    }
    auto * a = new (std::nothrow) lm_adapter();
    if (a == nullptr) {
        llama_adapter_lora_free(lora);
        set_error("out of memory");
        return nullptr;
    }
    a->lora = lora;
    m->adapters.push_back(a);
    return a;
}

void lm_adapter_free(lm_model * m, lm_adapter * a) {
    if (m == nullptr || a == nullptr || !owns(m, a)) {
        return;  // unknown or already freed (e.g. with its model): nothing to do
    }
    auto it = std::find(m->active.begin(), m->active.end(), a);
    if (it != m->active.end()) {
        // unset it first (freeing an adapter still set on a context aborts); keep the others
        std::vector<lm_adapter *> rest;
        std::vector<float> rest_scales;
        for (size_t i = 0; i < m->active.size(); i++) {
            if (m->active[i] != a) {
                rest.push_back(m->active[i]);
                rest_scales.push_back(m->active_scales[i]);
            }
        }
        if (lm_adapters_apply(m, rest.data(), rest_scales.data(), (int32_t) rest.size()) != LM_OK) {
            llama_set_adapters_lora(m->ctx, nullptr, 0, nullptr);
            m->active.clear();
            m->active_scales.clear();
            lm_reset(m);
        }
    }
    m->adapters.erase(std::find(m->adapters.begin(), m->adapters.end(), a));
    llama_adapter_lora_free(a->lora);
    delete a;
}

int32_t lm_adapters_apply(lm_model * m, lm_adapter ** adapters, const float * scales, int32_t n) {
    clear_error();
    if (m == nullptr || m->ctx == nullptr || n < 0 || (n > 0 && (adapters == nullptr || scales == nullptr))) {
        set_error("invalid arguments");
        return LM_ERR_ARG;
    }
    std::vector<llama_adapter_lora *> loras;
    std::vector<float> sc;
    std::vector<lm_adapter *> active;
    for (int32_t i = 0; i < n; i++) {
        if (adapters[i] == nullptr || !owns(m, adapters[i]) || !std::isfinite(scales[i])) {
            set_error("adapter " + std::to_string(i) + " does not belong to this model or has a bad scale");
            return LM_ERR_ARG;
        }
        active.push_back(adapters[i]);
        if (scales[i] != 0.0f) {
            loras.push_back(adapters[i]->lora);
            sc.push_back(scales[i]);
        }
    }
    const int32_t rc = loras.empty()
        ? llama_set_adapters_lora(m->ctx, nullptr, 0, nullptr)
        : llama_set_adapters_lora(m->ctx, loras.data(), loras.size(), sc.data());
    if (rc != 0) {
        set_error("llama_set_adapters_lora failed (" + std::to_string(rc) + ")");
        return LM_ERR_ARG;
    }
    m->active = active;
    m->active_scales.assign(scales, scales + n);
    lm_reset(m);  // nothing computed under the old set is reused
    return LM_OK;
}

int32_t lm_adapter_meta_count(const lm_adapter * a) {
    return a ? llama_adapter_meta_count(a->lora) : 0;
}

static int32_t adapter_meta_str(int32_t (*fn)(const llama_adapter_lora *, int32_t, char *, size_t),
                                const lm_adapter * a, int32_t i, char * buf, int32_t size) {
    if (a == nullptr || i < 0 || i >= llama_adapter_meta_count(a->lora)) {
        return LM_ERR_ARG;
    }
    const int32_t n = fn(a->lora, i, nullptr, 0);
    if (n < 0) {
        return LM_ERR_ARG;
    }
    if (buf == nullptr || size < n + 1) {
        return -(n + 1);
    }
    fn(a->lora, i, buf, (size_t) size);
    return n;
}

int32_t lm_adapter_meta_key(const lm_adapter * a, int32_t i, char * buf, int32_t size) {
    return adapter_meta_str(llama_adapter_meta_key_by_index, a, i, buf, size);
}

int32_t lm_adapter_meta_val(const lm_adapter * a, int32_t i, char * buf, int32_t size) {
    return adapter_meta_str(llama_adapter_meta_val_str_by_index, a, i, buf, size);
}

int32_t lm_adapter_alora_n_invocation_tokens(const lm_adapter * a) {
    return a ? (int32_t) llama_adapter_get_alora_n_invocation_tokens(a->lora) : 0;
}

// ---------------------------------------------------------------- GGUF validation helper

int32_t lm_gguf_scan_strings(const uint8_t * buf, int32_t size, int32_t n, int32_t max_len,
                             int32_t unique) {
    if (buf == nullptr || size < 0 || n < 0 || max_len < 0) {
        return LM_ERR_ARG;
    }
    if (n > size / 8) {
        return LM_ERR_BUFFER;  // each string takes 8 bytes at least
    }
    if (unique && n > (1 << 21)) {
        return LM_ERR_ARG;  // beyond any real vocabulary: the Python walk decides
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
            return LM_ERR_BUFFER;
        }
        uint64_t len = 0;  // little-endian whatever the host
        for (int b = 7; b >= 0; b--) {
            len = (len << 8) | buf[pos + b];
        }
        pos += 8;
        if (len > (uint64_t) max_len) {
            return LM_ERR_ARG;
        }
        if ((uint64_t) (size - pos) < len) {
            return LM_ERR_BUFFER;
        }
        if (unique) {
            if (len == 0) {
                return LM_ERR_ARG;
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
                    return LM_ERR_ARG;  // the same text twice
                }
            }
        }
        pos += (int64_t) len;
    }
    return (int32_t) pos;  // <= size
}

// ---------------------------------------------------------------- memory helpers

void * lm_malloc(int32_t size) { return size > 0 ? std::malloc((size_t) size) : nullptr; }
void lm_free(void * p) { std::free(p); }

}  // extern "C"
