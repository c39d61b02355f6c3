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
    const llama_vocab * vocab = nullptr;
    llama_sampler * sampler = nullptr;
    llama_sampler * grammar = nullptr;   // GBNF constraint, outside the chain (see sampling.cpp)
    std::vector<llama_token_data> candidates;  // reused per token when a grammar is set
    std::vector<lm_adapter *> adapters;   // every adapter loaded for this session
    std::vector<lm_adapter *> active;     // the set applied on ctx now
    std::vector<float> active_scales;     // their scales
    int32_t n_past = 0;
    int32_t n_vocab = 0;
    bool have_logits = false;
    bool greedy_only = false;             // sampler is a plain argmax: sample without the chain
};

namespace lm {

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
// Clear the KV cache and the position (lm_reset's body, also used after a failed decode).
void reset_cache(lm_session * s, bool zero_data);
// Free the session's grammar sampler (if any).
void drop_grammar(lm_session * s);
// An adapter's metadata strings (snprintf style), for adapters.cpp.
int32_t meta_key(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size);
int32_t meta_val(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size);

}  // namespace lm
