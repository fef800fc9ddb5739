/* Test support: whole-file reads and writes with Check assertions. Header-only. */
#ifndef TDSL_TEST_FILES_H
#define TDSL_TEST_FILES_H
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The whole file, malloc'd (one spare byte), or NULL if it cannot be opened. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    ck_assert(b != NULL);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

__attribute__((unused)) static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert(fwrite(buf, 1, len, f) == len);
    ck_assert_int_eq(fclose(f), 0);
}

#endif
