/* Arenas: bump allocation for the compilation; nothing is freed one by one.
 * A whole compilation (AST, IR, strings) lives in one arena and dies with it. */
#ifndef TDSL_ARENA_H
#define TDSL_ARENA_H
#include <stddef.h>

typedef struct arena_block arena_block;
typedef struct arena {
    arena_block *head;
    size_t used_total;
} arena;

void  arena_init(arena *a);
void  arena_free(arena *a);
void *arena_alloc(arena *a, size_t size);           /* zeroed, 16-byte aligned */
void *arena_realloc(arena *a, void *old, size_t old_size, size_t new_size);
char *arena_strdup(arena *a, const char *s);
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Growable array in an arena: `ARR_PUSH(a, ptr, len, cap, value)`. */
#define ARR_PUSH(ar, ptr, len, cap, value)                                         \
    do {                                                                           \
        if ((len) == (cap)) {                                                      \
            size_t nc_ = (cap) ? (size_t)(cap) * 2 : 8;                            \
            (ptr) = arena_realloc((ar), (ptr), sizeof(*(ptr)) * (size_t)(cap),     \
                                  sizeof(*(ptr)) * nc_);                           \
            (cap) = nc_;                                                           \
        }                                                                          \
        (ptr)[(len)++] = (value);                                                  \
    } while (0)

#endif
