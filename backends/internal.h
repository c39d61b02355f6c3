// Shared by the llamart core's source files: the handle structs and the error helpers.
// Not part of the C API (llamart.h is).
#pragma once

#include "llamart.h"
#include "llama.h"

#include <string>
#include <unordered_map>
#include <vector>

struct lm_adapter {
    llama_adapter_lora * lora = nullptr;
};

namespace lm {

// The repetition penalty, llama_sampler_init_penalties' rule (frequency and presence 0) kept
// here: applied to the window's distinct tokens, not looked up for every vocabulary entry.
struct Penalty {
    int32_t last_n = 0;                // window length; 0 = off
    float repeat = 1.0f;
    std::vector<llama_token> ring;     // the window; once full, the oldest is at `head`
    size_t head = 0;
    std::unordered_map<llama_token, int32_t> count;  // each token's count in the window
};

// One sequence's sampler chain, grammar constraint and repetition penalty (both outside the
// chain, see sampling.cpp) and the candidates buffer reused per token.
struct Sampling {
    llama_sampler * sampler = nullptr;
    llama_sampler * grammar = nullptr;
    Penalty penalty;
    std::vector<llama_token_data> candidates;
    bool greedy = false;       // temperature 0: the argmax (of the penalised logits, if any)
};

// One sequence of a parallel session (slots.cpp): llama.cpp sequence id = its index.
struct Slot {
    std::vector<llama_token> cached;   // tokens whose KV the sequence holds, positions 0..
    std::vector<llama_token> pending;  // prompt tokens still to evaluate (lm_step)
    std::string key;                   // the adapter set its KV was computed under
    bool own = false;                  // lm_slot_adapters: under its own set, not the active one
    std::vector<lm_adapter *> set;     // that set (non-zero scales only) and its scales, key
    std::vector<float> set_scales;
    std::string set_key;
    Sampling samp;
    llama_token sampled = -1;          // sampled, not evaluated yet (the next step evaluates it)
    int32_t logits_row = -1;           // its row in the last decode's logits, -1 none
    bool ready = false;                // prompt evaluated: the next step samples / decodes
};

}  // namespace lm

struct lm_session {
    llama_model * model = nullptr;
    llama_context * ctx = nullptr;
    llama_context * embed_ctx = nullptr;  // embed.cpp's: made on the first lm_embed
    int32_t embed_pooling = 0;            // its pooling type
    const llama_vocab * vocab = nullptr;
    ggml_threadpool * threadpool = nullptr;  // native: ggml's workers, whoever calls (session.cpp)
    void (*threadpool_free)(ggml_threadpool *) = nullptr;
    lm::Sampling samp;                    // the single-sequence API's sampler (sampling.cpp)
    std::vector<lm::Slot> slots;          // n_seq_max > 1: the parallel sequences (slots.cpp)
    std::string active_key;               // the active adapter set as a key ("" = none)
    std::vector<lm_adapter *> adapters;   // every adapter loaded for this session
    std::vector<lm_adapter *> active;     // the set applied on ctx now
    std::vector<float> active_scales;     // their scales
    bool ctx_mixed = false;               // lm_step put the slots' own sets on ctx, not `active`
    int32_t n_past = 0;                   // == cached.size()
    std::vector<llama_token> cached;      // the tokens whose KV the cache holds, positions 0..
    int32_t n_vocab = 0;
    bool have_logits = false;
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
// Sampling state: make the chain (lm_sampler_init's rules), constrain it with a GBNF grammar
// (len 0 removes it), free it; sample one token from logits row idx (-1 the last): the token,
// or -1 with *status an LM_ERR_*; *status LM_EOG when the token ends the generation.
int32_t sampling_init(lm_session * s, Sampling & st, float temperature, int32_t top_k, float top_p,
                      float min_p, float repeat_penalty, int32_t penalty_last_n, int64_t seed);
int32_t set_grammar(lm_session * s, Sampling & st, const char * grammar, int32_t len);
void drop_grammar(Sampling & st);
void sampling_free(Sampling & st);
llama_token sample(lm_session * s, Sampling & st, int32_t idx, int32_t * status);
// Record a token in the sampling history (the penalty's window, the chain's state).
void accept(Sampling & st, llama_token t);
// The key of an adapter set (pointers and scales): equal keys = the same weights.
std::string adapter_key(const std::vector<lm_adapter *> & adapters, const std::vector<float> & scales);
// A parallel session's slots whose KV was computed under an adapter set including a: dropped;
// slots whose own set (lm_slot_adapters) includes a: back to the active set.
void slots_forget_adapter(lm_session * s, const lm_adapter * a);
// The adapter set a slot is prompted, restored and decoded under: its own, else the active one.
inline const std::string & slot_set_key(const lm_session * s, const Slot & slot) {
    return slot.own ? slot.set_key : s->active_key;
}
// adapters.cpp: set the session's active adapters (non-zero scales) on ctx; llama.cpp's code.
int32_t set_active_adapters(lm_session * s, llama_context * ctx);
// adapters.cpp: put on ctx what an lm_step over these slots needs: their one set, or, when
// they differ, every slot's own set at once (llama_set_adapters_lora_seq); LM_OK or LM_ERR_*.
int32_t apply_slot_sets(lm_session * s, const int32_t * ids, int32_t n);
// An adapter's metadata strings (snprintf style), for adapters.cpp.
int32_t meta_key(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size);
int32_t meta_val(const llama_adapter_lora * a, int32_t i, char * buf, int32_t size);
// embed.cpp: set the session's active adapters on the embedding context (if any); unset them
// from it; free it (adapters unset first).
void embed_sync_adapters(lm_session * s);
void embed_unset_adapters(lm_session * s);
void embed_free(lm_session * s);

}  // namespace lm
