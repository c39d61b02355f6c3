# Fetch, verify and extract the pinned llama.cpp source (see llama_cpp_pin.cmake) into a cache
# folder outside git.  Sets LLAMART_LLAMA_DIR.  The sdist is fetched by package name with pip,
# so only the Python package index is contacted.
include(${CMAKE_CURRENT_LIST_DIR}/llama_cpp_pin.cmake)

set(LLAMART_CACHE_DIR "${CMAKE_CURRENT_LIST_DIR}/../.cache" CACHE PATH
    "Folder for downloaded and extracted third-party sources (never committed)")
get_filename_component(LLAMART_CACHE_DIR "${LLAMART_CACHE_DIR}" ABSOLUTE)

set(_sdist_name "llama_cpp_python-${LLAMART_LLAMA_SDIST_VERSION}")
set(_sdist "${LLAMART_CACHE_DIR}/downloads/${_sdist_name}.tar.gz")
set(_src_root "${LLAMART_CACHE_DIR}/${_sdist_name}")
set(LLAMART_LLAMA_DIR "${_src_root}/vendor/llama.cpp")
# our own small patches of the pinned source (cmake/patches/*.patch, each naming its upstream
# pull request), applied once after extraction; a changed patch set re-extracts the tree
file(GLOB _patches "${CMAKE_CURRENT_LIST_DIR}/patches/*.patch")
list(SORT _patches)
set(_patch_ids "")
foreach(_p IN LISTS _patches)
  file(SHA256 "${_p}" _p_sha)
  string(APPEND _patch_ids "${_p_sha}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_p}")
endforeach()
string(SHA256 _patch_id "${LLAMART_LLAMA_SDIST_SHA256}${_patch_ids}")
set(_stamp "${_src_root}/.llamart-extracted-${_patch_id}")

if(NOT EXISTS "${_stamp}")
  if(NOT EXISTS "${_sdist}")
    find_program(LLAMART_PYTHON NAMES python3 python REQUIRED)
    message(STATUS "llamart: fetching ${LLAMART_LLAMA_SDIST_PACKAGE}==${LLAMART_LLAMA_SDIST_VERSION} sdist with pip")
    execute_process(
      COMMAND "${LLAMART_PYTHON}" -m pip download --no-deps --no-binary :all: --no-build-isolation
              --disable-pip-version-check -d "${LLAMART_CACHE_DIR}/downloads"
              "${LLAMART_LLAMA_SDIST_PACKAGE}==${LLAMART_LLAMA_SDIST_VERSION}"
      RESULT_VARIABLE _rc OUTPUT_QUIET)
    if(NOT EXISTS "${_sdist}")
      # pip may stop after saving the file when it cannot prepare metadata: only the file matters
      message(FATAL_ERROR "llamart: could not download ${_sdist_name}.tar.gz (pip exit ${_rc})")
    endif()
  endif()
  file(SHA256 "${_sdist}" _sha)
  if(NOT _sha STREQUAL LLAMART_LLAMA_SDIST_SHA256)
    file(REMOVE "${_sdist}")
    message(FATAL_ERROR "llamart: sha256 mismatch for ${_sdist}: got ${_sha}, "
                        "expected ${LLAMART_LLAMA_SDIST_SHA256}")
  endif()
  file(REMOVE_RECURSE "${_src_root}")
  file(ARCHIVE_EXTRACT INPUT "${_sdist}" DESTINATION "${LLAMART_CACHE_DIR}")
  # the sdist carries a dangling submodule pointer that makes cmake call git in vain
  file(REMOVE_RECURSE "${LLAMART_LLAMA_DIR}/.git")
  find_program(LLAMART_PATCH patch REQUIRED)
  foreach(_p IN LISTS _patches)
    message(STATUS "llamart: applying ${_p}")
    execute_process(COMMAND "${LLAMART_PATCH}" -p1 --forward --batch --dry-run -i "${_p}"
                    WORKING_DIRECTORY "${LLAMART_LLAMA_DIR}" RESULT_VARIABLE _rc
                    OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "llamart: ${_p} no longer applies to ${_sdist_name}:\n${_out}")
    endif()
    execute_process(COMMAND "${LLAMART_PATCH}" -p1 --forward --batch --quiet -i "${_p}"
                    WORKING_DIRECTORY "${LLAMART_LLAMA_DIR}" RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "llamart: applying ${_p} failed (exit ${_rc})")
    endif()
  endforeach()
  file(WRITE "${_stamp}" "${LLAMART_LLAMA_SDIST_SHA256} ${_patches}\n")
endif()
message(STATUS "llamart: llama.cpp source at ${LLAMART_LLAMA_DIR}")
