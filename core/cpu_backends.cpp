// ggml's CPU backend under runtime dispatch (native builds with LLAMART_BACKEND_DL): the
// libggml-cpu-<level>.so variants sit beside this library and ggml loads the best one for the
// running CPU.  ggml's own search looks beside the executable (python's) and in the working
// directory, so the folder is found from this library's own address (dladdr).
#include "internal.h"

#include <mutex>
#include <string>

#if defined(LLAMART_BACKEND_DL)
#include <dlfcn.h>
#include <link.h>

#include "ggml-backend.h"
#endif

namespace {

std::once_flag g_backends_once;
std::string g_variant;  // "zen4", ... ; "" when the build links its one CPU backend

#if defined(LLAMART_BACKEND_DL)
int find_variant(struct dl_phdr_info * info, size_t, void * out) {
    const std::string path = info->dlpi_name ? info->dlpi_name : "";
    const std::string prefix = "libggml-cpu-";
    const size_t slash = path.find_last_of('/');
    const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.compare(0, prefix.size(), prefix) == 0) {
        const size_t dot = base.find(".so", prefix.size());
        *static_cast<std::string *>(out) = base.substr(prefix.size(), dot - prefix.size());
        return 1;
    }
    return 0;
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
            ggml_backend_load_all_from_path(dir.c_str());
        }
        dl_iterate_phdr(find_variant, &g_variant);
#endif
    });
}

const std::string & cpu_variant() {
    ensure_backends();
    return g_variant;
}

}  // namespace lm
