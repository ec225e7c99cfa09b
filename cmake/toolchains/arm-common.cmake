# Shared part of the ARM cross toolchains (included by aarch64-linux-gnu.cmake and
# arm-linux-gnueabihf.cmake, which set DT_TRIPLET and DT_SOABI_ARCH first).
#
# The extension is compiled with Debian's cross g++ against the *target's* CPython 3.11
# headers (Debian's libpython3.11-dev for that architecture, unpacked by
# tools/arm/fetch_python_headers.sh into build/arm-sysroot/<triplet>/). The host Python only
# runs the build; nothing of its pyconfig.h or EXT_SUFFIX may leak into the module, because
# armv7 is ILP32 (sizeof(long) == 4) and the host is LP64.
set(CMAKE_SYSTEM_NAME Linux)

find_program(DT_CXX ${DT_TRIPLET}-g++ REQUIRED)
find_program(DT_CC ${DT_TRIPLET}-gcc REQUIRED)
set(CMAKE_C_COMPILER ${DT_CC})
set(CMAKE_CXX_COMPILER ${DT_CXX})

# Libraries and headers come from the cross compiler's own sysroot; programs (the host
# Python, ninja) and CMake packages (pybind11's config, pure CMake) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${DT_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Target Python headers: one flat include dir (fetch_python_headers.sh replaces Debian's
# multiarch pyconfig.h wrapper by the target's own pyconfig.h).
if(NOT DEFINED DEEPTHINGS_PY_SYSROOT)
  if(DEFINED ENV{DEEPTHINGS_PY_SYSROOT})
    set(DEEPTHINGS_PY_SYSROOT "$ENV{DEEPTHINGS_PY_SYSROOT}")
  else()
    get_filename_component(DEEPTHINGS_PY_SYSROOT
      "${CMAKE_CURRENT_LIST_DIR}/../../build/arm-sysroot/${DT_TRIPLET}" ABSOLUTE)
  endif()
endif()
set(DEEPTHINGS_PY_SYSROOT "${DEEPTHINGS_PY_SYSROOT}" CACHE PATH "unpacked libpython3.11-dev of the target")
set(_dt_pyinc "${DEEPTHINGS_PY_SYSROOT}/usr/include/python3.11")
if(NOT EXISTS "${_dt_pyinc}/Python.h")
  message(FATAL_ERROR "target Python headers not found in ${_dt_pyinc}: run "
                      "tools/arm/fetch_python_headers.sh (or tools/build_arm_wheels.sh)")
endif()
# FORCE: scikit-build-core pre-seeds these from the host interpreter.
set(Python_INCLUDE_DIR "${_dt_pyinc}" CACHE PATH "target CPython headers" FORCE)
set(Python3_INCLUDE_DIR "${_dt_pyinc}" CACHE PATH "target CPython headers" FORCE)

# pybind11 cannot ask a foreign interpreter for its suffix: state it (Debian's EXT_SUFFIX).
set(PYTHON_MODULE_EXTENSION ".cpython-311-${DT_SOABI_ARCH}.so" CACHE INTERNAL "")
set(PYTHON_MODULE_DEBUG_POSTFIX "" CACHE INTERNAL "")
set(PYTHON_IS_DEBUG OFF CACHE INTERNAL "")

# FindPython insists on an interpreter of the target's pointer size next to
# Development.Module (a 64-bit host Python is "Wrong architecture" for armv7): give it the
# target's own CPython 3.11 from the emulated userland (tools/arm/make_root.sh), run by
# qemu-user through binfmt_misc. QEMU_LD_PREFIX points qemu at that root's loader and libs.
# It also makes FindPython report the target's real version and SOABI.
if(NOT DEFINED DEEPTHINGS_TARGET_ROOT)
  if(DEFINED ENV{DEEPTHINGS_TARGET_ROOT})
    set(DEEPTHINGS_TARGET_ROOT "$ENV{DEEPTHINGS_TARGET_ROOT}")
  else()
    get_filename_component(DEEPTHINGS_TARGET_ROOT
      "${CMAKE_CURRENT_LIST_DIR}/../../build/arm-roots/${DT_DEB_ARCH}" ABSOLUTE)
  endif()
endif()
set(DEEPTHINGS_TARGET_ROOT "${DEEPTHINGS_TARGET_ROOT}" CACHE PATH "emulated target userland")
if(NOT EXISTS "${DEEPTHINGS_TARGET_ROOT}/usr/bin/python3.11")
  message(FATAL_ERROR "no target Python at ${DEEPTHINGS_TARGET_ROOT}/usr/bin/python3.11: run "
                      "tools/arm/make_root.sh ${DT_DEB_ARCH} ${DEEPTHINGS_TARGET_ROOT}")
endif()
set(ENV{QEMU_LD_PREFIX} "${DEEPTHINGS_TARGET_ROOT}")
set(Python_EXECUTABLE "${DEEPTHINGS_TARGET_ROOT}/usr/bin/python3.11" CACHE FILEPATH "target CPython" FORCE)
set(Python3_EXECUTABLE "${Python_EXECUTABLE}" CACHE FILEPATH "target CPython" FORCE)

find_program(DT_QEMU qemu-${DT_QEMU_ARCH}-static qemu-${DT_QEMU_ARCH} REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${DT_QEMU} -L ${DEEPTHINGS_TARGET_ROOT})
