#include "arena.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    arena_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void arena_init(arena *a) { a->head = NULL; a->used_total = 0; }

void arena_free(arena *a)
{
    arena_block *b = a->head;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used_total = 0;
}

/* size bytes, 16-byte aligned, not zeroed */
static void *alloc_raw(arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    arena_block *b = a->head;
    if (!b || b->size - b->used < size) {
        size_t bs = size > 65536 ? size : 65536;
        b = malloc(sizeof(arena_block) + bs);
        if (!b) {
            fputs("tdslc: out of memory\n", stderr);
            exit(3);
        }
        b->size = bs;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->used_total += size;
    return p;
}

void *arena_alloc(arena *a, size_t size)
{
    void *p = alloc_raw(a, size);
    memset(p, 0, (size + 15) & ~(size_t)15);   /* padding too, as before */
    return p;
}

/* Zeroes only what the copy does not cover: growing arrays (ARR_PUSH) copy most bytes. */
void *arena_realloc(arena *a, void *old, size_t old_size, size_t new_size)
{
    size_t keep = old ? (old_size < new_size ? old_size : new_size) : 0;
    char *p = alloc_raw(a, new_size);
    if (keep)
        memcpy(p, old, keep);
    memset(p + keep, 0, ((new_size + 15) & ~(size_t)15) - keep);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *arena_strdup(arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = arena_alloc(a, (size_t)n + 1);
    if (n > 0)
        vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}
