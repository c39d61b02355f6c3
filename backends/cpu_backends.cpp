// ggml's CPU backend under runtime dispatch (native builds with LLAMART_BACKEND_DL): the
// libggml-cpu-<level>.so variants sit beside this library and the best one for the running CPU
// is loaded, found from this library's own address (dladdr; ggml's own search looks beside
// python and in the working directory).
//
// A variant is trusted only after a probe: ggml scores the variants by the CPU's feature bits,
// but a CPU or hypervisor may advertise what it does not enable (llama.cpp #28756, #28328), and
// an instruction that faults kills the process.  So, best score first, each candidate is loaded
// in a forked child that reads the features the variant was compiled with (its own
// ggml_backend_get_features) and executes one instruction of each (for AMX: the permission
// request, a tile configuration and a tile instruction).  A child killed by a signal, or one
// that reports a failure, makes the next best variant the candidate; the reason is logged and
// kept for lm_system_info / lm_cpu_variants.  LLAMART_CPU_VARIANT=<name> forces a variant
// (still probed: an unknown or unusable name is an error of every load).
#include "internal.h"

#include <mutex>
#include <string>

#if defined(LLAMART_BACKEND_DL)
#include <dlfcn.h>
#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "ggml-backend.h"
#endif

namespace {

std::once_flag g_backends_once;
std::string g_variant;  // "zen4", ... ; "" when the build links its one CPU backend
std::string g_reason;   // why that one (or, with g_error set, why none)
std::string g_error;    // non-empty: no variant could be loaded (every load fails with it)
std::string g_table;    // lm_cpu_variants' text

#if defined(LLAMART_BACKEND_DL)

struct Variant {
    std::string name, path;
    int score = 0;
    std::string status;  // "picked", "probe failed: ...", "not supported", "" (not probed)
};

// ---- the feature probes (each runs in the forked child) ----
#if defined(__x86_64__)
volatile int g_sink;

__attribute__((target("avx"))) void probe_avx() {
    __m256 a = _mm256_set1_ps((float) g_sink + 1.0f);
    a = _mm256_add_ps(a, a);
    g_sink = (int) _mm256_cvtss_f32(a);
}
__attribute__((target("avx2"))) void probe_avx2() {
    __m256i a = _mm256_set1_epi32(g_sink + 1);
    a = _mm256_add_epi32(a, a);
    g_sink = _mm256_extract_epi32(a, 0);
}
__attribute__((target("fma"))) void probe_fma() {
    __m128 a = _mm_set1_ps((float) g_sink + 1.0f);
    a = _mm_fmadd_ps(a, a, a);
    g_sink = (int) _mm_cvtss_f32(a);
}
__attribute__((target("f16c"))) void probe_f16c() {
    __m128i h = _mm_cvtps_ph(_mm_set1_ps((float) g_sink + 1.0f), 0);
    g_sink = (int) _mm_cvtss_f32(_mm_cvtph_ps(h));
}
__attribute__((target("bmi2"))) void probe_bmi2() {
    g_sink = (int) _pdep_u32((unsigned) g_sink + 5u, 0xF0F0u);
}
__attribute__((target("avx512f"))) void probe_avx512() {
    __m512i a = _mm512_set1_epi32(g_sink + 1);
    a = _mm512_add_epi32(a, a);
    g_sink = _mm512_reduce_add_epi32(a);
}
__attribute__((target("avx512f,avx512vbmi"))) void probe_avx512_vbmi() {
    __m512i a = _mm512_set1_epi8((char) (g_sink + 1));
    a = _mm512_permutexvar_epi8(a, a);
    g_sink = _mm512_reduce_add_epi32(a);
}
__attribute__((target("avx512f,avx512vnni"))) void probe_avx512_vnni() {
    __m512i a = _mm512_set1_epi32(g_sink + 1);
    a = _mm512_dpbusd_epi32(a, a, a);
    g_sink = _mm512_reduce_add_epi32(a);
}
__attribute__((target("avx512f,avx512bf16"))) void probe_avx512_bf16() {
    __m512 a = _mm512_set1_ps((float) g_sink + 1.0f);
    __m512bh b = _mm512_cvtne2ps_pbh(a, a);
    a = _mm512_dpbf16_ps(a, b, b);
    g_sink = (int) _mm512_reduce_add_ps(a);
}
__attribute__((target("avxvnni"))) void probe_avx_vnni() {
    __m256i a = _mm256_set1_epi32(g_sink + 1);
    a = _mm256_dpbusd_avx_epi32(a, a, a);
    g_sink = _mm256_extract_epi32(a, 0);
}
// AMX as ggml's kernels use it: the XTILEDATA permission (per process), a palette-1
// configuration, a tile instruction, then the tiles released.
__attribute__((target("amx-tile,amx-int8"))) bool probe_amx() {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) != 0) {
        return false;
    }
    alignas(64) static unsigned char cfg[64];
    std::memset(cfg, 0, sizeof cfg);
    cfg[0] = 1;                                   // palette 1
    for (int t = 0; t < 3; t++) {
        cfg[16 + 2 * t] = 64;                     // colsb[t] = 64 bytes
        cfg[48 + t] = 16;                         // rows[t] = 16
    }
    _tile_loadconfig(cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_dpbssd(0, 1, 2);
    alignas(64) static int32_t out[16 * 16];
    _tile_stored(0, out, 64);
    _tile_release();
    g_sink = out[0];
    return true;
}
#endif

// Executes one instruction of a compiled-in feature; false where it is known to be unusable.
bool probe_feature(const char * name) {
#if defined(__x86_64__)
    const std::string f = name;
    if (f == "AVX") { probe_avx(); }
    else if (f == "AVX2") { probe_avx2(); }
    else if (f == "FMA") { probe_fma(); }
    else if (f == "F16C") { probe_f16c(); }
    else if (f == "BMI2") { probe_bmi2(); }
    else if (f == "AVX512") { probe_avx512(); }
    else if (f == "AVX512_VBMI") { probe_avx512_vbmi(); }
    else if (f == "AVX512_VNNI") { probe_avx512_vnni(); }
    else if (f == "AVX512_BF16") { probe_avx512_bf16(); }
    else if (f == "AVX_VNNI") { probe_avx_vnni(); }
    else if (f == "AMX_INT8") { return probe_amx(); }
#else
    (void) name;
#endif
    return true;
}

// The child: load the variant, read its compiled-in features, run a probe for each; the
// features probed go to fd; exit 0, 3 (a probe reported failure) or die of a signal.
[[noreturn]] void probe_child(const Variant & v, int fd) {
    signal(SIGILL, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    void * h = dlopen(v.path.c_str(), RTLD_NOW | RTLD_LOCAL);
    auto init = h ? (ggml_backend_reg_t (*)()) dlsym(h, "ggml_backend_init") : nullptr;
    ggml_backend_reg_t reg = init ? init() : nullptr;
    auto get_features = reg ? (ggml_backend_feature * (*)(ggml_backend_reg_t))
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features") : nullptr;
    if (get_features == nullptr) {
        _exit(4);
    }
    // a test hook: the probe of this variant dies as a faulting instruction would
    const char * fail = std::getenv("LLAMART_CPU_PROBE_FAIL");
    const bool forced_fault = fail != nullptr && v.name == fail;
    for (ggml_backend_feature * f = get_features(reg); f->name != nullptr; f++) {
        if (std::strcmp(f->value, "1") != 0) {
            continue;
        }
        const std::string word = std::string(f->name) + " ";  // the parent names the last one
        (void) !write(fd, word.data(), word.size());
        if (forced_fault && std::strcmp(f->name, "AMX_INT8") == 0) {
            raise(SIGILL);
        }
        if (!probe_feature(f->name)) {
            _exit(3);
        }
    }
    if (forced_fault) {
        raise(SIGILL);
    }
    _exit(0);
}

// Runs the probe of v in a child (bounded: 20 s); "" when it passed, else why not.
std::string probe(const Variant & v) {
    int fds[2];
    if (pipe(fds) != 0) {
        return "";  // cannot probe: trust ggml's score, as ggml itself does
    }
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return "";
    }
    if (pid == 0) {
        close(fds[0]);
        probe_child(v, fds[1]);
    }
    close(fds[1]);
    int status = 0;
    bool done = false;
    for (int i = 0; i < 2000 && !done; i++) {
        const pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            done = true;
        } else {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, nullptr);
        }
    }
    std::string feats;
    char buf[256];
    ssize_t n;
    while (done && (n = read(fds[0], buf, sizeof buf)) > 0) {
        feats.append(buf, (size_t) n);
    }
    close(fds[0]);
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return "its probe did not finish in 20 s";
    }
    while (!feats.empty() && feats.back() == ' ') {
        feats.pop_back();
    }
    const size_t sp = feats.find_last_of(' ');
    const std::string last = sp == std::string::npos ? feats : feats.substr(sp + 1);
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        const char * sname = sig == SIGILL ? "SIGILL" : sig == SIGSEGV ? "SIGSEGV"
                           : sig == SIGBUS ? "SIGBUS" : "a signal";
        return std::string("its probe died of ") + sname + " (" + std::to_string(sig) + ")" +
               (last.empty() ? std::string() : " executing " + last);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
        return "its " + last + " probe failed (the kernel refused the AMX tile data permission)";
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return WEXITSTATUS(status) == 4 ? "it could not be loaded to read its features"
               : "its probe exited with status " + std::to_string(WEXITSTATUS(status));
    }
    return "";
}

// Every libggml-cpu-<name>.so in dir with ggml's score for this CPU (0: not supported).
std::vector<Variant> list_variants(const std::string & dir) {
    std::vector<Variant> out;
    DIR * d = opendir(dir.c_str());
    if (d == nullptr) {
        return out;
    }
    const std::string prefix = "libggml-cpu-", suffix = ".so";
    while (struct dirent * e = readdir(d)) {
        const std::string file = e->d_name;
        if (file.size() <= prefix.size() + suffix.size() || file.compare(0, prefix.size(), prefix) != 0 ||
            file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0) {
            continue;
        }
        Variant v;
        v.name = file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
        v.path = dir + "/" + file;
        if (void * h = dlopen(v.path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
            if (auto score = (int (*)()) dlsym(h, "ggml_backend_score")) {
                v.score = score();
            }
            dlclose(h);
        }
        v.status = v.score > 0 ? "" : "not supported by this CPU (ggml's score 0)";
        out.push_back(v);
    }
    closedir(d);
    std::sort(out.begin(), out.end(), [](const Variant & a, const Variant & b) {
        return a.score != b.score ? a.score > b.score : a.name < b.name;
    });
    return out;
}

std::string names(const std::vector<Variant> & vs) {
    std::string s;
    for (const Variant & v : vs) {
        s += (s.empty() ? "" : ", ") + v.name;
    }
    return s;
}

void pick(const std::string & dir) {
    std::vector<Variant> vs = list_variants(dir);
    const char * forced = std::getenv("LLAMART_CPU_VARIANT");
    const Variant * chosen = nullptr;
    if (forced != nullptr && *forced != '\0') {
        auto it = std::find_if(vs.begin(), vs.end(), [&](const Variant & v) { return v.name == forced; });
        if (it == vs.end()) {
            g_error = std::string("LLAMART_CPU_VARIANT=") + forced + ": no such CPU variant in " +
                      dir + " (there are: " + names(vs) + ")";
        } else if (it->score <= 0) {
            g_error = std::string("LLAMART_CPU_VARIANT=") + forced +
                      ": this CPU lacks features the variant needs (ggml's score is 0)";
        } else if (const std::string why = probe(*it); !why.empty()) {
            it->status = "probe failed: " + why;
            g_error = std::string("LLAMART_CPU_VARIANT=") + forced + ": unusable here, " + why;
        } else {
            it->status = "picked";
            chosen = &*it;
            g_reason = "forced by LLAMART_CPU_VARIANT";
        }
    } else {
        std::string skipped;
        for (Variant & v : vs) {
            if (v.score <= 0) {
                continue;
            }
            const std::string why = probe(v);
            if (why.empty()) {
                v.status = "picked";
                chosen = &v;
                break;
            }
            v.status = "probe failed: " + why;
            skipped += (skipped.empty() ? "" : "; ") + v.name + ": " + why;
            lm::log_line(2, "llamart: CPU variant " + v.name + " skipped: " + why);
        }
        if (chosen != nullptr) {
            g_reason = skipped.empty()
                ? "the best of " + std::to_string(vs.size()) + " variants by ggml's score; its probe passed"
                : "fallback: " + skipped;
        } else {
            g_error = "no CPU variant in " + dir + " runs on this CPU" +
                      (skipped.empty() ? std::string() : " (" + skipped + ")");
        }
    }
    for (const Variant & v : vs) {
        g_table += v.name + "\t" + std::to_string(v.score) + "\t" +
                   (v.status.empty() ? "not probed" : v.status) + "\n";
    }
    if (chosen != nullptr) {
        if (ggml_backend_load(chosen->path.c_str()) == nullptr) {
            g_error = "ggml could not load " + chosen->path;
            return;
        }
        g_variant = chosen->name;
    }
}

#endif

}  // namespace

namespace lm {

void ensure_backends() {
    std::call_once(g_backends_once, [] {
#if defined(LLAMART_BACKEND_DL)
        Dl_info info;
        if (dladdr(reinterpret_cast<void *>(&lm_version), &info) != 0 && info.dli_fname) {
            std::string dir = info.dli_fname;
            const size_t slash = dir.find_last_of('/');
            dir = slash == std::string::npos ? "." : dir.substr(0, slash);
            pick(dir);
            lm::log_line(g_error.empty() ? 1 : 3, g_error.empty()
                ? "llamart: CPU variant " + g_variant + " (" + g_reason + ")" : "llamart: " + g_error);
        }
#endif
    });
}

const std::string & cpu_variant() {
    ensure_backends();
    return g_variant;
}

const std::string & cpu_variant_reason() {
    ensure_backends();
    return g_reason;
}

const std::string & cpu_error() {
    ensure_backends();
    return g_error;
}

}  // namespace lm

extern "C" int32_t lm_cpu_variants(char * buf, int32_t size) {
    lm::ensure_backends();
    return lm::copy_out(g_table, buf, size);
}
