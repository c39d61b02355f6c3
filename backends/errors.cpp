// Version, capabilities, the log buffer and the per-thread error reason.
#include "internal.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__EMSCRIPTEN_PTHREADS__)
#include <emscripten/threading.h>
#endif

#ifndef LLAMART_VERSION
#error "LLAMART_VERSION must be defined (CMake reads it from llamart/_version.py)"
#endif
#ifndef LLAMART_ABI_VERSION
#error "LLAMART_ABI_VERSION must be defined (CMake reads it from llamart/_version.py)"
#endif
#ifndef LLAMART_LORA
#define LLAMART_LORA 1
#endif

namespace {

// Shared by all threads: lines waiting for lm_log_take, and the level below which they drop.
std::mutex g_pending_mutex;
std::string g_pending;
std::atomic<int> g_min_level{2};  // our scale: 0 debug, 1 info, 2 warn, 3 error
std::once_flag g_log_once;

// Per thread: the line being assembled from CONT pieces, the WARN/ERROR lines of the current
// call, the reason of the last failing call, and what lm_log_take returned last.
thread_local std::string t_line;
thread_local int t_line_level = 0;
thread_local std::string t_errors;
thread_local std::string t_last_error;
thread_local std::string t_taken;
thread_local const char * t_expected = nullptr;  // lm::ExpectedLog: a line demoted to info

constexpr size_t kMaxErrors = 16384;
constexpr size_t kMaxPending = 1u << 20;

int to_lm_level(ggml_log_level level) {
    switch (level) {
        case GGML_LOG_LEVEL_DEBUG: return 0;
        case GGML_LOG_LEVEL_INFO: return 1;
        case GGML_LOG_LEVEL_WARN: return 2;
        case GGML_LOG_LEVEL_ERROR: return 3;
        default: return 1;
    }
}

void flush_line() {
    while (!t_line.empty() && (t_line.back() == '\n' || t_line.back() == '\r')) {
        t_line.pop_back();
    }
    if (t_line.empty()) {
        return;
    }
    if (t_expected != nullptr && t_line_level == 2 && t_line.find(t_expected) != std::string::npos) {
        t_line_level = 1;
    }
    if (t_line_level >= 2) {
        if (!t_errors.empty()) {
            t_errors += "\n";
        }
        t_errors += t_line;
        if (t_errors.size() > kMaxErrors) {
            t_errors.erase(0, t_errors.size() - kMaxErrors);
        }
    }
    if (t_line_level >= g_min_level.load(std::memory_order_relaxed)) {
        std::lock_guard<std::mutex> lock(g_pending_mutex);
        if (g_pending.size() < kMaxPending) {
            g_pending += std::to_string(t_line_level);
            g_pending += '\t';
            g_pending += t_line;
            g_pending += '\n';
        }
    }
    t_line.clear();
}

void log_callback(ggml_log_level level, const char * text, void * /*user*/) {
    if (level != GGML_LOG_LEVEL_CONT) {
        flush_line();
        t_line_level = to_lm_level(level);
    }
    t_line += text ? text : "";
    if (!t_line.empty() && t_line.back() == '\n') {
        flush_line();
    }
}

void ensure_log() {
    std::call_once(g_log_once, [] { llama_log_set(log_callback, nullptr); });
}

}  // namespace

namespace lm {

ExpectedLog::ExpectedLog(const char * needle) { t_expected = needle; }
ExpectedLog::~ExpectedLog() {
    flush_line();
    t_expected = nullptr;
}

void log_line(int level, const std::string & text) {
    ensure_log();
    const ggml_log_level lv = level >= 3 ? GGML_LOG_LEVEL_ERROR : level == 2 ? GGML_LOG_LEVEL_WARN
                            : level == 1 ? GGML_LOG_LEVEL_INFO : GGML_LOG_LEVEL_DEBUG;
    log_callback(lv, (text + "\n").c_str(), nullptr);
}

void begin_call() {
    ensure_log();
    ensure_backends();  // after the log hook, so ggml's loader logs reach lm_log_take
    flush_line();
    t_errors.clear();
    t_last_error.clear();
}

int32_t fail(int32_t code, const std::string & what) {
    flush_line();
    t_last_error = what;
    if (!t_errors.empty()) {
        if (!t_last_error.empty()) {
            t_last_error += "\n";
        }
        t_last_error += t_errors;
    }
    if (t_last_error.empty()) {
        t_last_error = "failed (code " + std::to_string(code) + ")";
    }
    return code;
}

std::nullptr_t fail_null(const std::string & what) {
    fail(LM_ERR_ARG, what);
    return nullptr;
}

int32_t copy_out(const std::string & s, char * buf, int32_t size) {
    const int32_t n = (int32_t) s.size();
    if (buf != nullptr && size > 0) {
        const int32_t k = std::min(n, size - 1);
        std::memcpy(buf, s.data(), (size_t) k);
        buf[k] = '\0';
    }
    return n;
}

std::string outside_vocab(const lm_session * s, int32_t t) {
    return "token " + std::to_string(t) + " is outside the vocabulary (0.." +
           std::to_string(s->n_vocab - 1) + ")";
}

}  // namespace lm

extern "C" {

const char * lm_version(void) { return LLAMART_VERSION; }

int32_t lm_abi_version(void) { return LLAMART_ABI_VERSION; }

int32_t lm_capabilities(void) {
    int32_t caps = LM_CAP_EMBEDDINGS;
#if LLAMART_LORA
    caps |= LM_CAP_LORA;
#endif
#if !defined(__EMSCRIPTEN__) || defined(__EMSCRIPTEN_PTHREADS__)
    caps |= LM_CAP_THREADS;
#endif
#if !defined(__EMSCRIPTEN__)
    caps |= LM_CAP_MMAP;  // wasm32: llama.cpp's mmap path is broken there (NOTES), and no mmap
#endif
    caps |= LM_CAP_GRAMMAR | LM_CAP_JSON_SCHEMA;  // grammar.cpp, in every build
    return caps;
}

int32_t lm_max_threads(void) {
#if defined(__EMSCRIPTEN_PTHREADS__)
    // ggml's barriers spin: more threads than cores near-hang (NOTES), and every thread past
    // the first needs a worker of the pool the glue sized to the cores
    return std::max(1, emscripten_num_logical_cores());
#elif defined(__EMSCRIPTEN__)
    return 1;
#else
    return 0;
#endif
}

#if defined(__EMSCRIPTEN__)
extern "C" int llamart_wasm_mat_vec_on(void);  // wasm/mat_vec/ggml_wasm_mat_vec.c
#endif

const char * lm_system_info(void) {
    ensure_log();
    static thread_local std::string info;
    const std::string & variant = lm::cpu_variant();
    const std::string & reason = lm::cpu_variant_reason();
    const std::string & error = lm::cpu_error();
    info = (variant.empty() ? std::string() : "CPU_VARIANT = " + variant + " | ") +
           (reason.empty() ? std::string() : "CPU_VARIANT_REASON = " + reason + " | ") +
           (error.empty() ? std::string() : "CPU_VARIANT_ERROR = " + error + " | ") +
           llama_print_system_info();
#if defined(__EMSCRIPTEN__)
    info += std::string("WASM_MAT_VEC = ") + (llamart_wasm_mat_vec_on() ? "1" : "0") + " | ";
#endif
    return info.c_str();
}

void lm_log_set_level(int32_t level) {
    ensure_log();
    g_min_level.store(std::max(0, std::min(4, (int) level)), std::memory_order_relaxed);
}

const char * lm_log_take(void) {
    ensure_log();
    flush_line();
    std::lock_guard<std::mutex> lock(g_pending_mutex);
    t_taken.swap(g_pending);
    g_pending.clear();
    return t_taken.c_str();
}

const char * lm_last_error(void) { return t_last_error.c_str(); }

void * lm_malloc(int32_t size) { return size > 0 ? std::malloc((size_t) size) : nullptr; }

void lm_free(void * p) { std::free(p); }

}  // extern "C"
