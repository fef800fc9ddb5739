/* Diagnostics: `file:line:col: error: message`, the source line, a caret, then notes.
 * User errors (exit 1) and internal compiler errors (exit 3) are separate paths. */
#ifndef TDSL_DIAG_H
#define TDSL_DIAG_H
#include <stdio.h>

typedef struct src_file {
    const char *name;   /* as given on the command line */
    const char *text;   /* whole file, NUL-terminated */
    size_t len;
} src_file;

typedef struct src_loc {
    const src_file *file;  /* NULL: no location (plain message) */
    int line, col;         /* 1-based; 0 = unknown */
} src_loc;

typedef struct diag_ctx {
    FILE *out;           /* default stderr */
    int errors, warnings;
    int max_errors;      /* stop printing after this many (default 20) */
} diag_ctx;

extern diag_ctx diag_global;

void diag_reset(FILE *out);
void diag_error(src_loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_warning(src_loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_note(src_loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int  diag_error_count(void);

/* A compiler bug: prints "internal compiler error" and exits with status 3. */
_Noreturn void diag_ice(const char *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

src_loc src_loc_make(const src_file *f, int line, int col);

#endif
