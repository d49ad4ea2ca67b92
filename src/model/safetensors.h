/* safetensors.h: read (mmap) and write the safetensors format: an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
 * then the data. Reading checks everything a corrupt or hostile file could get wrong. */
#ifndef ATTAMBA_SAFETENSORS_H
#define ATTAMBA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "attamba/attamba.h"

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2, ST_I8 = 3 } st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;  /* byte offsets inside the data section */
} st_tensor;

typedef struct st_file {
    void *map;
    size_t map_size;
    const unsigned char *data;  /* start of the data section */
    uint64_t data_size;
    st_tensor *tensors;
    int n_tensors;
} st_file;

/* Maps and validates path: header length within the file, valid JSON object, known dtypes, shapes
 * whose byte size equals end - begin, offsets inside the data, no two tensors overlapping. */
attamba_status st_open(const char *path, st_file *f, char *err, size_t err_size);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
int64_t st_numel(const st_tensor *t);
/* The tensor's values as f32 (f16, bf16 and i8 are converted). out holds st_numel(t) floats. */
void st_read_f32(const st_file *f, const st_tensor *t, float *out);

typedef struct st_entry {
    const char *name;
    int ndim;
    const int64_t *shape;
    const void *data;   /* row-major, little-endian values of dtype */
    st_dtype dtype;     /* F32 (the default), F16 or I8 */
} st_entry;
/* Writes the entries to path through a temporary file and a rename. metadata: string pairs
 * (key, value, key, value, ..., NULL) or NULL. */
attamba_status st_write(const char *path, const st_entry *entries, int n, const char *const *metadata, char *err,
                        size_t err_size);

#endif
