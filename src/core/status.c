#include "core.h"

const char *attamba_status_str(attamba_status s) {
    switch (s) {
    case ATTAMBA_OK: return "ok";
    case ATTAMBA_ERR_INVALID_ARG: return "invalid argument";
    case ATTAMBA_ERR_SHAPE: return "shape mismatch";
    case ATTAMBA_ERR_NO_PLATFORM: return "no OpenCL platform";
    case ATTAMBA_ERR_NO_DEVICE: return "no matching OpenCL device";
    case ATTAMBA_ERR_OUT_OF_MEMORY: return "out of memory";
    case ATTAMBA_ERR_BUILD: return "OpenCL program build failed";
    case ATTAMBA_ERR_OPENCL: return "OpenCL error";
    case ATTAMBA_ERR_IO: return "I/O error";
    case ATTAMBA_ERR_FORMAT: return "corrupt or inconsistent data";
    case ATTAMBA_ERR_UNSUPPORTED: return "unsupported";
    case ATTAMBA_ERR_INTERNAL: return "internal error";
    case ATTAMBA_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

#define STR2(x) #x
#define STR(x) STR2(x)
const char *attamba_version(void) {
    return STR(ATTAMBA_VERSION_MAJOR) "." STR(ATTAMBA_VERSION_MINOR) "." STR(ATTAMBA_VERSION_PATCH);
}
