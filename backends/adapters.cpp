// LoRA adapters, owned by their session.  Compiled out (LLAMART_LORA=0, the WebAssembly build):
// every call then fails with LM_ERR_UNSUPPORTED and says so.
#include "internal.h"

#include <algorithm>
#include <cmath>
#include <new>

#ifndef LLAMART_LORA
#define LLAMART_LORA 1
#endif

namespace lm {

int32_t set_active_adapters(lm_session * s, llama_context * ctx) {
    std::vector<llama_adapter_lora *> loras;
    std::vector<float> scales;
    for (size_t i = 0; i < s->active.size(); i++) {
        if (s->active_scales[i] != 0.0f) {
            loras.push_back(s->active[i]->lora);
            scales.push_back(s->active_scales[i]);
        }
    }
    return loras.empty() ? llama_set_adapters_lora(ctx, nullptr, 0, nullptr)
                         : llama_set_adapters_lora(ctx, loras.data(), loras.size(), scales.data());
}

}  // namespace lm

#if LLAMART_LORA

namespace {

bool owns(const lm_session * s, const lm_adapter * a) {
    return std::find(s->adapters.begin(), s->adapters.end(), a) != s->adapters.end();
}

// An adapter list a caller gave: every entry this session's, every scale finite; LM_OK, else
// LM_ERR_ARG naming the first bad entry.
int32_t check_list(const lm_session * s, lm_adapter * const * adapters, const float * scales, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        if (adapters[i] == nullptr || !owns(s, adapters[i]) || !std::isfinite(scales[i])) {
            return lm::fail(LM_ERR_ARG, "adapter " + std::to_string(i) +
                                            " does not belong to this session or has a bad scale");
        }
    }
    return LM_OK;
}

// Put the active set back on ctx after lm_step put the slots' own sets there.
int32_t restore_active(lm_session * s) {
    const int32_t rc = lm::set_active_adapters(s, s->ctx);
    if (rc == 0) {
        s->ctx_mixed = false;
    }
    return rc;
}

}  // namespace

extern "C" {

lm_adapter * lm_adapter_load(lm_session * s, const char * path) {
    lm::begin_call();
    if (s == nullptr || path == nullptr) {
        return lm::fail_null("invalid arguments (session or path NULL)");
    }
    llama_adapter_lora * lora = llama_adapter_lora_init(s->model, path);
    if (lora == nullptr) {
        return lm::fail_null("");  // llama.cpp's log lines say why
    }
    auto * a = new (std::nothrow) lm_adapter();
    if (a == nullptr) {
        llama_adapter_lora_free(lora);
        return lm::fail_null("out of memory");
    }
    a->lora = lora;
    s->adapters.push_back(a);
    return a;
}

void lm_adapter_free(lm_session * s, lm_adapter * a) {
    if (s == nullptr || a == nullptr || !owns(s, a)) {
        return;  // unknown or already freed (e.g. with its session): nothing to do
    }
    auto it = std::find(s->active.begin(), s->active.end(), a);
    if (it != s->active.end()) {
        // unset it first (freeing an adapter still set on a context aborts); keep the others
        std::vector<lm_adapter *> rest;
        std::vector<float> rest_scales;
        for (size_t i = 0; i < s->active.size(); i++) {
            if (s->active[i] != a) {
                rest.push_back(s->active[i]);
                rest_scales.push_back(s->active_scales[i]);
            }
        }
        if (lm_adapters_apply(s, rest.data(), rest_scales.data(), (int32_t) rest.size()) != LM_OK) {
            llama_set_adapters_lora(s->ctx, nullptr, 0, nullptr);
            lm::embed_unset_adapters(s);
            s->active.clear();
            s->active_scales.clear();
            lm_reset(s);
        }
    }
    if (s->ctx_mixed && restore_active(s) != 0) {  // a is not active: off ctx it goes
        llama_set_adapters_lora(s->ctx, nullptr, 0, nullptr);
    }
    lm::slots_forget_adapter(s, a);  // its address may be reused by a later adapter
    s->adapters.erase(std::find(s->adapters.begin(), s->adapters.end(), a));
    llama_adapter_lora_free(a->lora);
    delete a;
}

int32_t lm_adapters_apply(lm_session * s, lm_adapter ** adapters, const float * scales, int32_t n) {
    lm::begin_call();
    if (s == nullptr || s->ctx == nullptr || n < 0 || (n > 0 && (adapters == nullptr || scales == nullptr))) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_adapters_apply");
    }
    if (const int32_t rc = check_list(s, adapters, scales, n); rc != LM_OK) {
        return rc;
    }
    std::vector<llama_adapter_lora *> loras;
    std::vector<float> sc;
    std::vector<lm_adapter *> active;
    for (int32_t i = 0; i < n; i++) {
        active.push_back(adapters[i]);
        if (scales[i] != 0.0f) {
            loras.push_back(adapters[i]->lora);
            sc.push_back(scales[i]);
        }
    }
    // the KV cache (and the prefix lm_eval_prompt would reuse) was computed under the old set:
    // drop it before the set changes, so even a failed change leaves nothing stale behind.
    // A parallel session keeps each sequence's KV tagged with the set it was computed under
    // (slots.cpp): a sequence is only ever decoded or reused under that same set.
    if (s->slots.empty()) {
        lm_reset(s);
    }
    s->active_key = "\x01changing";  // no slot matches while the set is in flux
    const int32_t rc = loras.empty()
        ? llama_set_adapters_lora(s->ctx, nullptr, 0, nullptr)
        : llama_set_adapters_lora(s->ctx, loras.data(), loras.size(), sc.data());
    if (rc != 0) {
        return lm::fail(LM_ERR_ARG, "llama_set_adapters_lora failed (" + std::to_string(rc) + ")");
    }
    s->ctx_mixed = false;
    s->active = active;
    s->active_scales.assign(scales, scales + n);
    s->active_key = lm::adapter_key(s->active, s->active_scales);
    lm::embed_sync_adapters(s);  // embeddings see the same set as generation
    return LM_OK;
}

int32_t lm_slot_adapters(lm_session * s, int32_t slot, lm_adapter ** adapters, const float * scales, int32_t n) {
    lm::begin_call();
    if (s == nullptr || s->ctx == nullptr || slot < 0 || slot >= (int32_t) s->slots.size()) {
        return lm::fail(LM_ERR_ARG, "no such slot: " + std::to_string(slot));
    }
    if (n < 0 || (n > 0 && (adapters == nullptr || scales == nullptr))) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_slot_adapters");
    }
    if (const int32_t rc = check_list(s, adapters, scales, n); rc != LM_OK) {
        return rc;
    }
    std::vector<lm_adapter *> set;
    std::vector<float> sc;
    for (int32_t i = 0; i < n; i++) {
        if (std::find(set.begin(), set.end(), adapters[i]) != set.end()) {
            return lm::fail(LM_ERR_ARG, "adapter " + std::to_string(i) + " is listed twice");
        }
        if (scales[i] != 0.0f) {
            set.push_back(adapters[i]);
            sc.push_back(scales[i]);
        }
    }
    lm::Slot & st = s->slots[(size_t) slot];
    st.own = true;
    st.set_key = lm::adapter_key(set, sc);
    st.set = std::move(set);
    st.set_scales = std::move(sc);
    return LM_OK;
}

int32_t lm_adapter_meta_count(const lm_adapter * a) {
    return a ? llama_adapter_meta_count(a->lora) : 0;
}

int32_t lm_adapter_meta_key(const lm_adapter * a, int32_t i, char * buf, int32_t size) {
    lm::begin_call();
    return a ? lm::meta_key(a->lora, i, buf, size) : lm::fail(LM_ERR_ARG, "no adapter");
}

int32_t lm_adapter_meta_val(const lm_adapter * a, int32_t i, char * buf, int32_t size) {
    lm::begin_call();
    return a ? lm::meta_val(a->lora, i, buf, size) : lm::fail(LM_ERR_ARG, "no adapter");
}

}  // extern "C"

namespace lm {

int32_t apply_slot_sets(lm_session * s, const int32_t * ids, int32_t n) {
    bool any_own = false;
    bool one_set = true;
    const std::string & key0 = slot_set_key(s, s->slots[(size_t) ids[0]]);
    for (int32_t i = 0; i < n; i++) {
        const Slot & slot = s->slots[(size_t) ids[i]];
        any_own = any_own || slot.own;
        one_set = one_set && slot_set_key(s, slot) == key0;
    }
    if (!any_own || (one_set && key0 == s->active_key)) {
        return !s->ctx_mixed || restore_active(s) == 0
            ? LM_OK : fail(LM_ERR_STATE, "could not restore the active adapter set");
    }
    // the union of the slots' sets, each adapter with a scale per sequence (0: not in its set)
    const size_t n_seq = s->slots.size();
    std::vector<llama_adapter_lora *> loras;
    std::vector<float> table;   // loras.size() rows of n_seq scales
    std::vector<float> first;   // with one_set: the set's own scales, for llama_set_adapters_lora
    for (int32_t i = 0; i < n; i++) {
        const Slot & slot = s->slots[(size_t) ids[i]];
        const auto & set = slot.own ? slot.set : s->active;
        const auto & scales = slot.own ? slot.set_scales : s->active_scales;
        for (size_t j = 0; j < set.size(); j++) {
            if (scales[j] == 0.0f) {
                continue;
            }
            const size_t k = (size_t) (std::find(loras.begin(), loras.end(), set[j]->lora) - loras.begin());
            if (k == loras.size()) {
                loras.push_back(set[j]->lora);
                table.resize(table.size() + n_seq, 0.0f);
                first.push_back(scales[j]);
            }
            table[k * n_seq + (size_t) ids[i]] = scales[j];
        }
    }
    int32_t rc;
    if (loras.empty()) {
        rc = llama_set_adapters_lora(s->ctx, nullptr, 0, nullptr);
    } else if (one_set) {  // one set, not the active one: llama.cpp's own way, any scale exact
        rc = llama_set_adapters_lora(s->ctx, loras.data(), loras.size(), first.data());
    } else {
        rc = llama_set_adapters_lora_seq(s->ctx, loras.data(), loras.size(), table.data(), n_seq);
    }
    s->ctx_mixed = true;  // whatever happened, ctx no longer holds just the active set
    return rc == 0 ? LM_OK : fail(LM_ERR_STATE, "could not set the slots' adapter sets");
}

}  // namespace lm

#else  // !LLAMART_LORA

namespace {
const char * const kNoLora = "LoRA adapters are not compiled into this build of llamart";
}

extern "C" {

lm_adapter * lm_adapter_load(lm_session *, const char *) {
    lm::begin_call();
    lm::fail(LM_ERR_UNSUPPORTED, kNoLora);
    return nullptr;
}

void lm_adapter_free(lm_session *, lm_adapter *) {}

int32_t lm_adapters_apply(lm_session * s, lm_adapter **, const float *, int32_t n) {
    lm::begin_call();
    if (n != 0) {
        return lm::fail(LM_ERR_UNSUPPORTED, kNoLora);
    }
    lm_reset(s);  // as with LoRA: applying (the empty set) clears the KV cache
    return LM_OK;
}

int32_t lm_slot_adapters(lm_session * s, int32_t slot, lm_adapter **, const float *, int32_t n) {
    lm::begin_call();
    if (s == nullptr || slot < 0 || slot >= (int32_t) s->slots.size()) {
        return lm::fail(LM_ERR_ARG, "no such slot: " + std::to_string(slot));
    }
    if (n < 0) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_slot_adapters");
    }
    return n > 0 ? lm::fail(LM_ERR_UNSUPPORTED, kNoLora) : LM_OK;  // the base model it is
}
int32_t lm_adapter_meta_count(const lm_adapter *) { return 0; }

int32_t lm_adapter_meta_key(const lm_adapter *, int32_t, char *, int32_t) {
    lm::begin_call();
    return lm::fail(LM_ERR_UNSUPPORTED, kNoLora);
}

int32_t lm_adapter_meta_val(const lm_adapter *, int32_t, char *, int32_t) {
    lm::begin_call();
    return lm::fail(LM_ERR_UNSUPPORTED, kNoLora);
}

}  // extern "C"

namespace lm {
int32_t apply_slot_sets(lm_session *, const int32_t *, int32_t) { return LM_OK; }
}  // namespace lm

#endif  // LLAMART_LORA
