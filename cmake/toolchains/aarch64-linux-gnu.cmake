# Cross toolchain: 64-bit Raspberry Pi OS / Debian arm64 (Pi 3, 4, 5), CPython 3.11.
# Baseline ARMv8.0-A (Cortex-A53 of the Pi 3), tuned for the Pi 4's Cortex-A72; NEON
# (Advanced SIMD) is mandatory on AArch64, so the NEON kernels need no extra flag.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(DT_TRIPLET aarch64-linux-gnu)
set(DT_SOABI_ARCH aarch64-linux-gnu)
set(DT_DEB_ARCH arm64)
set(DT_QEMU_ARCH aarch64)
set(CMAKE_C_FLAGS_INIT "-march=armv8-a -mtune=cortex-a72")
set(CMAKE_CXX_FLAGS_INIT "-march=armv8-a -mtune=cortex-a72")
include(${CMAKE_CURRENT_LIST_DIR}/arm-common.cmake)
