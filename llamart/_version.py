"""The one version source: pyproject (scikit-build-core's regex provider), ``llamart.__version__``
and the C library (CMake compiles both numbers into ``lm_version()``/``lm_abi_version()``)."""

__version__ = "0.2.0"
# bump whenever backends/llamart.h changes: Python refuses a libllamart built with another number
C_ABI_VERSION = 6
