// What this build of ftp_core is: compiler and target architecture (shown by `deepthings info --build`).
#pragma once
#include <string>

namespace ftp {
std::string build_info();
}
