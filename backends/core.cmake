# The llamart core (this folder, and llama.cpp's JSON-schema converter from common/) as sources
# of a target, for the native library and the WebAssembly module alike:
# llamart_core(<target> LORA <ON|OFF>).
# The version numbers come from llamart/_version.py, the one place they are written.

set(_llamart_core_dir "${CMAKE_CURRENT_LIST_DIR}")
set(_version_py "${_llamart_core_dir}/../llamart/_version.py")
file(READ "${_version_py}" _version_text)
string(REGEX MATCH "__version__ = \"([^\"]+)\"" _ "${_version_text}")
set(LLAMART_VERSION "${CMAKE_MATCH_1}")
string(REGEX MATCH "C_ABI_VERSION = ([0-9]+)" _ "${_version_text}")
set(LLAMART_ABI_VERSION "${CMAKE_MATCH_1}")
if(NOT LLAMART_VERSION OR NOT LLAMART_ABI_VERSION)
  message(FATAL_ERROR "llamart: no __version__ / C_ABI_VERSION in ${_version_py}")
endif()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_version_py}")

set(LLAMART_CORE_SOURCES errors.cpp session.cpp text.cpp eval.cpp sampling.cpp adapters.cpp
    embed.cpp gguf_scan.cpp cpu_backends.cpp grammar.cpp common_support.cpp slots.cpp)
list(TRANSFORM LLAMART_CORE_SOURCES PREPEND "${_llamart_core_dir}/")
# llama.cpp's JSON-schema -> GBNF converter and what it needs from common/ (common.cpp is not
# built: backends/common_support.cpp has the three string helpers it calls); nlohmann json comes
# from llama.cpp's vendor/.  grammar.cpp also uses llama.cpp's GBNF parser (src/llama-grammar.h).
set(LLAMART_COMMON_SOURCES json-schema-to-grammar.cpp json-schema.cpp json.cpp trie.cpp unicode.cpp)
list(TRANSFORM LLAMART_COMMON_SOURCES PREPEND "${LLAMART_LLAMA_DIR}/common/")
set(LLAMART_HEADER "${_llamart_core_dir}/llamart.h")

function(llamart_core target)
  cmake_parse_arguments(ARG "" "LORA" "" ${ARGN})
  if(ARG_LORA)
    set(_lora 1)
  else()
    set(_lora 0)
  endif()
  target_sources(${target} PRIVATE ${LLAMART_CORE_SOURCES} ${LLAMART_COMMON_SOURCES})
  target_include_directories(${target} PUBLIC "${_llamart_core_dir}")
  target_include_directories(${target} PRIVATE "${LLAMART_LLAMA_DIR}/common"
    "${LLAMART_LLAMA_DIR}/src" "${LLAMART_LLAMA_DIR}/vendor")
  target_link_libraries(${target} PRIVATE llama)
  target_compile_features(${target} PRIVATE cxx_std_17)
  target_compile_definitions(${target} PRIVATE
    LLAMART_VERSION="${LLAMART_VERSION}" LLAMART_ABI_VERSION=${LLAMART_ABI_VERSION}
    LLAMART_LORA=${_lora})
endfunction()
