// Text <-> tokens: tokenize, token pieces, detokenize.
#include "internal.h"

#include <climits>

namespace {

bool check_tokens(const lm_session * s, const int32_t * tokens, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        if (!lm::in_vocab(s, tokens[i])) {
            lm::fail(LM_ERR_ARG, lm::outside_vocab(s, tokens[i]));
            return false;
        }
    }
    return true;
}

}  // namespace

extern "C" {

int32_t lm_tokenize(const lm_session * s, const char * text, int32_t text_len, int32_t * tokens,
                    int32_t n_max, int32_t add_special, int32_t parse_special) {
    lm::begin_call();
    if (s == nullptr || text_len < 0 || (text == nullptr && text_len > 0) || n_max < 0 ||
        (tokens == nullptr && n_max > 0)) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_tokenize");
    }
    const int32_t n = llama_tokenize(s->vocab, text ? text : "", text_len, tokens, n_max,
                                     add_special != 0, parse_special != 0);
    if (n == INT32_MIN) {
        return lm::fail(LM_ERR_ARG, "the text has more tokens than an int32 can count");
    }
    return n < 0 ? -n : n;  // llama.cpp's -(needed) becomes the count the caller retries with
}

int32_t lm_token_to_piece(const lm_session * s, int32_t token, int32_t special, char * buf,
                          int32_t size) {
    lm::begin_call();
    if (s == nullptr || size < 0) {
        return lm::fail(LM_ERR_ARG, "no session, or a negative size");
    }
    if (!lm::in_vocab(s, token)) {
        return lm::fail(LM_ERR_ARG, lm::outside_vocab(s, token));
    }
    char tmp[128];
    int32_t n = llama_token_to_piece(s->vocab, token, tmp, sizeof(tmp), 0, special != 0);
    if (n >= 0) {
        return lm::copy_out(std::string(tmp, (size_t) n), buf, size);
    }
    std::string big((size_t) -n, '\0');
    n = llama_token_to_piece(s->vocab, token, &big[0], (int32_t) big.size(), 0, special != 0);
    if (n < 0) {
        return lm::fail(LM_ERR_ARG, "token " + std::to_string(token) + " has no text piece");
    }
    big.resize((size_t) n);
    return lm::copy_out(big, buf, size);
}

int32_t lm_detokenize(const lm_session * s, const int32_t * tokens, int32_t n_tokens,
                      int32_t remove_special, int32_t unparse_special, char * buf, int32_t size) {
    lm::begin_call();
    if (s == nullptr || n_tokens < 0 || size < 0 || (tokens == nullptr && n_tokens > 0)) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_detokenize");
    }
    if (!check_tokens(s, tokens, n_tokens)) {
        return LM_ERR_ARG;
    }
    // A leading BOS is dropped and, like any first piece, loses the tokenizer's space prefix,
    // so that detokenize(tokenize(text, add_special)) == text for SentencePiece vocabularies.
    if (n_tokens > 0 && tokens[0] == llama_vocab_bos(s->vocab) && llama_vocab_get_add_bos(s->vocab)) {
        tokens++;
        n_tokens--;
    }
    // room for the NUL: llama.cpp writes only when the whole text fits
    char empty = '\0';
    const int32_t cap = size > 0 ? size - 1 : 0;
    int32_t n = llama_detokenize(s->vocab, tokens, n_tokens, buf != nullptr ? buf : &empty,
                                 buf != nullptr ? cap : 0, remove_special != 0, unparse_special != 0);
    if (n < 0) {
        return -n;  // did not fit: the length needed
    }
    if (buf != nullptr && size > 0) {
        buf[n] = '\0';
    }
    return n;
}

}  // extern "C"
