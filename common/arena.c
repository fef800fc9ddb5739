#include "arena.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    arena_block *next;
    size_t size, used;
    void *big;              /* a block for one large allocation: its data, else NULL */
    _Alignas(16) unsigned char data[];
};

/* Allocations above BIG get a block of their own with room to grow 4x, so that
 * arena_realloc (ARR_PUSH doubling) grows them in place: no copy, and no page faults
 * on fresh copies, which were half the front end's time at 100k IR nodes. Untouched
 * room costs address space only. */
#define BIG ((size_t)32768)

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
    if (size > BIG) {
        size_t bs = size <= SIZE_MAX / 8 ? 4 * size : size;
        b = malloc(sizeof(arena_block) + bs);
        if (!b) {
            fputs("tdslc: out of memory\n", stderr);
            exit(3);
        }
        b->size = bs;
        b->used = size;
        b->big = b->data;
        /* behind the head, which keeps serving small allocations */
        b->next = a->head ? a->head->next : NULL;
        if (a->head)
            a->head->next = b;
        else
            a->head = b;
        a->used_total += size;
        return b->data;
    }
    if (!b || b->big || b->size - b->used < size) {
        size_t bs = size > 65536 ? size : 65536;
        b = malloc(sizeof(arena_block) + bs);
        if (!b) {
            fputs("tdslc: out of memory\n", stderr);
            exit(3);
        }
        b->size = bs;
        b->used = 0;
        b->big = NULL;
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
    size_t old_r = (old_size + 15) & ~(size_t)15, new_r = (new_size + 15) & ~(size_t)15;
    if (old && old_r > BIG && new_r >= old_r) {   /* old came from the big path: grow in place? */
        arena_block *b = (arena_block *)((unsigned char *)old - offsetof(arena_block, data));
        if (b->big == old && b->used == old_r && new_r <= b->size) {
            memset((char *)old + old_size, 0, new_r - old_size);
            a->used_total += new_r - old_r;
            b->used = new_r;
            return old;
        }
    }
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
