/* Device discovery and selection. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

const char *rt_cl_error_name(cl_int err) {
    switch (err) {
#define E(x) case x: return #x;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
        E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "unknown OpenCL error";
    }
}

static void info_string(cl_device_id d, cl_device_info what, char *out, size_t n) {
    out[0] = 0;
    if (clGetDeviceInfo(d, what, n, out, NULL) != CL_SUCCESS) out[0] = 0;
    out[n - 1] = 0;
    /* drivers pad some strings with spaces */
    for (size_t len = strlen(out); len && isspace((unsigned char)out[len - 1]); len--) out[len - 1] = 0;
}

static void fill_info(rt_device *r, int pi, int di) {
    attamba_device_info *i = &r->info;
    memset(i, 0, sizeof *i);
    i->platform_index = pi;
    i->device_index = di;
    clGetPlatformInfo(r->platform, CL_PLATFORM_NAME, sizeof i->platform_name, i->platform_name, NULL);
    i->platform_name[sizeof i->platform_name - 1] = 0;
    info_string(r->device, CL_DEVICE_NAME, i->name, sizeof i->name);
    info_string(r->device, CL_DEVICE_VENDOR, i->vendor, sizeof i->vendor);
    info_string(r->device, CL_DRIVER_VERSION, i->driver_version, sizeof i->driver_version);
    info_string(r->device, CL_DEVICE_OPENCL_C_VERSION, i->opencl_c_version, sizeof i->opencl_c_version);
    cl_device_type t = 0;
    clGetDeviceInfo(r->device, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    i->type = (t & CL_DEVICE_TYPE_GPU) ? ATTAMBA_DEVICE_GPU
            : (t & CL_DEVICE_TYPE_ACCELERATOR) ? ATTAMBA_DEVICE_ACCELERATOR
            : (t & CL_DEVICE_TYPE_CPU) ? ATTAMBA_DEVICE_CPU : ATTAMBA_DEVICE_OTHER;
    cl_uint cu = 0;
    cl_ulong gm = 0, ma = 0, lm = 0;
    size_t wg = 0;
    clGetDeviceInfo(r->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    clGetDeviceInfo(r->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gm, &gm, NULL);
    clGetDeviceInfo(r->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ma, &ma, NULL);
    clGetDeviceInfo(r->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lm, &lm, NULL);
    clGetDeviceInfo(r->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    i->compute_units = cu;
    i->global_mem_bytes = gm;
    i->max_alloc_bytes = ma;
    i->local_mem_bytes = lm;
    i->max_work_group_size = wg;
    size_t n = 0;
    if (clGetDeviceInfo(r->device, CL_DEVICE_EXTENSIONS, 0, NULL, &n) == CL_SUCCESS && n) {
        char *ext = malloc(n + 1);
        if (ext && clGetDeviceInfo(r->device, CL_DEVICE_EXTENSIONS, n, ext, NULL) == CL_SUCCESS) {
            ext[n] = 0;
            i->has_fp16 = strstr(ext, "cl_khr_fp16") != NULL;
            i->has_fp64 = strstr(ext, "cl_khr_fp64") != NULL;
            i->has_subgroups = strstr(ext, "cl_khr_subgroups") || strstr(ext, "cl_intel_subgroups");
        }
        free(ext);
    }
}

attamba_status rt_devices_enumerate(rt_device **out, int *count, char *errbuf, size_t errbuf_size) {
    *out = NULL;
    *count = 0;
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0))
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_NO_PLATFORM,
                           "no OpenCL platform found: install an OpenCL driver (ICD), e.g. "
                           "'apt-get install pocl-opencl-icd' for the CPU, or your GPU vendor's "
                           "OpenCL runtime; check /etc/OpenCL/vendors or set OCL_ICD_VENDORS");
    if (err != CL_SUCCESS)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OPENCL, "clGetPlatformIDs: %s",
                           rt_cl_error_name(err));
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    clGetPlatformIDs(np, plats, NULL);
    rt_device *devs = NULL;
    int n = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
        cl_device_id *ids = calloc(nd, sizeof *ids);
        rt_device *grown = realloc(devs, (size_t)(n + (int)nd) * sizeof *devs);
        if (!ids || !grown) {
            free(ids);
            free(grown ? grown : devs);
            free(plats);
            return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        }
        devs = grown;
        clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL);
        for (cl_uint d = 0; d < nd; d++) {
            devs[n].platform = plats[p];
            devs[n].device = ids[d];
            fill_info(&devs[n], (int)p, (int)d);
            n++;
        }
        free(ids);
    }
    free(plats);
    *out = devs;
    *count = n;
    return ATTAMBA_OK;
}

const char *attamba_device_type_name(attamba_device_type t) {
    switch (t) {
    case ATTAMBA_DEVICE_CPU: return "cpu";
    case ATTAMBA_DEVICE_GPU: return "gpu";
    case ATTAMBA_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

/* Parses a non-negative decimal index that fills [s, end). */
static int parse_index(const char *s, const char *end, int *v) {
    if (s == end || end - s > 6) return 0;
    int x = 0;
    for (const char *c = s; c < end; c++) {
        if (!isdigit((unsigned char)*c)) return 0;
        x = x * 10 + (*c - '0');
    }
    *v = x;
    return 1;
}

attamba_status rt_device_select(const rt_device *devs, int n, const char *spec, int *index,
                                char *errbuf, size_t errbuf_size) {
    if (n <= 0)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_NO_DEVICE,
                           "the OpenCL platforms report no devices: install a driver "
                           "(e.g. pocl-opencl-icd for the CPU)");
    if (!spec || !*spec) {
        static const attamba_device_type order[] = {ATTAMBA_DEVICE_GPU, ATTAMBA_DEVICE_ACCELERATOR,
                                                    ATTAMBA_DEVICE_CPU, ATTAMBA_DEVICE_OTHER};
        for (size_t o = 0; o < CORE_LEN(order); o++)
            for (int i = 0; i < n; i++)
                if (devs[i].info.type == order[o]) {
                    *index = i;
                    return ATTAMBA_OK;
                }
        *index = 0;
        return ATTAMBA_OK;
    }
    static const attamba_device_type types[] = {ATTAMBA_DEVICE_CPU, ATTAMBA_DEVICE_GPU,
                                                ATTAMBA_DEVICE_ACCELERATOR};
    for (size_t t = 0; t < CORE_LEN(types); t++) {
        if (strcmp(spec, attamba_device_type_name(types[t])) != 0) continue;
        for (int i = 0; i < n; i++)
            if (devs[i].info.type == types[t]) {
                *index = i;
                return ATTAMBA_OK;
            }
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_NO_DEVICE,
                           "no %s device found ('attamba devices' lists what there is)", spec);
    }
    const char *colon = strchr(spec, ':');
    int p, d;
    if (!colon || !parse_index(spec, colon, &p) || !parse_index(colon + 1, colon + strlen(colon), &d))
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG,
                           "bad device '%s': expected P:D (platform and device index, e.g. 0:0), "
                           "gpu, cpu or accelerator", spec);
    for (int i = 0; i < n; i++)
        if (devs[i].info.platform_index == p && devs[i].info.device_index == d) {
            *index = i;
            return ATTAMBA_OK;
        }
    return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_NO_DEVICE,
                       "no device %d:%d ('attamba devices' lists what there is)", p, d);
}

attamba_status rt_device_select_set(const rt_device *devs, int n, const char *spec, int *index, int max,
                                    int *count, char *errbuf, size_t errbuf_size) {
    *count = 0;
    if (!spec || !*spec) {
        attamba_status s = rt_device_select(devs, n, NULL, index, errbuf, errbuf_size);
        if (!s) *count = 1;
        return s;
    }
    int every = !strcmp(spec, "all"), type = -1;
    static const attamba_device_type types[] = {ATTAMBA_DEVICE_CPU, ATTAMBA_DEVICE_GPU, ATTAMBA_DEVICE_ACCELERATOR};
    for (size_t t = 0; t < CORE_LEN(types); t++)
        if (!strcmp(spec, attamba_device_type_name(types[t]))) type = (int)types[t];
    if (every || type >= 0) {
        for (int i = 0; i < n; i++)
            if (every || (int)devs[i].info.type == type) {
                if (*count == max)
                    return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG,
                                       "'%s' selects more than %d devices: list the ones to use (P:D,P:D,...)", spec, max);
                index[(*count)++] = i;
            }
        if (*count) return ATTAMBA_OK;
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_NO_DEVICE,
                           n ? "no %s device found ('attamba devices' lists what there is)"
                             : "the OpenCL platforms report no devices (%s): install a driver "
                               "(e.g. pocl-opencl-icd for the CPU)",
                           spec);
    }
    /* a comma-separated list of single selections, each device at most once */
    const char *p = spec;
    for (;;) {
        size_t len = strcspn(p, ",");
        char one[64];
        if (len == 0 || len >= sizeof one)
            return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG,
                               "bad device list '%s': expected all, gpu, cpu, accelerator or P:D,P:D,...", spec);
        memcpy(one, p, len);
        one[len] = 0;
        int pick;
        RT_TRY(rt_device_select(devs, n, one, &pick, errbuf, errbuf_size));
        for (int k = 0; k < *count; k++)
            if (index[k] == pick)
                return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG,
                                   "device list '%s' names device %d:%d twice", spec, devs[pick].info.platform_index,
                                   devs[pick].info.device_index);
        if (*count == max)
            return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "device list '%s': more than %d devices",
                               spec, max);
        index[(*count)++] = pick;
        if (!p[len]) return ATTAMBA_OK;
        p += len + 1;
    }
}

attamba_status attamba_devices_list(attamba_device_info **out, int *count, char *errbuf,
                                    size_t errbuf_size) {
    rt_device *devs;
    int n;
    *out = NULL;
    *count = 0;
    attamba_status s = rt_devices_enumerate(&devs, &n, errbuf, errbuf_size);
    if (s) return s;
    attamba_device_info *infos = calloc((size_t)(n ? n : 1), sizeof *infos);
    if (!infos) {
        free(devs);
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int i = 0; i < n; i++) infos[i] = devs[i].info;
    free(devs);
    *out = infos;
    *count = n;
    return ATTAMBA_OK;
}

void attamba_devices_free(attamba_device_info *list) { free(list); }
