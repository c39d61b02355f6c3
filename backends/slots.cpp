// Parallel sequences: a session loaded with n_seq_max > 1 has that many slots in one llama.cpp
// context with a unified KV cache.  lm_step is continuous batching: one llama_decode holds a
// prompt chunk of every slot being prompted and one token of every generating slot.  Each
// slot's KV carries the key of the adapter set it was computed under; a slot is only reused,
// restored or decoded under that same set: the active one, or the slot's own (lm_slot_adapters),
// and slots under different sets share a decode (adapters.cpp: lm::apply_slot_sets).
#include "internal.h"

#include <algorithm>
#include <cstring>

namespace {

constexpr int32_t kSlotsOnly = LM_ERR_STATE;

bool bad_slot(const lm_session * s, int32_t slot) {
    return s == nullptr || s->ctx == nullptr || slot < 0 || slot >= (int32_t) s->slots.size();
}

int32_t slot_error(const lm_session * s, int32_t slot) {
    if (s == nullptr || s->ctx == nullptr) {
        return lm::fail(LM_ERR_ARG, "no context");
    }
    if (s->slots.empty()) {
        return lm::fail(kSlotsOnly, "not a parallel session (loaded with n_seq_max 1)");
    }
    return lm::fail(LM_ERR_ARG, "slot " + std::to_string(slot) + " is outside 0.." +
                                    std::to_string(s->slots.size() - 1));
}

void drop_kv(lm_session * s, int32_t id) {
    llama_memory_seq_rm(llama_get_memory(s->ctx), id, -1, -1);
    lm::Slot & slot = s->slots[(size_t) id];
    slot.cached.clear();
    slot.pending.clear();
    slot.sampled = -1;
    slot.logits_row = -1;
    slot.ready = false;
}

}  // namespace

namespace lm {

std::string adapter_key(const std::vector<lm_adapter *> & adapters, const std::vector<float> & scales) {
    std::string key;
    for (size_t i = 0; i < adapters.size(); i++) {
        if (scales[i] == 0.0f) {
            continue;  // llama.cpp drops zero-scale entries: the same weights as without them
        }
        char part[64];
        uint32_t bits;
        std::memcpy(&bits, &scales[i], sizeof bits);
        std::snprintf(part, sizeof part, "%p:%08x;", (const void *) adapters[i], bits);
        key += part;
    }
    return key;
}

void slots_forget_adapter(lm_session * s, const lm_adapter * a) {
    char ptr[32];
    std::snprintf(ptr, sizeof ptr, "%p:", (const void *) a);
    for (size_t i = 0; i < s->slots.size(); i++) {
        Slot & slot = s->slots[i];
        if (slot.key.find(ptr) != std::string::npos) {
            drop_kv(s, (int32_t) i);
            slot.key.clear();
        }
        if (slot.own && std::find(slot.set.begin(), slot.set.end(), a) != slot.set.end()) {
            slot.own = false;
            slot.set.clear();
            slot.set_scales.clear();
            slot.set_key.clear();
        }
    }
}

}  // namespace lm

extern "C" {

int32_t lm_n_seq_max(const lm_session * s) {
    return s == nullptr ? 0 : std::max<int32_t>(1, (int32_t) s->slots.size());
}

int32_t lm_slot_prompt(lm_session * s, int32_t id, const int32_t * tokens, int32_t n_tokens) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    if (tokens == nullptr || n_tokens < 1) {
        return lm::fail(LM_ERR_ARG, "an empty prompt has no logits");
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (!lm::in_vocab(s, tokens[i])) {
            return lm::fail(LM_ERR_ARG, lm::outside_vocab(s, tokens[i]));
        }
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(s->ctx);
    if (n_tokens > n_ctx) {
        return lm::fail(LM_ERR_CONTEXT, std::to_string(n_tokens) +
                                            " tokens do not fit in the context of " + std::to_string(n_ctx));
    }
    lm::Slot & slot = s->slots[(size_t) id];
    slot.sampled = -1;
    slot.logits_row = -1;
    slot.ready = false;
    slot.pending.clear();
    const std::string & key = lm::slot_set_key(s, slot);
    if (slot.key != key) {
        drop_kv(s, id);  // computed under another adapter set: never reused
    }
    slot.key = key;
    int32_t p = 0;
    const int32_t n_common = std::min((int32_t) slot.cached.size(), n_tokens);
    while (p < n_common && slot.cached[(size_t) p] == tokens[p]) {
        p++;
    }
    p = std::min(p, n_tokens - 1);  // the last prompt token is decoded again for its logits
    llama_memory_t mem = llama_get_memory(s->ctx);
    if (p < (int32_t) slot.cached.size()) {
        if (!llama_memory_seq_rm(mem, id, p, -1)) {
            drop_kv(s, id);
            p = 0;
        } else {
            slot.cached.resize((size_t) p);
        }
    }
    slot.pending.assign(tokens + p, tokens + n_tokens);
    return p;
}

int32_t lm_slot_sampler_init(lm_session * s, int32_t id, float temperature, int32_t top_k, float top_p,
                             float min_p, float repeat_penalty, int32_t penalty_last_n, int64_t seed) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    return lm::sampling_init(s, s->slots[(size_t) id].samp, temperature, top_k, top_p, min_p,
                             repeat_penalty, penalty_last_n, seed);
}

int32_t lm_slot_sampler_accept(lm_session * s, int32_t id, const int32_t * tokens, int32_t n_tokens) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    lm::Sampling & st = s->slots[(size_t) id].samp;
    if (st.sampler == nullptr) {
        return lm::fail(LM_ERR_STATE, "no sampler: call lm_slot_sampler_init first");
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (!lm::in_vocab(s, tokens[i])) {
            return lm::fail(LM_ERR_ARG, lm::outside_vocab(s, tokens[i]));
        }
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        lm::accept(st, tokens[i]);
    }
    return LM_OK;
}

int32_t lm_slot_set_grammar(lm_session * s, int32_t id, const char * grammar, int32_t len) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    if (len < 0) {
        return lm::fail(LM_ERR_ARG, "a negative length");
    }
    return lm::set_grammar(s, s->slots[(size_t) id].samp, grammar, len);
}

int32_t lm_slot_clear(lm_session * s, int32_t id) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    drop_kv(s, id);
    return LM_OK;
}

int32_t lm_slot_n_cached(const lm_session * s, int32_t id) {
    return bad_slot(s, id) ? 0 : (int32_t) s->slots[(size_t) id].cached.size();
}

int32_t lm_slot_tokens(const lm_session * s, int32_t id, int32_t * tokens, int32_t n_max) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    const std::vector<llama_token> & c = s->slots[(size_t) id].cached;
    if (tokens != nullptr && n_max >= (int32_t) c.size()) {
        std::copy(c.begin(), c.end(), tokens);
    }
    return (int32_t) c.size();
}

int32_t lm_step(lm_session * s, const int32_t * ids, const int32_t * budgets, int32_t n_slots,
                int32_t max_rounds, int32_t * tokens, int32_t * counts, int32_t * status,
                int32_t * cancel) {
    lm::begin_call();
    if (s == nullptr || s->ctx == nullptr || s->slots.empty()) {
        return slot_error(s, 0);
    }
    if (n_slots < 1 || max_rounds < 1 || ids == nullptr || budgets == nullptr || tokens == nullptr ||
        counts == nullptr || status == nullptr) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_step");
    }
    for (int32_t i = 0; i < n_slots; i++) {
        if (bad_slot(s, ids[i])) {
            return slot_error(s, ids[i]);
        }
        for (int32_t j = 0; j < i; j++) {
            if (ids[j] == ids[i]) {
                return lm::fail(LM_ERR_ARG, "slot " + std::to_string(ids[i]) + " listed twice");
            }
        }
        const lm::Slot & slot = s->slots[(size_t) ids[i]];
        if (slot.key != lm::slot_set_key(s, slot)) {
            return lm::fail(LM_ERR_STATE, "slot " + std::to_string(ids[i]) +
                                              " was prompted under another adapter set");
        }
        if ((budgets[i] > 0 && slot.samp.sampler == nullptr) || (!slot.ready && slot.pending.empty())) {
            return lm::fail(LM_ERR_STATE, "slot " + std::to_string(ids[i]) + " has no prompt or sampler");
        }
        counts[i] = 0;
        status[i] = LM_OK;
    }
    if (const int32_t arc = lm::apply_slot_sets(s, ids, n_slots); arc != LM_OK) {
        return arc;
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(s->ctx);
    const int32_t n_batch = (int32_t) llama_n_batch(s->ctx);
    llama_batch batch = llama_batch_init(n_batch, 0, 1);
    std::vector<int32_t> taken((size_t) n_slots, 0);  // prompt tokens a slot put in this batch
    int32_t rc = LM_OK;
    for (int32_t round = 0; round < max_rounds; round++) {
        if (round > 0 && cancel != nullptr && __atomic_exchange_n(cancel, 0, __ATOMIC_ACQ_REL) != 0) {
            rc = LM_CANCELLED;
            break;
        }
        batch.n_tokens = 0;
        auto add = [&](llama_token t, llama_pos pos, int32_t seq, bool logits) {
            const int32_t k = batch.n_tokens++;
            batch.token[k] = t;
            batch.pos[k] = pos;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = seq;
            batch.logits[k] = logits ? 1 : 0;
            return k;
        };
        // first the generating slots' single tokens (they never wait for prompts), then prompt
        // chunks in the room left
        for (int32_t i = 0; i < n_slots; i++) {
            lm::Slot & slot = s->slots[(size_t) ids[i]];
            taken[(size_t) i] = 0;
            slot.logits_row = -1;
            if (status[i] != LM_OK || counts[i] >= budgets[i] || !slot.ready || slot.sampled < 0) {
                continue;
            }
            if ((int32_t) slot.cached.size() >= n_ctx) {
                status[i] = LM_ERR_CONTEXT;
                continue;
            }
            slot.logits_row = add(slot.sampled, (llama_pos) slot.cached.size(), ids[i], true);
        }
        for (int32_t i = 0; i < n_slots && batch.n_tokens < n_batch; i++) {
            lm::Slot & slot = s->slots[(size_t) ids[i]];
            if (status[i] != LM_OK || slot.pending.empty()) {
                continue;
            }
            const int32_t n = std::min<int32_t>((int32_t) slot.pending.size(), n_batch - batch.n_tokens);
            if ((int32_t) (slot.cached.size() + slot.pending.size()) > n_ctx) {
                status[i] = LM_ERR_CONTEXT;
                continue;
            }
            for (int32_t j = 0; j < n; j++) {
                const bool last = j == (int32_t) slot.pending.size() - 1;
                const int32_t k = add(slot.pending[(size_t) j], (llama_pos) (slot.cached.size() + j), ids[i], last);
                if (last) {
                    slot.logits_row = k;
                }
            }
            taken[(size_t) i] = n;
        }
        if (batch.n_tokens == 0) {
            break;
        }
        const int32_t drc = llama_decode(s->ctx, batch);
        if (drc == 1) {
            rc = round == 0 ? lm::fail(LM_ERR_CONTEXT, "the KV cache has no room for this step") : LM_OK;
            for (int32_t i = 0; i < n_slots; i++) {
                s->slots[(size_t) ids[i]].logits_row = -1;
            }
            break;
        }
        if (drc != 0) {
            // an aborted decode removed what it had added; the slots' state is unknown: drop them
            for (int32_t i = 0; i < n_slots; i++) {
                drop_kv(s, ids[i]);
            }
            rc = lm::fail(LM_ERR_DECODE, "llama_decode failed (" + std::to_string(drc) + ")");
            break;
        }
        for (int32_t i = 0; i < n_slots; i++) {
            lm::Slot & slot = s->slots[(size_t) ids[i]];
            if (taken[(size_t) i] > 0) {
                slot.cached.insert(slot.cached.end(), slot.pending.begin(), slot.pending.begin() + taken[(size_t) i]);
                slot.pending.erase(slot.pending.begin(), slot.pending.begin() + taken[(size_t) i]);
            } else if (slot.logits_row >= 0) {
                slot.cached.push_back(slot.sampled);  // the generated token, now evaluated
                slot.sampled = -1;
            }
            if (slot.logits_row < 0) {
                continue;
            }
            slot.ready = true;
            if (counts[i] >= budgets[i]) {
                continue;  // a logits-only prompt (lm_slot_logits); nothing to sample
            }
            int32_t st = LM_OK;
            const llama_token tok = lm::sample(s, slot.samp, slot.logits_row, &st);
            if (st != LM_OK) {
                status[i] = st;  // LM_EOG: not written, not evaluated
                continue;
            }
            slot.sampled = tok;
            tokens[i * max_rounds + counts[i]++] = tok;
        }
    }
    llama_batch_free(batch);
    return rc;
}

const float * lm_slot_logits(lm_session * s, int32_t id) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        slot_error(s, id);
        return nullptr;
    }
    const lm::Slot & slot = s->slots[(size_t) id];
    if (!slot.ready || slot.logits_row < 0) {
        lm::fail(LM_ERR_STATE, "no logits: the slot's prompt is not evaluated");
        return nullptr;
    }
    return llama_get_logits_ith(s->ctx, slot.logits_row);
}

int32_t lm_slot_state_save(lm_session * s, int32_t id, uint8_t * buf, int32_t size) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    const lm::Slot & slot = s->slots[(size_t) id];
    const uint32_t klen = (uint32_t) slot.key.size();
    const size_t state = llama_state_seq_get_size(s->ctx, id);
    const size_t total = 4 + klen + state;
    if (total > (size_t) INT32_MAX) {
        return lm::fail(LM_ERR_ALLOC, "the slot's state is over 2 GiB");
    }
    if (buf == nullptr || size < (int32_t) total) {
        return (int32_t) total;
    }
    std::memcpy(buf, &klen, 4);
    std::memcpy(buf + 4, slot.key.data(), klen);
    const size_t n = llama_state_seq_get_data(s->ctx, buf + 4 + klen, state, id);
    return n == state ? (int32_t) total : lm::fail(LM_ERR_STATE, "llama_state_seq_get_data failed");
}

int32_t lm_slot_state_load(lm_session * s, int32_t id, const int32_t * tokens, int32_t n_tokens,
                           const uint8_t * data, int32_t size) {
    lm::begin_call();
    if (bad_slot(s, id)) {
        return slot_error(s, id);
    }
    uint32_t klen = 0;
    if (data == nullptr || size < 4 || (std::memcpy(&klen, data, 4), (int64_t) klen + 4 > size) ||
        n_tokens < 1 || tokens == nullptr || n_tokens > (int32_t) llama_n_ctx(s->ctx)) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_slot_state_load");
    }
    lm::Slot & target = s->slots[(size_t) id];
    if (std::string((const char *) data + 4, klen) != lm::slot_set_key(s, target)) {
        return lm::fail(LM_ERR_STATE, "the state was saved under another adapter set");
    }
    drop_kv(s, id);
    const size_t n = llama_state_seq_set_data(s->ctx, data + 4 + klen, (size_t) size - 4 - klen, id);
    if (n == 0) {
        drop_kv(s, id);
        return lm::fail(LM_ERR_STATE, "llama_state_seq_set_data refused the state");
    }
    target.key = lm::slot_set_key(s, target);
    target.cached.assign(tokens, tokens + n_tokens);
    return LM_OK;
}

}  // extern "C"
