#include "diag.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

diag_ctx diag_global = {NULL, 0, 0, 20};

void diag_reset(FILE *out)
{
    diag_global.out = out;
    diag_global.errors = 0;
    diag_global.warnings = 0;
    diag_global.max_errors = 20;
}

src_loc src_loc_make(const src_file *f, int line, int col)
{
    src_loc l = {f, line, col};
    return l;
}

static void print_source_line(FILE *o, src_loc loc)
{
    if (!loc.file || !loc.file->text || loc.line <= 0)
        return;
    const char *p = loc.file->text, *end = p + loc.file->len;
    for (int l = 1; l < loc.line && p < end; p++)
        if (*p == '\n')
            l++;
    if (p >= end && loc.line > 1)
        return;
    const char *e = p;
    while (e < end && *e != '\n' && *e != '\r')
        e++;
    fprintf(o, "  %.*s\n  ", (int)(e - p), p);
    for (int c = 1; c < loc.col && p + c - 1 < e; c++)
        fputc(p[c - 1] == '\t' ? '\t' : ' ', o);
    fputs("^\n", o);
}

static void vreport(const char *kind, src_loc loc, const char *fmt, va_list ap)
{
    FILE *o = diag_global.out ? diag_global.out : stderr;
    if (loc.file && loc.line > 0)
        fprintf(o, "%s:%d:%d: %s: ", loc.file->name, loc.line, loc.col, kind);
    else if (loc.file)
        fprintf(o, "%s: %s: ", loc.file->name, kind);
    else
        fprintf(o, "tdslc: %s: ", kind);
    vfprintf(o, fmt, ap);
    fputc('\n', o);
    print_source_line(o, loc);
}

void diag_error(src_loc loc, const char *fmt, ...)
{
    diag_global.errors++;
    if (diag_global.errors > diag_global.max_errors)
        return;
    va_list ap;
    va_start(ap, fmt);
    vreport("error", loc, fmt, ap);
    va_end(ap);
}

void diag_warning(src_loc loc, const char *fmt, ...)
{
    diag_global.warnings++;
    va_list ap;
    va_start(ap, fmt);
    vreport("warning", loc, fmt, ap);
    va_end(ap);
}

void diag_note(src_loc loc, const char *fmt, ...)
{
    if (diag_global.errors > diag_global.max_errors)
        return;
    va_list ap;
    va_start(ap, fmt);
    vreport("note", loc, fmt, ap);
    va_end(ap);
}

int diag_error_count(void) { return diag_global.errors; }

void diag_ice(const char *where, const char *fmt, ...)
{
    FILE *o = diag_global.out ? diag_global.out : stderr;
    fprintf(o, "tdslc: internal compiler error in %s: ", where);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o, fmt, ap);
    va_end(ap);
    fputs("\nthis is a bug in tdslc; please report it with the input file\n", o);
    exit(3);
}
