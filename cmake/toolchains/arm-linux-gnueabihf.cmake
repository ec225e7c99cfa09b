# Cross toolchain: 32-bit Raspberry Pi OS / Debian armhf (Pi 2 v1.1, 3, 4, 5 in 32-bit mode),
# CPython 3.11. ARMv7-A, hard-float ABI, NEON; CMakeLists.txt adds -mfpu=neon
# -mfloat-abi=hard to ftp_core as well, these flags make every object (cext too) agree.
# CMAKE_SYSTEM_PROCESSOR "armv7l" is what CMakeLists.txt matches as ARMv7.
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(DT_TRIPLET arm-linux-gnueabihf)
set(DT_SOABI_ARCH arm-linux-gnueabihf)
set(DT_DEB_ARCH armhf)
set(DT_QEMU_ARCH arm)
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon -mfloat-abi=hard")
set(CMAKE_CXX_FLAGS_INIT "-march=armv7-a -mfpu=neon -mfloat-abi=hard")
include(${CMAKE_CURRENT_LIST_DIR}/arm-common.cmake)
