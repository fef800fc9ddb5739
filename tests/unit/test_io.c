/* File formats (.npy, safetensors), the parameter RNG (Philox) and NumPy-style printing. */
#include <check.h>
#include "files.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/tensor.h"
#include "runtime/philox.h"
#include "runtime/safetensors.h"
#include "tools/npy.h"
#include "tools/printarr.h"

#ifndef TDSL_SOURCE_DIR
#define TDSL_SOURCE_DIR "."
#endif
#define NPY_DIR TDSL_SOURCE_DIR "/tests/data/npy/"
#define ST_DIR TDSL_SOURCE_DIR "/tests/data/safetensors/"

/* ---------------------------------------------------------------- helpers */

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tdsl_test_io_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", path, path);
    if (system(cmd) != 0) { /* best effort cleanup */ }
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

static host_tensor make_tensor(ir_dtype dt, int rank, const int64_t *shape, const double *vals)
{
    host_tensor t;
    ck_assert(host_tensor_alloc(&t, dt, rank, shape));
    for (int64_t i = 0; i < host_tensor_numel(&t); i++)
        host_tensor_set(&t, i, vals ? vals[i] : (double)i);
    return t;
}

/* A .npy image with the given version, header text (padded by us) and data. */
static uint8_t *make_npy(int major, const char *header, const void *data, size_t dlen, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12, hl = strlen(header);
    uint8_t *b = calloc(1, pre + hl + dlen + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)major, b[7] = 0;
    b[8] = (uint8_t)(hl & 0xff), b[9] = (uint8_t)(hl >> 8);
    memcpy(b + pre, header, hl);
    if (dlen)
        memcpy(b + pre + hl, data, dlen);
    *len = pre + hl + dlen;
    return b;
}

/* npy_read_mem must fail with a message containing `want`. */
static void expect_npy_error(const char *header, size_t dlen, const char *want)
{
    uint8_t data[64] = {0};
    size_t len;
    uint8_t *b = make_npy(1, header, data, dlen, &len);
    host_tensor t;
    char err[256] = "";
    ck_assert_int_eq(npy_read_mem(b, len, &t, err, sizeof err), -1);
    ck_assert_ptr_null(t.data);
    ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
    ck_assert_msg(strncmp(err, "<memory>: ", 10) == 0, "error '%s' does not start with the name", err);
    free(b);
}

/* ---------------------------------------------------------------- .npy */

START_TEST(npy_reads_numpy_files)
{
    host_tensor t;
    char err[256];
    /* np.arange(6, dtype=np.float32).reshape(2,3) / 4 */
    ck_assert_int_eq(npy_read(NPY_DIR "f32_2x3.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.dtype, DT_F32);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.shape[0], 2);
    ck_assert_int_eq(t.shape[1], 3);
    for (int i = 0; i < 6; i++)
        ck_assert(((float *)t.data)[i] == i / 4.0f);
    host_tensor_free(&t);

    /* version 2.0 header: [1.5, -2.25, 3.0] */
    ck_assert_int_eq(npy_read(NPY_DIR "f64_v2.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.dtype, DT_F64);
    ck_assert_int_eq(t.rank, 1);
    ck_assert_int_eq(t.shape[0], 3);
    ck_assert(((double *)t.data)[1] == -2.25);
    host_tensor_free(&t);

    /* version 3.0 (utf8) header: [[1,-2],[3,2147483647]] int32 */
    ck_assert_int_eq(npy_read(NPY_DIR "i32_v3.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.dtype, DT_I32);
    ck_assert_int_eq(((int32_t *)t.data)[1], -2);
    ck_assert_int_eq(((int32_t *)t.data)[3], 2147483647);
    host_tensor_free(&t);

    ck_assert_int_eq(npy_read(NPY_DIR "bool.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.dtype, DT_BOOL);
    ck_assert_int_eq(((uint8_t *)t.data)[0], 1);
    ck_assert_int_eq(((uint8_t *)t.data)[1], 0);
    host_tensor_free(&t);

    ck_assert_int_eq(npy_read(NPY_DIR "i64.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.dtype, DT_I64);
    ck_assert(((int64_t *)t.data)[0] == -(INT64_C(1) << 40));
    host_tensor_free(&t);

    /* [0.5, -1.0, 65504.0, 1e-7] float16 */
    ck_assert_int_eq(npy_read(NPY_DIR "f16.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.dtype, DT_F16);
    ck_assert(host_tensor_get(&t, 1) == -1.0);
    ck_assert(host_tensor_get(&t, 2) == 65504.0);
    ck_assert(fabs(host_tensor_get(&t, 3) - 1.19209e-07) < 1e-11);  /* subnormal half */
    host_tensor_free(&t);

    ck_assert_int_eq(npy_read(NPY_DIR "scalar_f32.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.rank, 0);
    ck_assert(host_tensor_get(&t, 0) == 1.5);
    host_tensor_free(&t);

    ck_assert_int_eq(npy_read(NPY_DIR "empty_0x3.npy", &t, err, sizeof err), 0);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.shape[0], 0);
    ck_assert_int_eq(t.shape[1], 3);
    ck_assert_int_eq(host_tensor_numel(&t), 0);
    host_tensor_free(&t);
}
END_TEST

/* npy_write reproduces np.save byte for byte (header text, growth spaces, 64-byte padding). */
START_TEST(npy_write_matches_numpy_bytes)
{
    static const char *const files[] = {"f32_2x3", "bool", "i64", "f16", "scalar_f32", "empty_0x3"};
    make_tmpdir();
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char src[512], dst[512], err[256];
        snprintf(src, sizeof src, NPY_DIR "%s.npy", files[k]);
        tmp_path(dst, sizeof dst, "out.npy");
        host_tensor t;
        ck_assert_msg(npy_read(src, &t, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(npy_write(dst, &t, err, sizeof err) == 0, "%s", err);
        size_t la, lb;
        uint8_t *a = slurp(src, &la), *b = slurp(dst, &lb);
        ck_assert_msg(la == lb && memcmp(a, b, la) == 0, "%s differs from numpy's bytes", files[k]);
        free(a);
        free(b);
        host_tensor_free(&t);
    }
    rm_rf(tmpdir);
}
END_TEST

START_TEST(npy_round_trip_every_dtype)
{
    make_tmpdir();
    char path[512], err[256];
    tmp_path(path, sizeof path, "rt.npy");
    int64_t shape[3] = {2, 3, 4};
    for (int dt = 0; dt < DT_COUNT; dt++) {
        for (int rank = 0; rank <= 3; rank++) {
            double vals[24];
            for (int i = 0; i < 24; i++)
                vals[i] = dt == DT_BOOL ? (i % 3 == 0) : (i - 7) * 0.5;
            if (ir_dtype_is_int((ir_dtype)dt))
                for (int i = 0; i < 24; i++)
                    vals[i] = (i - 7) * 1000;
            host_tensor t = make_tensor((ir_dtype)dt, rank, shape, vals), r;
            ck_assert_msg(npy_write(path, &t, err, sizeof err) == 0, "%s", err);
            ck_assert_msg(npy_read(path, &r, err, sizeof err) == 0, "%s", err);
            /* bf16 has no NumPy dtype: it comes back as f32 with the same values */
            ck_assert_int_eq(r.dtype, dt == DT_BF16 ? DT_F32 : dt);
            ck_assert_int_eq(r.rank, rank);
            for (int i = 0; i < rank; i++)
                ck_assert_int_eq(r.shape[i], shape[i]);
            for (int64_t i = 0; i < host_tensor_numel(&t); i++)
                ck_assert(host_tensor_get(&r, i) == host_tensor_get(&t, i));
            host_tensor_free(&t);
            host_tensor_free(&r);
        }
    }
    /* an empty (0, 3) tensor */
    int64_t es[2] = {0, 3};
    host_tensor t = make_tensor(DT_F32, 2, es, NULL), r;
    ck_assert_int_eq(npy_write(path, &t, err, sizeof err), 0);
    ck_assert_int_eq(npy_read(path, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.shape[0], 0);
    ck_assert_int_eq(r.shape[1], 3);
    host_tensor_free(&t);
    host_tensor_free(&r);
    rm_rf(tmpdir);
}
END_TEST

START_TEST(npy_header_syntax_variants)
{
    float data[6] = {1, 2, 3, 4, 5, 6};
    static const char *const ok[] = {
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",             /* any order */
        "{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }\n",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}    \n",  /* " quotes */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",         /* Python 2 */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
    };
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        size_t len;
        uint8_t *b = make_npy(1, ok[k], data, sizeof data, &len);
        host_tensor t;
        char err[256];
        ck_assert_msg(npy_read_mem(b, len, &t, err, sizeof err) == 0, "%s: %s", ok[k], err);
        ck_assert_int_eq(host_tensor_numel(&t), 6);
        ck_assert(((float *)t.data)[5] == 6);
        host_tensor_free(&t);
        free(b);
    }
    /* a scalar (shape ()) in a version 2.0 file */
    int64_t seven = 7;
    size_t len;
    uint8_t *img = make_npy(2, "{'descr': '<i8', 'fortran_order': False, 'shape': ()}", &seven, 8, &len);
    host_tensor t;
    char err[256];
    ck_assert_msg(npy_read_mem(img, len, &t, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(t.rank, 0);
    ck_assert(((int64_t *)t.data)[0] == 7);
    host_tensor_free(&t);
    free(img);
}
END_TEST

START_TEST(npy_malformed_inputs)
{
    /* header problems, each with its own message */
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) ", 24, "invalid .npy header");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False}", 4, "missing key 'shape'");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4,
                     "unexpected or repeated key 'x'");
    expect_npy_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
                     "repeated key 'descr'");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (3)}", 12,
                     "'shape' is not a tuple");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}", 12, "'shape' is not a tuple");
    expect_npy_error("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", 4, "'fortran_order' is not True");
    expect_npy_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", 4,
                     "structured dtypes are not supported");
    expect_npy_error("{'descr': '>f4', 'fortran_order': False, 'shape': (1,)}", 4,
                     "big-endian arrays ('>f4') are not supported");
    expect_npy_error("{'descr': '<f4', 'fortran_order': True, 'shape': (1,)}", 4,
                     "Fortran-order arrays are not supported; save with np.ascontiguousarray");
    expect_npy_error("{'descr': '|u1', 'fortran_order': False, 'shape': (1,)}", 1, "unsupported dtype '|u1'");
    expect_npy_error("{'descr': '<u2', 'fortran_order': False, 'shape': (1,)}", 2, "unsupported dtype '<u2'");
    expect_npy_error("{'descr': '|f4', 'fortran_order': False, 'shape': (1,)}", 4, "unsupported dtype '|f4'");
    expect_npy_error("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}", 8, "unsupported dtype '<c8'");
    /* shape overflow: numel * itemsize past 2^63, a dimension past int64, rank 9 */
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4)}", 0,
                     "shape is too large");
    expect_npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (3037000500, 3037000500)}", 0,
                     "shape is too large");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", 0,
                     "overflows");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 4,
                     "rank above 8");
    /* data size */
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", 20,
                     "file is truncated: expected 24 bytes of data, found 20");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 12, "trailing bytes");
    /* huge claimed shape with little data: refused before any allocation */
    expect_npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,)}", 8,
                     "file is truncated: expected 8000000000000 bytes of data, found 8");

    /* prefix problems */
    host_tensor t;
    char err[256];
    ck_assert_int_eq(npy_read_mem((const uint8_t *)"\x93NUMPX\x01\x00\x00\x00", 10, &t, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "bad magic"));
    ck_assert_int_eq(npy_read_mem((const uint8_t *)"\x93NUMPY\x04\x00\x00\x00", 10, &t, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "unsupported .npy format version 4.0"));
    ck_assert_int_eq(npy_read_mem((const uint8_t *)"\x93NUMPY\x01\x00\x40\x00{", 11, &t, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "truncated inside the .npy header"));
    ck_assert_int_eq(npy_read_mem((const uint8_t *)"\x93NU", 4, &t, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "bad magic"));
    ck_assert_int_eq(npy_read_mem(NULL, 0, &t, err, sizeof err), -1);
}
END_TEST

/* Errors from files start with the path; numpy-written bad files give specific messages. */
START_TEST(npy_file_errors_name_the_path)
{
    host_tensor t;
    char err[512];
    ck_assert_int_eq(npy_read(NPY_DIR "bigendian.npy", &t, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, NPY_DIR "bigendian.npy: big-endian", strlen(NPY_DIR) + 24) == 0, "%s", err);
    ck_assert_int_eq(npy_read(NPY_DIR "fortran.npy", &t, err, sizeof err), -1);
    ck_assert_str_eq(err, NPY_DIR "fortran.npy: Fortran-order arrays are not supported; save with "
                          "np.ascontiguousarray");
    ck_assert_int_eq(npy_read(NPY_DIR "u8.npy", &t, err, sizeof err), -1);
    ck_assert_str_eq(err, NPY_DIR "u8.npy: unsupported dtype '|u1' (supported: <f2, <f4, <f8, <i4, <i8, |b1)");
    ck_assert_int_eq(npy_read(NPY_DIR "missing.npy", &t, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "missing.npy: cannot open: No such file") != NULL, "%s", err);
    ck_assert_int_eq(npy_read(NPY_DIR, &t, err, sizeof err), -1);  /* a directory */
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));

    /* a truncated copy of a numpy file */
    make_tmpdir();
    char path[512];
    tmp_path(path, sizeof path, "trunc.npy");
    size_t len;
    uint8_t *b = slurp(NPY_DIR "f32_2x3.npy", &len);
    spit(path, b, len - 5);
    ck_assert_int_eq(npy_read(path, &t, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s: file is truncated: expected 24 bytes of data, found 19", path);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(t.data);
    spit(path, b, 30);  /* cut inside the header */
    ck_assert_int_eq(npy_read(path, &t, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "truncated inside the .npy header"));
    free(b);
    /* writing into a missing directory fails cleanly */
    tmp_path(path, sizeof path, "no/such/dir/x.npy");
    int64_t s1 = 1;
    host_tensor w = make_tensor(DT_F32, 1, &s1, NULL);
    ck_assert_int_eq(npy_write(path, &w, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot create"));
    host_tensor_free(&w);
    rm_rf(tmpdir);
}
END_TEST

/* ---------------------------------------------------------------- safetensors */

static void fill_st(st_tensor *t, const char *name, int dt, int rank, const int64_t *shape, const void *data)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->rank = rank;
    size_t n = st_dtype_size(dt);
    for (int i = 0; i < rank; i++) {
        t->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    t->data = data;
    t->nbytes = n;
}

/* The same tensors as tests/data/safetensors/ref.safetensors, made with safetensors 0.8.0:
 *   t = {"w": np.arange(6, dtype=np.float32).reshape(2,3), "b": np.array([1.5,-2.0]),
 *        "n": np.array([-3, 7], dtype=np.int64), "m": np.array([True, False, True]),
 *        "i": np.array(5, dtype=np.int32), "h": np.array([0.5, 1.0], dtype=np.float16),
 *        "e": np.zeros((0, 4), dtype=np.float32)}
 *   safetensors.numpy.save_file(t, "ref.safetensors") */
static const float W[6] = {0, 1, 2, 3, 4, 5};
static const double B[2] = {1.5, -2.0};
static const int64_t N[2] = {-3, 7};
static const uint8_t M[3] = {1, 0, 1};
static const int32_t I = 5;
static const uint16_t H[2] = {0x3800, 0x3c00};

static int ref_tensors(st_tensor *ts)
{
    int64_t s23[2] = {2, 3}, s2[1] = {2}, s3[1] = {3}, s04[2] = {0, 4};
    fill_st(&ts[0], "w", ST_F32, 2, s23, W);
    fill_st(&ts[1], "b", ST_F64, 1, s2, B);
    fill_st(&ts[2], "n", ST_I64, 1, s2, N);
    fill_st(&ts[3], "m", ST_BOOL, 1, s3, M);
    fill_st(&ts[4], "i", ST_I32, 0, NULL, &I);
    fill_st(&ts[5], "h", ST_F16, 1, s2, H);
    fill_st(&ts[6], "e", ST_F32, 2, s04, NULL);
    return 7;
}

START_TEST(st_reads_reference_file)
{
    char err[256];
    st_file *f = st_open(ST_DIR "ref.safetensors", err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(st_count(f), 7);
    for (int i = 1; i < st_count(f); i++)  /* st_get is sorted by name */
        ck_assert(strcmp(st_get(f, i - 1)->name, st_get(f, i)->name) < 0);
    ck_assert_ptr_null(st_get(f, 7));
    ck_assert_ptr_null(st_get(f, -1));
    const st_tensor *w = st_find(f, "w");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(w->dtype, ST_F32);
    ck_assert_int_eq(w->rank, 2);
    ck_assert_int_eq(w->shape[1], 3);
    ck_assert_int_eq(w->nbytes, 24);
    ck_assert(memcmp(w->data, W, 24) == 0);
    const st_tensor *i = st_find(f, "i");
    ck_assert_int_eq(i->rank, 0);
    ck_assert(memcmp(i->data, &I, 4) == 0);
    ck_assert(memcmp(st_find(f, "m")->data, M, 3) == 0);
    ck_assert(memcmp(st_find(f, "h")->data, H, 4) == 0);
    ck_assert_int_eq(st_find(f, "e")->nbytes, 0);
    ck_assert_ptr_null(st_find(f, "zz"));
    ck_assert_ptr_null(st_metadata(f, "format"));
    st_close(f);

    f = st_open(ST_DIR "ref_meta.safetensors", err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(st_count(f), 1);
    ck_assert_str_eq(st_metadata(f, "format"), "pt");
    ck_assert_str_eq(st_metadata(f, "note"), "tdsl");
    st_close(f);
}
END_TEST

START_TEST(st_save_matches_reference_bytes)
{
    make_tmpdir();
    char path[512], err[256];
    tmp_path(path, sizeof path, "out.safetensors");
    st_tensor ts[8];
    int n = ref_tensors(ts);
    ck_assert_msg(st_save(path, ts, n, err, sizeof err) == 0, "%s", err);
    size_t la, lb;
    uint8_t *a = slurp(ST_DIR "ref.safetensors", &la), *b = slurp(path, &lb);
    ck_assert_int_eq(la, lb);
    ck_assert(memcmp(a, b, la) == 0);
    free(a);
    free(b);
    rm_rf(tmpdir);
}
END_TEST

START_TEST(st_round_trip_all_dtypes)
{
    make_tmpdir();
    char path[512], err[256];
    tmp_path(path, sizeof path, "rt.safetensors");
    uint8_t raw[ST_DTYPE_COUNT][48];
    st_tensor ts[ST_DTYPE_COUNT + 1];
    int64_t shape[2] = {2, 3};
    char names[ST_DTYPE_COUNT][16];
    for (int dt = 0; dt < ST_DTYPE_COUNT; dt++) {
        for (int k = 0; k < 48; k++)
            raw[dt][k] = (uint8_t)(dt * 31 + k * 7);
        if (dt == ST_BOOL)
            for (int k = 0; k < 6; k++)
                raw[dt][k] &= 1;
        snprintf(names[dt], sizeof names[dt], "p.%s", st_dtype_name(dt));
        fill_st(&ts[dt], names[dt], dt, 2, shape, raw[dt]);
    }
    /* a name needing JSON escapes survives */
    fill_st(&ts[ST_DTYPE_COUNT], "we\"ird\\na\tme", ST_I32, 1, shape, raw[ST_I32]);
    ck_assert_msg(st_save(path, ts, ST_DTYPE_COUNT + 1, err, sizeof err) == 0, "%s", err);
    st_file *f = st_open(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(st_count(f), ST_DTYPE_COUNT + 1);
    for (int dt = 0; dt < ST_DTYPE_COUNT; dt++) {
        const st_tensor *t = st_find(f, names[dt]);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->dtype, dt);
        ck_assert_int_eq(t->rank, 2);
        ck_assert_int_eq(t->shape[0], 2);
        ck_assert_int_eq(t->nbytes, 6 * st_dtype_size(dt));
        ck_assert(memcmp(t->data, raw[dt], t->nbytes) == 0);
        /* largest dtypes first: every tensor is naturally aligned in the file */
        ck_assert_int_eq(((uintptr_t)t->data) % st_dtype_size(dt), 0);
    }
    ck_assert_ptr_nonnull(st_find(f, "we\"ird\\na\tme"));
    st_close(f);
    /* zero tensors is a valid file */
    ck_assert_int_eq(st_save(path, NULL, 0, err, sizeof err), 0);
    f = st_open(path, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(st_count(f), 0);
    st_close(f);
    rm_rf(tmpdir);
}
END_TEST

/* Builds a file image from a header text and `dlen` zero bytes of data. */
static uint8_t *st_image(const char *header, size_t dlen, size_t *len)
{
    size_t hl = strlen(header);
    uint8_t *b = calloc(1, 8 + hl + dlen + 1);
    for (int k = 0; k < 8; k++)
        b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memcpy(b + 8, header, hl);
    *len = 8 + hl + dlen;
    return b;
}

static void expect_st_error(const char *header, size_t dlen, const char *want)
{
    size_t len;
    uint8_t *b = st_image(header, dlen, &len);
    char err[256] = "";
    st_file *f = st_open_mem(b, len, err, sizeof err);
    ck_assert_msg(f == NULL, "accepted: %s", header);
    ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
    ck_assert_msg(strncmp(err, "<memory>: ", 10) == 0, "%s", err);
    free(b);
}

START_TEST(st_corrupt_files_refused)
{
    /* a valid baseline first, so each case below fails for its own reason */
    size_t len;
    char err[256];
    uint8_t *b = st_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &len);
    st_file *f = st_open_mem(b, len, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    st_close(f);
    free(b);

    expect_st_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                    "unsupported dtype \"U8\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                    "shape entries must be integers >= 0");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
                    "shape entries must be integers >= 0");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8,
                    "outside the data section");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,0]}}", 8,
                    "outside the data section");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                    "span 8 bytes but the shape and dtype need 12");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
                    "data_offsets must be [begin, end]");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                    "overlap");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                    "tensor 'a' appears twice");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                    "rank 9 exceeds");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                    "shape is too large");
    expect_st_error("{\"a\":[1,2]}", 0, "entry is not a JSON object");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "needs \"dtype\"");
    expect_st_error("{\"__metadata__\":{\"k\":3}}", 0, "is not a string");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]", 4,
                    "not a valid JSON object");
    expect_st_error("[1,2,3]", 0, "not a JSON object");
    expect_st_error("{} x", 0, "unexpected bytes after the JSON header");
    expect_st_error("{\"\xff\":1}", 0, "not valid UTF-8");
    char longname[300];
    memset(longname, 'x', 200);
    snprintf(longname + 200, 100, "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
    char hdr[400] = "{\"";
    strcat(hdr, longname);
    expect_st_error(hdr, 4, "longer than 127 bytes");

    /* header length itself */
    uint8_t small[4] = {1, 2, 3, 4};
    ck_assert_ptr_null(st_open_mem(small, 4, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "too small"));
    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    ck_assert_ptr_null(st_open_mem(big, 16, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "exceeds the 100 MB limit"));
    uint8_t past[16] = {64, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    ck_assert_ptr_null(st_open_mem(past, 16, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "exceeds the file size"));

    /* a truncated copy of a real file, with the path in the message */
    make_tmpdir();
    char path[512];
    tmp_path(path, sizeof path, "cut.safetensors");
    uint8_t *ref = slurp(ST_DIR "ref.safetensors", &len);
    spit(path, ref, len - 1);
    ck_assert_ptr_null(st_open(path, err, sizeof err));
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0 && strstr(err, "outside the data section"), "%s", err);
    free(ref);
    ck_assert_ptr_null(st_open(tmpdir, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    rm_rf(tmpdir);
}
END_TEST

START_TEST(st_save_rejects_bad_tensors)
{
    make_tmpdir();
    char path[512], err[256];
    tmp_path(path, sizeof path, "bad.safetensors");
    float d[4] = {0};
    int64_t s4 = 4;
    st_tensor ts[2];
    fill_st(&ts[0], "x", ST_F32, 1, &s4, d);
    fill_st(&ts[1], "x", ST_F32, 1, &s4, d);
    ck_assert_int_eq(st_save(path, ts, 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'x' is used twice"));
    fill_st(&ts[1], "y", ST_F32, 1, &s4, d);
    ts[1].nbytes = 12;
    ck_assert_int_eq(st_save(path, ts, 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "need 16"));
    ts[1].nbytes = 16;
    ts[1].dtype = 42;
    ck_assert_int_eq(st_save(path, ts, 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "invalid dtype"));
    struct stat st;
    ck_assert_int_eq(stat(path, &st), -1);  /* nothing was written */
    rm_rf(tmpdir);
}
END_TEST

static int count_entries(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

START_TEST(st_save_is_atomic)
{
    char dir[512], path[600], err[512];
    ck_assert_msg(tmpdir[0] != 0, "no temporary directory");
    tmp_path(dir, sizeof dir, "ro");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/params.safetensors", dir);
    st_tensor ts[8];
    int n = ref_tensors(ts);
    ck_assert_int_eq(st_save(path, ts, n, err, sizeof err), 0);
    size_t old_len;
    uint8_t *old = slurp(path, &old_len);

    /* the target path is a directory: refused, nothing left behind */
    char sub[600];
    snprintf(sub, sizeof sub, "%s/adir", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    ck_assert_int_eq(st_save(sub, ts, n, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, sub, strlen(sub)) == 0, "%s", err);
    struct stat st;
    ck_assert_int_eq(stat(sub, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(count_entries(dir), 2);  /* params.safetensors, adir: no temp file */

    /* an unwritable directory: the old file survives intact. root ignores permissions,
     * so drop to nobody in this forked test process first. */
    ck_assert_int_eq(chmod(dir, 0555), 0);
    const char *fork_env = getenv("CK_FORK");
    int can_test = 1;
    if (geteuid() == 0) {
        if (fork_env && strcmp(fork_env, "no") == 0)
            can_test = 0;  /* would drop privileges for the whole runner */
        else
            ck_assert(setgid(65534) == 0 && setuid(65534) == 0);
    }
    if (can_test) {
        float x[2] = {9, 9};
        int64_t s2 = 2;
        st_tensor nt;
        fill_st(&nt, "new", ST_F32, 1, &s2, x);
        ck_assert_int_eq(st_save(path, &nt, 1, err, sizeof err), -1);
        ck_assert_msg(strncmp(err, path, strlen(path)) == 0 && strstr(err, "cannot create"), "%s", err);
        size_t now_len;
        uint8_t *now = slurp(path, &now_len);
        ck_assert_int_eq(now_len, old_len);
        ck_assert(memcmp(now, old, old_len) == 0);
        free(now);
        ck_assert_int_eq(count_entries(dir), 2);
    }
    free(old);
    /* (cleanup is left to the parent: this process may have dropped privileges) */
}
END_TEST

/* Unchecked fixtures run in the runner process, which keeps its privileges. */
static void atomic_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tdsl_test_io_XXXXXX");
    if (!mkdtemp(tmpdir) || chmod(tmpdir, 0755) != 0)
        tmpdir[0] = 0;
}

static void atomic_teardown(void)
{
    if (tmpdir[0])
        rm_rf(tmpdir);
}

/* ---------------------------------------------------------------- Philox */

START_TEST(philox_known_answers)
{
    /* Random123 tests/kat_vectors, "philox4x32 10" lines: ctr[4] key[2] -> out[4] */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int k = 0; k < 3; k++) {
        uint32_t out[4];
        rt_philox4x32(kat[k], kat[k] + 4, out);
        for (int j = 0; j < 4; j++)
            ck_assert_msg(out[j] == kat[k][6 + j], "vector %d word %d: %08x", k, j, out[j]);
    }
    ck_assert(rt_fnv1a64("") == 0xcbf29ce484222325ull);
    ck_assert(rt_fnv1a64("a") == 0xaf63dc4c8601ec8cull);
}
END_TEST

/* Values from an independent Python implementation of docs/formats.md (the GPU's contract):
 *   def philox(c, k):
 *       for r in range(10):
 *           p0 = 0xD2511F53*c[0]; p1 = 0xCD9E8D57*c[2]
 *           c = [((p1>>32)^c[1]^k[0])&M, p1&M, ((p0>>32)^c[3]^k[1])&M, p0&M]
 *           k = [(k[0]+0x9E3779B9)&M, (k[1]+0xBB67AE85)&M]
 *       return c
 *   x = philox([i&M, i>>32, h&M, h>>32], [seed&M, seed>>32]), h = fnv1a64(name)
 *   u = ((x[0]>>8)+0.5)*2**-24; u2 = ((x[1]>>8)+0.5)*2**-24
 *   normal: a + b*sqrt(-2*log(u))*cos(2*pi*u2); uniform: a + (b-a)*u; kaiming: -bd + 2*bd*u */
START_TEST(init_golden_values)
{
    double v[4];
    rt_init_values(RT_INIT_NORMAL, 0, 1, 0, 0, "W1", 4, v);
    const double n0[4] = {0.83807304691256723, 1.5301006279298819, 3.0166701599605155, -1.0616653019159117};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(fabs(v[i] - n0[i]) < 1e-13, "normal[%d] = %.17g", i, v[i]);
    rt_init_values(RT_INIT_UNIFORM, -2, 3, 0, 42, "layer.bias", 3, v);
    const double u0[3] = {-0.3002038300037384, 1.352380245923996, -1.0841512382030487};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(fabs(v[i] - u0[i]) < 1e-14, "uniform[%d] = %.17g", i, v[i]);
    rt_init_values(RT_INIT_KAIMING_UNIFORM, 0, 0, 784, (UINT64_C(1) << 40) + 5, "W", 3, v);
    const double k0[3] = {0.033583707043102803, -0.0074106901884078979, 0.018619066902569363};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(fabs(v[i] - k0[i]) < 1e-15, "kaiming[%d] = %.17g", i, v[i]);
    rt_init_values(RT_INIT_FULL, 2.5, 0, 0, 0, "c", 2, v);
    ck_assert(v[0] == 2.5 && v[1] == 2.5);
    rt_init_values(RT_INIT_ONES, 0, 0, 0, 0, "c", 2, v);
    ck_assert(v[0] == 1 && v[1] == 1);
    rt_init_values(RT_INIT_ZEROS, 7, 7, 0, 0, "c", 2, v);
    ck_assert(v[0] == 0 && v[1] == 0);
}
END_TEST

START_TEST(init_statistics)
{
    enum { NS = 1 << 20 };
    double *v = malloc(NS * sizeof *v);
    rt_init_values(RT_INIT_NORMAL, 0.5, 2.0, 0, 1234, "big", NS, v);
    double s = 0, s2 = 0;
    for (int i = 0; i < NS; i++)
        s += v[i];
    double mean = s / NS;
    for (int i = 0; i < NS; i++)
        s2 += (v[i] - mean) * (v[i] - mean);
    double sd = sqrt(s2 / NS);
    ck_assert_msg(fabs(mean - 0.5) < 5 * 2.0 / sqrt(NS), "mean %g", mean);
    ck_assert_msg(fabs(sd - 2.0) < 0.01, "std %g", sd);
    /* uniform(-1, 3): in range, mean 1, variance 16/12 */
    rt_init_values(RT_INIT_UNIFORM, -1, 3, 0, 1234, "u", NS, v);
    s = 0, s2 = 0;
    for (int i = 0; i < NS; i++) {
        ck_assert(v[i] > -1 && v[i] < 3);
        s += v[i];
        s2 += v[i] * v[i];
    }
    ck_assert(fabs(s / NS - 1) < 0.01);
    ck_assert(fabs(s2 / NS - 1 - 16.0 / 12) < 0.02);
    /* kaiming_uniform with fan_in 256: within +-1/16, reaching near both ends */
    rt_init_values(RT_INIT_KAIMING_UNIFORM, 0, 0, 256, 1, "W", 4096, v);
    double lo = 1, hi = -1;
    for (int i = 0; i < 4096; i++) {
        ck_assert(fabs(v[i]) < 1.0 / 16);
        lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
    }
    ck_assert(lo < -0.06 && hi > 0.06);
    free(v);
}
END_TEST

START_TEST(init_determinism_and_names)
{
    double a[64], b[64], c[64], d[16];
    rt_init_values(RT_INIT_NORMAL, 0, 1, 0, 7, "W1", 64, a);
    rt_init_values(RT_INIT_NORMAL, 0, 1, 0, 7, "W1", 64, b);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* element i does not depend on how many are drawn: the GPU fills in any order */
    rt_init_values(RT_INIT_NORMAL, 0, 1, 0, 7, "W1", 16, d);
    ck_assert(memcmp(a, d, sizeof d) == 0);
    rt_init_values(RT_INIT_NORMAL, 0, 1, 0, 7, "W2", 64, c);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += a[i] == c[i];
    ck_assert_int_eq(same, 0);
    rt_init_values(RT_INIT_NORMAL, 0, 1, 0, 8, "W1", 64, c);
    same = 0;
    for (int i = 0; i < 64; i++)
        same += a[i] == c[i];
    ck_assert_int_eq(same, 0);
    /* seeds differing only in the high 32 bits differ too */
    rt_init_values(RT_INIT_NORMAL, 0, 1, 0, 7 + (UINT64_C(1) << 32), "W1", 64, c);
    same = 0;
    for (int i = 0; i < 64; i++)
        same += a[i] == c[i];
    ck_assert_int_eq(same, 0);
    for (int i = 0; i < 64; i++)
        ck_assert(isfinite(a[i]));
}
END_TEST

/* ---------------------------------------------------------------- printing */

static void expect_repr(const host_tensor *t, const char *want)
{
    char *got = format_array(t);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(strcmp(got, want) == 0, "\ngot:\n%s\nwant:\n%s", got, want);
    free(got);
}

/* Expected strings are repr(a) from numpy 2.4 for:
 *   np.array([[1.,2.],[3.,4.]],np.float32); np.array([1,2,3],np.int32); np.array([1,-20,3]);
 *   np.array([True,False]); np.array(True); np.array(1.5,np.float32); np.array([1.,2.5,-0.125]);
 *   np.zeros((0,3),np.float32); np.zeros((0,),np.int64); np.array([1e-5,1.5e-5,1.]);
 *   np.array([1.5,np.nan,-np.inf],np.float32); np.array([0.,-0.]); np.array([1/3],np.float32);
 *   np.array([0.1,1000.,65504.],np.float16); np.array([1e6, 2.],np.float32);
 *   np.arange(12,dtype=np.float64)/3; np.arange(8,dtype=np.int32).reshape(2,2,2);
 *   np.arange(2000); np.arange(2002,dtype=np.float32).reshape(2,1001) */
START_TEST(print_matches_numpy)
{
    int64_t s22[2] = {2, 2}, s2[1] = {2}, s3[1] = {3}, s03[2] = {0, 3}, s0[1] = {0}, s1[1] = {1};
    host_tensor t;

    t = make_tensor(DT_F32, 2, s22, (double[]){1, 2, 3, 4});
    expect_repr(&t, "array([[1., 2.],\n       [3., 4.]], dtype=float32)");
    host_tensor_free(&t);
    t = make_tensor(DT_I32, 1, s3, (double[]){1, 2, 3});
    expect_repr(&t, "array([1, 2, 3], dtype=int32)");
    host_tensor_free(&t);
    t = make_tensor(DT_I64, 1, s3, (double[]){1, -20, 3});
    expect_repr(&t, "array([  1, -20,   3])");
    host_tensor_free(&t);
    t = make_tensor(DT_BOOL, 1, s2, (double[]){1, 0});
    expect_repr(&t, "array([ True, False])");
    host_tensor_free(&t);
    t = make_tensor(DT_BOOL, 0, NULL, (double[]){1});
    expect_repr(&t, "array(True)");
    host_tensor_free(&t);
    t = make_tensor(DT_F32, 0, NULL, (double[]){1.5});
    expect_repr(&t, "array(1.5, dtype=float32)");
    host_tensor_free(&t);
    t = make_tensor(DT_F64, 1, s3, (double[]){1, 2.5, -0.125});
    expect_repr(&t, "array([ 1.   ,  2.5  , -0.125])");
    host_tensor_free(&t);
    t = make_tensor(DT_F32, 2, s03, NULL);
    expect_repr(&t, "array([], shape=(0, 3), dtype=float32)");
    host_tensor_free(&t);
    t = make_tensor(DT_I64, 1, s0, NULL);
    expect_repr(&t, "array([], dtype=int64)");
    host_tensor_free(&t);
    t = make_tensor(DT_F64, 1, s3, (double[]){1e-5, 1.5e-5, 1});
    expect_repr(&t, "array([1.0e-05, 1.5e-05, 1.0e+00])");
    host_tensor_free(&t);
    t = make_tensor(DT_F32, 1, s3, (double[]){1.5, NAN, -INFINITY});
    expect_repr(&t, "array([ 1.5,  nan, -inf], dtype=float32)");
    host_tensor_free(&t);
    t = make_tensor(DT_F64, 1, s2, (double[]){0.0, -0.0});
    expect_repr(&t, "array([ 0., -0.])");
    host_tensor_free(&t);
    t = make_tensor(DT_F32, 1, s1, (double[]){1.0 / 3});
    expect_repr(&t, "array([0.33333334], dtype=float32)");
    host_tensor_free(&t);
    t = make_tensor(DT_F16, 1, s3, (double[]){0.1, 1000, 65504});
    expect_repr(&t, "array([1.00e-01, 1.00e+03, 6.55e+04], dtype=float16)");
    host_tensor_free(&t);
    t = make_tensor(DT_F32, 1, s2, (double[]){1e6, 2});
    expect_repr(&t, "array([1.e+06, 2.e+00], dtype=float32)");
    host_tensor_free(&t);

    int64_t s12 = 12;
    double v12[12];
    for (int i = 0; i < 12; i++)
        v12[i] = i / 3.0;
    t = make_tensor(DT_F64, 1, &s12, v12);
    expect_repr(&t, "array([0.        , 0.33333333, 0.66666667, 1.        , 1.33333333,\n"
                    "       1.66666667, 2.        , 2.33333333, 2.66666667, 3.        ,\n"
                    "       3.33333333, 3.66666667])");
    host_tensor_free(&t);
    int64_t s222[3] = {2, 2, 2};
    t = make_tensor(DT_I32, 3, s222, NULL);
    expect_repr(&t, "array([[[0, 1],\n        [2, 3]],\n\n       [[4, 5],\n        [6, 7]]], dtype=int32)");
    host_tensor_free(&t);
    int64_t s2000 = 2000;
    t = make_tensor(DT_I64, 1, &s2000, NULL);
    expect_repr(&t, "array([   0,    1,    2, ..., 1997, 1998, 1999], shape=(2000,))");
    host_tensor_free(&t);
    int64_t s21001[2] = {2, 1001};
    t = make_tensor(DT_F32, 2, s21001, NULL);
    expect_repr(&t, "array([[0.000e+00, 1.000e+00, 2.000e+00, ..., 9.980e+02, 9.990e+02,\n"
                    "        1.000e+03],\n"
                    "       [1.001e+03, 1.002e+03, 1.003e+03, ..., 1.999e+03, 2.000e+03,\n"
                    "        2.001e+03]], shape=(2, 1001), dtype=float32)");
    host_tensor_free(&t);

    /* bf16 (no numpy dtype): shortest digits that round-trip through bf16 */
    t = make_tensor(DT_BF16, 1, s2, (double[]){1, 0.1});
    expect_repr(&t, "array([1. , 0.1], dtype=bfloat16)");
    host_tensor_free(&t);
}
END_TEST

START_TEST(print_to_file)
{
    int64_t s3 = 3;
    host_tensor t = make_tensor(DT_I32, 1, &s3, (double[]){4, 5, 6});
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    print_array(f, &t);
    fclose(f);
    ck_assert_str_eq(buf, "array([4, 5, 6], dtype=int32)\n");
    free(buf);
    host_tensor_free(&t);
}
END_TEST

static Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    TCase *npy = tcase_create("npy");
    tcase_add_test(npy, npy_reads_numpy_files);
    tcase_add_test(npy, npy_write_matches_numpy_bytes);
    tcase_add_test(npy, npy_round_trip_every_dtype);
    tcase_add_test(npy, npy_header_syntax_variants);
    tcase_add_test(npy, npy_malformed_inputs);
    tcase_add_test(npy, npy_file_errors_name_the_path);
    suite_add_tcase(s, npy);
    TCase *st = tcase_create("safetensors");
    tcase_add_test(st, st_reads_reference_file);
    tcase_add_test(st, st_save_matches_reference_bytes);
    tcase_add_test(st, st_round_trip_all_dtypes);
    tcase_add_test(st, st_corrupt_files_refused);
    tcase_add_test(st, st_save_rejects_bad_tensors);
    suite_add_tcase(s, st);
    TCase *atomic = tcase_create("safetensors_atomic");
    tcase_add_unchecked_fixture(atomic, atomic_setup, atomic_teardown);
    tcase_add_test(atomic, st_save_is_atomic);
    suite_add_tcase(s, atomic);
    TCase *rng = tcase_create("philox");
    tcase_add_test(rng, philox_known_answers);
    tcase_add_test(rng, init_golden_values);
    tcase_add_test(rng, init_statistics);
    tcase_add_test(rng, init_determinism_and_names);
    suite_add_tcase(s, rng);
    TCase *pr = tcase_create("print");
    tcase_add_test(pr, print_matches_numpy);
    tcase_add_test(pr, print_to_file);
    suite_add_tcase(s, pr);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(io_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
