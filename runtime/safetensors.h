/* safetensors files (huggingface/safetensors): an 8-byte little-endian header length N, N bytes
 * of JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "value"}}, then the data section that the offsets index.
 * Self-contained runtime code: libc and cJSON only. Errors are one-line messages that start
 * with the path (or "<memory>"). */
#ifndef TDSL_RT_SAFETENSORS_H
#define TDSL_RT_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

/* Same order as ir_dtype in common/tensor.h. */
enum { ST_BOOL, ST_I32, ST_I64, ST_F16, ST_BF16, ST_F32, ST_F64, ST_DTYPE_COUNT };

#define ST_MAX_RANK 8
#define ST_MAX_NAME 127

typedef struct st_tensor {
    char name[ST_MAX_NAME + 1];
    int dtype;                  /* ST_F32, ... */
    int rank;
    int64_t shape[ST_MAX_RANK];
    const void *data;           /* into the file's buffer: may be unaligned, copy with memcpy */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Copies buf and validates the whole file; NULL with err set when anything is wrong. */
st_file *st_open_mem(const uint8_t *buf, size_t len, char *err, size_t errlen);
/* Reads the whole file into memory and validates it like st_open_mem. */
st_file *st_open(const char *path, char *err, size_t errlen);
int st_count(const st_file *f);
const st_tensor *st_get(const st_file *f, int i);              /* sorted by name; NULL if out of range */
const st_tensor *st_find(const st_file *f, const char *name);  /* NULL if absent */
/* "__metadata__" string value for key, or NULL. */
const char *st_metadata(const st_file *f, const char *key);
/* The metadata key under which <module>_save lists its optimizer state tensors, one name per
 * line: a module without them skips them on load. */
#define OPTIMIZER_STATE_KEY "optimizer_state"
/* Whether name is one of the lines of the metadata value for key. */
int st_metadata_lists(const st_file *f, const char *key, const char *name);
void st_close(st_file *f);

/* Writes n tensors (names unique, <= 127 bytes; nbytes == numel * itemsize) atomically:
 * path.tmp.<pid> is written, fsync'ed and renamed over path; on any failure the temporary
 * is removed and a previous file at path is left untouched. Returns 0 or -1 with err set. */
int st_save(const char *path, const st_tensor *ts, int n, char *err, size_t errlen);
/* st_save with a "__metadata__" object of nmeta string pairs (keys distinct, not NULL). */
int st_save_meta(const char *path, const st_tensor *ts, int n, const char *const *meta_keys,
                 const char *const *meta_values, int nmeta, char *err, size_t errlen);

const char *st_dtype_name(int dtype);   /* "F32"; NULL if unknown */
size_t st_dtype_size(int dtype);        /* bytes per element; 0 if unknown */

#endif
