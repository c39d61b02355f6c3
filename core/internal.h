// Shared by the llamart core's source files: the handle structs and the error helpers.
// Not part of the C API (llamart.h is).
#pragma once

#include "llamart.h"
#include "llama.h"

#include <string>
#include <vector>

struct lm_adapter {
    llama_adapter_lora * lora = nullptr;
};

struct lm_session {
    llama_model * model = nullptr;
    llama_context * ctx = nullptr;
    llama_context * embed_ctx = nullptr;  // embed.cpp's: made on the first lm_embed
    int32_t embed_pooling = 0;            // its pooling type
    const llama_vocab * vocab = nullptr;
    llama_sampler * sampler = nullptr;
    llama_sampler * grammar = nullptr;   // GBNF constraint, outside the chain (see sampling.cpp)
    std::vector<llama_token_data> candidates;  // reused per token when a grammar is set
    std::vector<lm_adapter *> adapters;   // every adapter loaded for this session
    std::vector<lm_adapter *> active;     // the set applied on ctx now
    std::vector<float> active_scales;     // their scales
    int32_t n_past = 0;                   // == cached.size()
    std::vector<llama_token> cached;      // the tokens whose KV the cache holds, positions 0..
    int32_t n_vocab = 0;
    bool have_logits = false;
    bool greedy_only = false;             // sampler is a plain argmax: sample without the chain
};

namespace lm {

// Load ggml's CPU backend variants once (runtime dispatch builds; a no-op otherwise).
void ensure_backends();
// The CPU variant picked ("zen4", ...), "" without runtime dispatch; why it was picked; and,
// non-empty when no variant could be loaded (LLAMART_CPU_VARIANT unknown or unusable), why.
const std::string & cpu_variant();
const std::string & cpu_variant_reason();
const std::string & cpu_error();
// Log one line of ours (level 0 debug .. 3 error) as llama.cpp's lines are logged.
void log_line(int level, const std::string & text);
// While alive, llama.cpp warnings on this thread containing `needle` are logged as info (a
// warning we cause on purpose, e.g. asking for a pooling type the model does not name).
struct ExpectedLog {
    explicit ExpectedLog(const char * needle);
    ~ExpectedLog();
};
// Start of every call that can fail: installs the log hook once, clears this thread's reason.
void begin_call();
// Record why this call failed (our summary, then llama.cpp's log lines since begin_call) and
// return code (or nullptr, for the pointer-returning calls).
int32_t fail(int32_t code, const std::string & what);
std::nullptr_t fail_null(const std::string & what);
// Copy s out the snprintf way: returns s.size(); writes (truncated, NUL-terminated) when size > 0.
int32_t copy_out(const std::string & s, char * buf, int32_t size);
// A token id inside the vocabulary of s.
inline bool in_vocab(const lm_session * s, int32_t t) { return t >= 0 && t < s->n_vocab; }
// "token 7 is outside the vocabulary (0..99)"
std::string outside_vocab(const lm_session * s, int32_t t);
// Evaluate tokens at the current position in n_batch-sized decodes (checked by the caller),
// recording them in s->cached; a failed decode clears the cache.
int32_t decode_tokens(lm_session * s, const llama_token * tokens, int32_t n_tokens);
// Clear the KV cache and the position (lm_reset's body, also used after a failed decode).
void reset_cache(lm_session * s, bool zero_data);
// Free the session's grammar sampler (if any).
void drop_grammar(lm_session * s);
// An adapter's metadata strings (snprintf style), for adapters.cpp.
int32_t meta_key(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size);
int32_t meta_val(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size);
// embed.cpp: set the session's active adapters on the embedding context (if any); unset them
// from it; free it (adapters unset first).
void embed_sync_adapters(lm_session * s);
void embed_unset_adapters(lm_session * s);
void embed_free(lm_session * s);

}  // namespace lm
