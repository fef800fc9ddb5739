/* Test support: parse and lower a source string through the library, capturing the
 * diagnostics as text. Header-only (static) for the test executables. */
#ifndef TDSL_TEST_COMPILE_H
#define TDSL_TEST_COMPILE_H
#include <stdio.h>
#include <string.h>
#include "frontend/ast.h"
#include "frontend/lower.h"

/* Compiles text (named "t.tdsl") with lowering options o into ar (freed and re-initialized
 * first); src must outlive the module. Returns the module, or NULL with the errors in
 * diag. The caller verifies the module. Diagnostics go back to stderr afterwards. */
static ir_module *compile_source_opts(arena *ar, src_file *src, const char *text, lower_opts *o, char *diag,
                                      size_t diaglen)
{
    arena_free(ar);
    arena_init(ar);
    FILE *tmp = tmpfile();
    diag_reset(tmp ? tmp : stderr);
    src->name = "t.tdsl";
    src->text = text;
    src->len = strlen(text);
    ast_file *ast = parse_file(ar, src);
    ir_module *m = ast ? lower_file(ar, ast, o) : NULL;
    diag[0] = 0;
    if (tmp) {
        rewind(tmp);
        size_t n = fread(diag, 1, diaglen - 1, tmp);
        diag[n] = 0;
        fclose(tmp);
    }
    diag_reset(stderr);
    return m;
}

/* compile_source_opts as module `name` with ndefs -D values. */
static ir_module *compile_source(arena *ar, src_file *src, const char *name, const char *text, int ndefs,
                                 lower_define *defs, char *diag, size_t diaglen)
{
    lower_opts o = {.module_name = name, .ndefines = ndefs, .defines = defs};
    return compile_source_opts(ar, src, text, &o, diag, diaglen);
}

#endif
