/*
 * llamart C API: a small, flat layer over llama.h, compiled natively (cffi) and to
 * WebAssembly (emscripten).  Python sees llama.cpp only through these calls, made by one client
 * (llamart/backends/client.py) over either FFI.
 *
 * Rules this layer enforces so that no call sequence can abort the process:
 *   - prompts are split into n_batch-sized decodes; tokens are checked against the vocab;
 *     a decode that would pass n_ctx is refused (LM_ERR_CONTEXT) before llama.cpp sees it;
 *   - a session owns its model, context, sampler and adapters: freeing an adapter unsets it
 *     from the context first, and lm_session_free unsets and frees every adapter before the
 *     context and the model;
 *   - llama_set_adapters_lora is only ever called with a consistent (pointer, count) pair.
 *
 * Errors: a failing call returns NULL or a negative LM_ERR_* code, and lm_last_error() then
 * holds its reason (our summary, then llama.cpp's WARN/ERROR log lines from that call).  The
 * reason is per thread; every call that can fail clears it when it starts.
 * Sizes never share a number space with error codes: a call that copies out a string returns
 * its full length in bytes the snprintf way (it wrote it, NUL-terminated, when that length is
 * < size; else call again with length + 1 bytes), so "" is 0; lm_tokenize returns the number of
 * tokens (written when <= n_max).  Negative returns are always LM_ERR_* codes.  (buf, size) are
 * always the last two arguments.
 * Logging: llama.cpp's log is buffered here; lm_log_take() drains it (both platforms poll,
 * so no callback has to cross from C into Python).
 *
 * The source is split by topic beside this header (session.cpp, text.cpp, eval.cpp,
 * sampling.cpp, grammar.cpp, adapters.cpp, embed.cpp, gguf_scan.cpp, cpu_backends.cpp,
 * errors.cpp, common_support.cpp; internal.h holds the shared structs).
 * Everything between the CDEF markers is plain C that cffi parses directly: keep it free of
 * preprocessor lines and macros other than LM_API (stripped by the Python loader).
 */
#ifndef LLAMART_H
#define LLAMART_H

#include <stdint.h>

#if defined(__EMSCRIPTEN__)
#  include <emscripten/emscripten.h>
#  define LM_API EMSCRIPTEN_KEEPALIVE
#elif defined(_WIN32)
#  define LM_API __declspec(dllexport)
#else
#  define LM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* LLAMART_CDEF_BEGIN */
typedef struct lm_session lm_session;   /* a model + its context + sampler + adapters */
typedef struct lm_adapter lm_adapter;   /* a LoRA adapter, owned by its session */

enum {
    LM_OK              =  0,
    LM_ERR_ARG         = -1,  /* bad argument (NULL, out of range, token outside the vocab) */
    LM_ERR_CONTEXT     = -2,  /* would not fit in the context window */
    LM_ERR_DECODE      = -3,  /* llama_decode failed */
    LM_ERR_ALLOC       = -4,  /* out of memory */
    LM_ERR_BUFFER      = -5,  /* lm_gguf_scan_strings: the strings run past the buffer */
    LM_ERR_STATE       = -7,  /* call made in the wrong state (e.g. sampling before any eval) */
    LM_ERR_UNSUPPORTED = -8,  /* this build has not got the feature (see lm_capabilities) */
    LM_ERR_GRAMMAR     = -9,  /* a GBNF grammar or JSON schema refused, or no token continues it */
    LM_EOG             =  1,  /* status of lm_generate: an end-of-generation token was sampled */
    LM_CANCELLED       =  2   /* status of lm_generate: stopped on a cancel request */
};

/* lm_capabilities() bits, decided when the library was compiled */
enum {
    LM_CAP_LORA    = 1,  /* LoRA adapters (not in the WebAssembly build) */
    LM_CAP_THREADS = 2,  /* n_threads > 1 is honoured (native; WebAssembly with pthreads) */
    LM_CAP_MMAP    = 4,  /* models can be memory-mapped (not in WebAssembly) */
    LM_CAP_EMBEDDINGS = 8,  /* lm_embed (every build) */
    LM_CAP_GRAMMAR = 16,  /* GBNF-constrained sampling (lm_sampler_set_grammar) */
    LM_CAP_JSON_SCHEMA = 32  /* lm_json_schema_to_grammar (llama.cpp's common/ converter) */
};

/* lm_embed pooling types (llama.cpp's enum llama_pooling_type values, but MODEL) */
enum {
    LM_POOLING_MODEL = -1,  /* the GGUF's <arch>.pooling_type; mean when it has none (or "none") */
    LM_POOLING_MEAN  =  1,  /* the mean of the text's final hidden states */
    LM_POOLING_CLS   =  2,  /* the first token's */
    LM_POOLING_LAST  =  3   /* the last token's */
};

/* ---- version, capabilities, logging, errors ---- */
LM_API const char * lm_version(void);            /* the llamart release, e.g. "0.2.0" */
LM_API int32_t      lm_abi_version(void);        /* bumped whenever this header changes */
LM_API int32_t      lm_capabilities(void);       /* LM_CAP_* bits */
LM_API int32_t      lm_max_threads(void);        /* n_threads is capped at this: 1 single-threaded WebAssembly, the cores the runtime reports with pthreads; 0 = no cap (native) */
LM_API const char * lm_system_info(void);        /* "CPU_VARIANT = zen4 | CPU_VARIANT_REASON = ... | " (runtime dispatch builds; CPU_VARIANT_ERROR = ... when none loads) + llama_print_system_info() */
/* Runtime dispatch builds: one line per CPU variant beside the library, best first,
   "name\tscore\tstatus\n" (status: picked, probe failed: <why>, not supported..., not probed);
   "" without runtime dispatch.  snprintf style. */
LM_API int32_t      lm_cpu_variants(char * buf, int32_t size);
LM_API void         lm_log_set_level(int32_t level);  /* 0 debug,1 info,2 warn,3 error; lower dropped */
LM_API const char * lm_log_take(void);           /* pending lines "L\ttext\n" (L = 0..3); valid until this thread's next call */
LM_API const char * lm_last_error(void);         /* this thread's reason for its last failing call ("" if none) */

/* ---- session lifecycle ---- */
/* n_ctx 0 = model's training context; n_threads <= 0 = 1, capped at lm_max_threads().
   use_mmap is ignored without LM_CAP_MMAP. */
LM_API lm_session * lm_session_load(const char * path, int32_t n_ctx, int32_t n_batch,
                                    int32_t n_threads, int32_t use_mmap, int32_t vocab_only);
/* lm_session_load with n_seq_max: 1 = the single-sequence API below; 2..256 = a parallel
   session, n_seq_max slots sharing one KV cache of n_ctx cells, driven by the lm_slot_* calls
   and lm_step (the single-sequence eval/generate calls are refused). */
LM_API lm_session * lm_session_load_ex(const char * path, int32_t n_ctx, int32_t n_batch,
                                       int32_t n_threads, int32_t use_mmap, int32_t vocab_only,
                                       int32_t n_seq_max);
LM_API void         lm_session_free(lm_session * s);  /* unsets+frees adapters, then contexts, then model; NULL ok */

/* ---- model facts (0 / -1 for a NULL session) ---- */
LM_API int32_t  lm_n_vocab(const lm_session * s);
LM_API int32_t  lm_n_ctx(const lm_session * s);        /* context actually allocated (0 when vocab_only) */
LM_API int32_t  lm_n_ctx_train(const lm_session * s);
LM_API int32_t  lm_n_batch(const lm_session * s);
LM_API int32_t  lm_n_threads(const lm_session * s);    /* threads the context computes with (0 when vocab_only) */
LM_API int32_t  lm_n_embd(const lm_session * s);
LM_API int32_t  lm_n_layer(const lm_session * s);
LM_API double   lm_n_params(const lm_session * s);     /* double: exact below 2^53, and JS-friendly */
LM_API double   lm_model_size(const lm_session * s);   /* bytes of tensor data */
LM_API int32_t  lm_token_bos(const lm_session * s);
LM_API int32_t  lm_token_eos(const lm_session * s);
/* strings, snprintf style (see the top of this file) */
LM_API int32_t  lm_model_desc(const lm_session * s, char * buf, int32_t size);
LM_API int32_t  lm_meta_count(const lm_session * s);
LM_API int32_t  lm_meta_key(const lm_session * s, int32_t i, char * buf, int32_t size);
LM_API int32_t  lm_meta_val(const lm_session * s, int32_t i, char * buf, int32_t size);

/* ---- text <-> tokens (string lengths in bytes; no NUL terminator needed) ---- */
/* Returns the number of tokens; they were written when it is <= n_max. */
LM_API int32_t lm_tokenize(const lm_session * s, const char * text, int32_t text_len,
                           int32_t * tokens, int32_t n_max, int32_t add_special, int32_t parse_special);
/* One token's piece (may be a partial UTF-8 sequence), snprintf style. */
LM_API int32_t lm_token_to_piece(const lm_session * s, int32_t token, int32_t special,
                                 char * buf, int32_t size);
LM_API int32_t lm_detokenize(const lm_session * s, const int32_t * tokens, int32_t n_tokens,
                             int32_t remove_special, int32_t unparse_special, char * buf, int32_t size);

/* ---- evaluation ---- */
LM_API void    lm_reset(lm_session * s);               /* clear the KV cache: position 0 */
/* Evaluate tokens at the current position, split into n_batch decodes.  Checks every token
   against the vocab and n_past + n_tokens <= n_ctx first.  Logits of the last token kept. */
LM_API int32_t lm_eval(lm_session * s, const int32_t * tokens, int32_t n_tokens);
/* Evaluate a whole prompt from position 0, reusing the cached prefix: only the tokens after the
   longest prefix it shares with what the KV cache holds are decoded (at least the last one, for
   its logits, unless the prompt is exactly what was last evaluated: then nothing is).  The cache only ever holds what was evaluated under the active adapter set
   (lm_adapters_apply clears it), so a reused prefix is always one computed under that set.
   Falls back to a full evaluation where the memory cannot drop a suffix (recurrent models).
   Returns the number of prompt tokens reused (>= 0), or LM_ERR_*; n_tokens must be >= 1 and
   <= n_ctx, checked before anything changes. */
LM_API int32_t lm_eval_prompt(lm_session * s, const int32_t * tokens, int32_t n_tokens);
LM_API const float * lm_logits(lm_session * s);        /* n_vocab floats after the last eval, or NULL */

/* ---- sampling (in C: no logits copy per token) ---- */
/* temperature <= 0 is greedy.  top_k <= 0, top_p >= 1, min_p <= 0, repeat_penalty == 1 disable
   those stages.  seed < 0 picks a random seed. Resets the sampler state. */
LM_API int32_t lm_sampler_init(lm_session * s, float temperature, int32_t top_k, float top_p,
                               float min_p, float repeat_penalty, int32_t penalty_last_n,
                               int64_t seed);
/* Feed prompt tokens to the sampler's history (repeat penalty) without evaluating them. */
LM_API int32_t lm_sampler_accept(lm_session * s, const int32_t * tokens, int32_t n_tokens);
/* Sample up to max_n tokens into tokens[], evaluating each one (the last one only when eval_last
   is non-zero): the streaming loop's step, one crossing for several tokens.  Returns how many
   were written, or a negative LM_ERR_* when nothing could start (no logits yet: LM_ERR_STATE).
   *status says why it stopped: LM_OK (max_n reached); LM_EOG (an end-of-generation token was
   sampled: not written, not evaluated); LM_ERR_CONTEXT (the context is full: the last token
   written was not evaluated); LM_ERR_DECODE (llama_decode failed on the last token written,
   reason in lm_last_error); LM_CANCELLED (*cancel was non-zero before a token; it is reset to
   0, so another thread can set it during the call).  cancel may be NULL.
   A greedy sampler (temperature <= 0, no penalties) takes the argmax without the chain.
   With a grammar set, every token is one the grammar allows (an end-of-generation token only
   where it may end); *status is LM_ERR_GRAMMAR when it allows no token of the vocabulary. */
LM_API int32_t lm_generate(lm_session * s, int32_t max_n, int32_t eval_last, int32_t * tokens,
                           int32_t * status, int32_t * cancel);

/* ---- structured output (grammar.cpp; LM_ERR_UNSUPPORTED without LM_CAP_GRAMMAR) ---- */
/* Check a GBNF grammar (start rule "root") for this session's vocabulary without using it:
   LM_OK, or LM_ERR_GRAMMAR with llama.cpp's parser message in lm_last_error. */
LM_API int32_t lm_grammar_check(const lm_session * s, const char * grammar, int32_t len);
/* Constrain the sampler made by the last lm_sampler_init with a GBNF grammar (checked as by
   lm_grammar_check); len 0 removes it.  lm_sampler_init removes it too.  The grammar starts
   at the first generated token (prompt tokens never reach it). */
LM_API int32_t lm_sampler_set_grammar(lm_session * s, const char * grammar, int32_t len);
/* Whether text (UTF-8, no NUL) is a whole sentence of the grammar, by llama.cpp's own matcher:
   1 yes, 0 no, or LM_ERR_GRAMMAR for a grammar lm_grammar_check refuses. */
LM_API int32_t lm_grammar_match(const lm_session * s, const char * grammar, int32_t len,
                                const char * text, int32_t text_len);
/* A JSON schema (JSON text) as a GBNF grammar, by llama.cpp's json-schema-to-grammar,
   snprintf style.  LM_ERR_GRAMMAR with the converter's message for invalid JSON or a schema
   feature it does not support. */
LM_API int32_t lm_json_schema_to_grammar(const char * schema, int32_t len, char * buf, int32_t size);

/* ---- LoRA adapters (LM_ERR_UNSUPPORTED / NULL without LM_CAP_LORA) ---- */
/* Load an adapter for this session's model (NULL + lm_last_error on failure).  Not applied yet. */
LM_API lm_adapter * lm_adapter_load(lm_session * s, const char * path);
/* Unset it from the context if active, then free it.  NULL, or an adapter already freed with
   its session, is a no-op. */
LM_API void    lm_adapter_free(lm_session * s, lm_adapter * a);
/* Replace the whole active set with these adapters and scales (n 0 = none).  Every adapter must
   belong to s.  Clears the KV cache (nothing computed under the old set is reused). */
LM_API int32_t lm_adapters_apply(lm_session * s, lm_adapter ** adapters, const float * scales, int32_t n);
/* Give a parallel session's slot its own adapter set (n 0: the base model).  It is then
   prompted, restored and decoded under that set whatever the active one is, and lm_step
   decodes slots under different sets in one batch, each token under its slot's set (llama.cpp
   patched: cmake/patches/llama-seq-lora-scales.patch), exactly as that set alone would.
   Without LM_CAP_LORA only n 0 is accepted. */
LM_API int32_t lm_slot_adapters(lm_session * s, int32_t slot, lm_adapter ** adapters, const float * scales, int32_t n);
LM_API int32_t lm_adapter_meta_count(const lm_adapter * a);
LM_API int32_t lm_adapter_meta_key(const lm_adapter * a, int32_t i, char * buf, int32_t size);
LM_API int32_t lm_adapter_meta_val(const lm_adapter * a, int32_t i, char * buf, int32_t size);

/* ---- embeddings: a second context (embeddings on, one pooling type), made on first use and
   remade when the pooling type changes; the generation context is never touched.  The active
   adapters are set on it too; lm_session_free unsets them from both contexts, frees both. ---- */
/* The pooling lm_embed uses for `pooling` (LM_POOLING_MODEL resolved), or LM_ERR_ARG /
   LM_ERR_UNSUPPORTED (the model's own is e.g. rank, which gives no embedding). */
LM_API int32_t lm_embed_pooling(const lm_session * s, int32_t pooling);
/* Tokens one text may have: min(n_ctx, n_batch) (the embedding context's n_ctx = n_batch =
   n_ubatch: a pooled text is never split across ubatches).  0 without a context. */
LM_API int32_t lm_embed_window(const lm_session * s);
/* Embed n_seqs texts: their tokens concatenated in tokens[], their lengths in lengths[] (each
   1..lm_embed_window, else LM_ERR_ARG / LM_ERR_CONTEXT before any decode).  Writes n_seqs *
   lm_n_embd_out floats to out (out_size floats), L2-normalised when normalize is non-zero.
   Short texts are packed several to a decode (distinct seq_ids, up to 128 tokens). */
LM_API int32_t lm_embed(lm_session * s, const int32_t * tokens, const int32_t * lengths,
                        int32_t n_seqs, int32_t pooling, int32_t normalize, float * out,
                        int32_t out_size);
LM_API int32_t lm_n_embd_out(const lm_session * s);   /* floats per embedding */

/* ---- parallel sequences (slots.cpp): sessions loaded with n_seq_max > 1 ----
   A slot is one llama.cpp sequence with its own tokens, sampler and grammar.  Its KV is tagged
   with the adapter set it was computed under; it is reused (lm_slot_prompt), restored
   (lm_slot_state_load) and decoded (lm_step) only under that same set: applying another set
   never clears the other slots, and nothing computed under one set can serve another. */
LM_API int32_t lm_n_seq_max(const lm_session * s);     /* slots (1 for a single-sequence session) */
/* Make tokens the slot's prompt: keeps the longest prefix of its KV that they share when that
   KV was computed under the active adapter set (else drops it all), queues the rest for
   lm_step (at least the last token, for its logits).  Returns the tokens reused, or LM_ERR_*
   (LM_ERR_CONTEXT when n_tokens > n_ctx).  Resets nothing else: call lm_slot_sampler_init. */
LM_API int32_t lm_slot_prompt(lm_session * s, int32_t slot, const int32_t * tokens, int32_t n_tokens);
/* The slot's sampler (lm_sampler_init's rules) and GBNF grammar (len 0 removes it). */
LM_API int32_t lm_slot_sampler_init(lm_session * s, int32_t slot, float temperature, int32_t top_k,
                                    float top_p, float min_p, float repeat_penalty,
                                    int32_t penalty_last_n, int64_t seed);
LM_API int32_t lm_slot_sampler_accept(lm_session * s, int32_t slot, const int32_t * tokens, int32_t n_tokens);
LM_API int32_t lm_slot_set_grammar(lm_session * s, int32_t slot, const char * grammar, int32_t len);
/* Forget the slot's KV and tokens. */
LM_API int32_t lm_slot_clear(lm_session * s, int32_t slot);
/* Tokens the slot's KV holds: how many; and the tokens themselves (written when n <= n_max). */
LM_API int32_t lm_slot_n_cached(const lm_session * s, int32_t slot);
LM_API int32_t lm_slot_tokens(const lm_session * s, int32_t slot, int32_t * tokens, int32_t n_max);
/* One scheduling step over the listed slots (all under the active adapter set): up to
   max_rounds llama_decode calls, each one batch holding a prompt chunk of every slot still
   being prompted (within n_batch) and the last sampled token of every generating slot; logits
   only where a token is sampled.  Slot i gets up to budgets[i] sampled tokens, written to
   tokens[i * max_rounds ...]; counts[i] says how many; status[i]: LM_OK (budget reached or
   still prompting), LM_EOG (end of generation sampled, not written), LM_ERR_CONTEXT (its
   positions reached n_ctx), LM_ERR_GRAMMAR (the grammar allows no token); a slot stops at
   its status.  The last token written is sampled, not evaluated: the next step evaluates it
   (lm_slot_prompt discards it).  Returns LM_OK, LM_CANCELLED (*cancel was set between rounds),
   LM_ERR_CONTEXT when the KV cache has no room for the batch (nothing changed: free a slot
   with lm_slot_clear and call again) or another LM_ERR_*. */
LM_API int32_t lm_step(lm_session * s, const int32_t * slots, const int32_t * budgets, int32_t n_slots,
                       int32_t max_rounds, int32_t * tokens, int32_t * counts, int32_t * status,
                       int32_t * cancel);
/* The logits of the slot's last prompt token once its prompt is evaluated (n_vocab floats,
   valid until the next lm_step), or NULL. */
LM_API const float * lm_slot_logits(lm_session * s, int32_t slot);
/* The slot's KV state as host bytes, snprintf style (the adapter set's key is kept with it), and
   back: lm_slot_state_load refuses (LM_ERR_STATE) bytes saved under another adapter set. */
LM_API int32_t lm_slot_state_save(lm_session * s, int32_t slot, uint8_t * buf, int32_t size);
LM_API int32_t lm_slot_state_load(lm_session * s, int32_t slot, const int32_t * tokens, int32_t n_tokens,
                                  const uint8_t * data, int32_t size);

/* ---- GGUF validation helper (the Python validator's fast path; it re-walks in Python on any
   failure, to report the exact reason) ---- */
/* Walk n GGUF strings (uint64 little-endian length, then the bytes) in buf[0..size).  Returns
   the bytes they take; LM_ERR_BUFFER when they run past size; LM_ERR_ARG when one is longer
   than max_len or, with unique non-zero, one is empty or equal to an earlier one. */
LM_API int32_t lm_gguf_scan_strings(const uint8_t * buf, int32_t size, int32_t n,
                                    int32_t max_len, int32_t unique);

/* ---- memory for callers that cannot allocate in this library's heap (WebAssembly) ---- */
LM_API void * lm_malloc(int32_t size);
LM_API void   lm_free(void * p);
/* LLAMART_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* LLAMART_H */
