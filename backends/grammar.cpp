// Structured output: GBNF grammars checked before llama.cpp builds them, the session's grammar
// sampler, and JSON schemas turned into grammars by llama.cpp's own converter (common/).
//
// What this file makes unreachable in llama.cpp's grammar code:
//   - a grammar that does not parse, has no rules, lacks "root", references an undefined rule
//     or is left-recursive: refused here with the parser's own message (llama_sampler_init_grammar
//     would only print it to stderr and return NULL);
//   - parentheses nested deeper than kMaxNesting: llama.cpp's parser recurses once per level, so
//     a few hundred thousand would overflow the stack (WebAssembly's is 5 MiB);
//   - a NUL byte inside the text (the parser reads a C string);
//   - C++ exceptions leaving through the C API (the converter throws for unsupported schemas).
// The token-level hazards (accepting a token the grammar refuses: an exception or a
// GGML_ABORT for an end-of-generation token) are avoided in sampling.cpp, which only ever
// accepts tokens the grammar allowed, and never an end-of-generation token.
#include "internal.h"

#include "json-schema-to-grammar.h"
#include "llama-grammar.h"

#include <exception>
#include <string>

namespace {

constexpr int kMaxNesting = 256;        // "(" levels; real grammars use a handful
constexpr int32_t kMaxGrammar = 1 << 24;  // 16 MiB of GBNF text

// Whether the text could build no grammar; the reason in *why.  Nesting is counted outside
// string literals, character classes and comments, as llama.cpp's parser reads them.
bool too_deep(const std::string & src, std::string * why) {
    int depth = 0;
    for (size_t i = 0; i < src.size(); i++) {
        const char c = src[i];
        if (c == '#') {
            while (i < src.size() && src[i] != '\n' && src[i] != '\r') {
                i++;
            }
        } else if (c == '"' || c == '[') {
            const char close = c == '"' ? '"' : ']';
            for (i++; i < src.size() && src[i] != close; i++) {
                if (src[i] == '\\') {
                    i++;
                }
            }
        } else if (c == '(') {
            if (++depth > kMaxNesting) {
                *why = "parentheses are nested more than " + std::to_string(kMaxNesting) +
                       " deep";
                return true;
            }
        } else if (c == ')') {
            depth = depth > 0 ? depth - 1 : 0;
        }
    }
    return false;
}

// Blank space and comments, as llama.cpp's parse_space(src, newline_ok=true) skips them.
const char * skip_space(const char * pos) {
    while (*pos) {
        if (*pos == ' ' || *pos == '\t' || *pos == '\n' || *pos == '\r') {
            pos++;
        } else if (*pos == '#') {
            while (*pos && *pos != '\n' && *pos != '\r') {
                pos++;
            }
        } else {
            break;
        }
    }
    return pos;
}

// The parser's messages quote the rest of the grammar ("expecting ::= at <all of it>"): keep
// the first line, and at most 80 bytes of it.
std::string short_message(const std::string & what) {
    std::string out = what.substr(0, what.find('\n'));
    if (out.size() > 80) {
        out = out.substr(0, 77) + "...";
    }
    return out;
}

// LM_OK, or LM_ERR_GRAMMAR with the reason.  Parses with llama.cpp's own parser (the same
// steps as llama_grammar_parser::parse, keeping its message), then builds the grammar once
// (left recursion is found there, and reported through the log).
int32_t check(const llama_vocab * vocab, const char * text, int32_t len) {
    if (text == nullptr || len <= 0) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: it is empty");
    }
    if (len > kMaxGrammar) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: longer than " +
                                            std::to_string(kMaxGrammar) + " bytes");
    }
    const std::string src(text, (size_t) len);
    std::string why;
    if (src.find('\0') != std::string::npos) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: it contains a NUL byte");
    }
    if (too_deep(src, &why)) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: " + why);
    }
    llama_grammar_parser parser(vocab);
    try {
        const char * pos = skip_space(src.c_str());
        while (*pos) {
            pos = parser.parse_rule(pos);
        }
        for (const auto & kv : parser.symbol_ids) {
            if (kv.second >= parser.rules.size() || parser.rules[kv.second].empty()) {
                return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: rule '" + kv.first +
                                                    "' is used but never defined");
            }
        }
    } catch (const std::exception & e) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: " + short_message(e.what()));
    }
    if (parser.rules.empty()) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: it has no rules");
    }
    if (parser.symbol_ids.find("root") == parser.symbol_ids.end()) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: it has no 'root' rule");
    }
    return LM_OK;
}

// A grammar sampler for a text check() accepted, or NULL with the reason recorded.
llama_sampler * build(const llama_vocab * vocab, const char * text, int32_t len) {
    if (check(vocab, text, len) != LM_OK) {
        return nullptr;
    }
    const std::string src(text, (size_t) len);
    llama_sampler * g = nullptr;
    try {
        g = llama_sampler_init_grammar(vocab, src.c_str(), "root");
    } catch (const std::exception & e) {
        lm::fail(LM_ERR_GRAMMAR, std::string("invalid grammar: ") + e.what());
        return nullptr;
    }
    if (g == nullptr) {  // llama.cpp logged why (left recursion): lm::fail appends the log
        lm::fail(LM_ERR_GRAMMAR, "invalid grammar: llama.cpp refused it");
    }
    return g;
}

}  // namespace

namespace lm {

void drop_grammar(Sampling & st) {
    if (st.grammar) {
        llama_sampler_free(st.grammar);
        st.grammar = nullptr;
    }
}

int32_t set_grammar(lm_session * s, Sampling & st, const char * grammar, int32_t len) {
    if (st.sampler == nullptr) {
        return fail(LM_ERR_STATE, "no sampler: call lm_sampler_init first");
    }
    drop_grammar(st);
    if (len == 0) {
        return LM_OK;
    }
    st.grammar = build(s->vocab, grammar, len);
    return st.grammar != nullptr ? LM_OK : LM_ERR_GRAMMAR;
}

}  // namespace lm

extern "C" {

int32_t lm_grammar_check(const lm_session * s, const char * grammar, int32_t len) {
    lm::begin_call();
    if (s == nullptr) {
        return lm::fail(LM_ERR_ARG, "no session");
    }
    llama_sampler * g = build(s->vocab, grammar, len);
    if (g == nullptr) {
        return LM_ERR_GRAMMAR;
    }
    llama_sampler_free(g);
    return LM_OK;
}

int32_t lm_sampler_set_grammar(lm_session * s, const char * grammar, int32_t len) {
    lm::begin_call();
    if (s == nullptr || len < 0) {
        return lm::fail(LM_ERR_ARG, "no session, or a negative length");
    }
    return lm::set_grammar(s, s->samp, grammar, len);
}

int32_t lm_grammar_match(const lm_session * s, const char * grammar, int32_t len,
                         const char * text, int32_t text_len) {
    lm::begin_call();
    if (s == nullptr || text_len < 0 || (text == nullptr && text_len > 0)) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_grammar_match");
    }
    const std::string str(text != nullptr ? text : "", (size_t) text_len);
    if (str.find('\0') != std::string::npos) {
        return lm::fail(LM_ERR_ARG, "the text contains a NUL byte");
    }
    if (check(s->vocab, grammar, len) != LM_OK) {
        return LM_ERR_GRAMMAR;
    }
    const std::string src(grammar, (size_t) len);
    llama_grammar * g = nullptr;
    try {
        g = llama_grammar_init_impl(s->vocab, src.c_str(), "root", false, nullptr, 0, nullptr, 0);
    } catch (const std::exception & e) {
        return lm::fail(LM_ERR_GRAMMAR, std::string("invalid grammar: ") + e.what());
    }
    if (g == nullptr) {
        return lm::fail(LM_ERR_GRAMMAR, "invalid grammar: llama.cpp refused it");
    }
    bool match = false;
    try {
        llama_grammar_accept_str(*g, str);  // throws once no stack is left: no match
        for (const auto & stack : llama_grammar_get_stacks(g)) {
            match = match || stack.empty();  // an empty stack: the grammar may end here
        }
    } catch (const std::exception &) {
        match = false;
    }
    llama_grammar_free_impl(g);
    return match ? 1 : 0;
}

int32_t lm_json_schema_to_grammar(const char * schema, int32_t len, char * buf, int32_t size) {
    lm::begin_call();
    if (schema == nullptr || len < 0 || size < 0) {
        return lm::fail(LM_ERR_ARG, "invalid arguments to lm_json_schema_to_grammar");
    }
    try {
        const common_json parsed = common_json::parse(std::string(schema, (size_t) len));
        return lm::copy_out(json_schema_to_grammar(parsed, /* force_gbnf= */ true), buf, size);
    } catch (const std::exception & e) {
        return lm::fail(LM_ERR_GRAMMAR, e.what());
    }
}

}  // extern "C"
