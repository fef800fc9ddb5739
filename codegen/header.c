/* The header emitter (spec section 4). Layout of the generated file:
 *   banner, include guard, <stdint.h> and <tdsl/runtime.h>, extern "C",
 *   typedef struct <mod> <mod>;  create / destroy / error;
 *   per export: a comment with its source signature and location, then its prototype
 *   (instance, arguments in order, then outputs in order; one pointer per line with a
 *   comment giving dtype and shape);  the params table;  save / load / num_params / param.
 * Argument names come from the source; a name that would not compile as a C or C++
 * parameter (a keyword, a predefined macro, a type name the header uses, `m`, an output's
 * name) gets a suffix, and the pointer's comment says which source name it stands for. */
#include "header.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifndef TDSL_VERSION
#define TDSL_VERSION "unknown"
#endif

/* Names a header parameter (or the module's typedef) must not take: C11, C23 and C++
 * keywords, the alternative operator spellings, macros that common headers or compilers
 * define (stdbool, complex.h, gnu-mode `linux`/`unix`), and the type names used below. */
static const char *const reserved_words[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while",
    "bool", "true", "false", "alignas", "alignof", "constexpr", "nullptr", "static_assert",
    "thread_local", "typeof", "typeof_unqual",
    "and", "and_eq", "asm", "bitand", "bitor", "catch", "char8_t", "char16_t", "char32_t",
    "class", "compl", "concept", "consteval", "constinit", "const_cast", "co_await",
    "co_return", "co_yield", "decltype", "delete", "dynamic_cast", "explicit", "export",
    "friend", "mutable", "namespace", "new", "noexcept", "not", "not_eq", "operator", "or",
    "or_eq", "private", "protected", "public", "reinterpret_cast", "requires", "static_cast",
    "template", "this", "throw", "try", "typeid", "typename", "using", "virtual", "wchar_t",
    "xor", "xor_eq",
    "NULL", "EOF", "errno", "stdin", "stdout", "stderr", "I", "complex", "imaginary",
    "unix", "linux", "i386",
};

/* What `<mod>_<name>` must not be: the instance functions, and the GPU build's extras. */
static const char *const instance_fns[] = {
    "create", "destroy", "error", "save", "load", "num_params", "param", "set_stream", "sync",
};

static bool is_identifier(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(s, list[k]) == 0)
            return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* C reserves _X... and __...; implementations define such macros (__x86_64__). */
static bool is_reserved_ident(const char *s)
{
    return s[0] == '_' && (s[1] == '_' || (s[1] >= 'A' && s[1] <= 'Z'));
}

/* <stdint.h>'s and <limits.h>'s object-like macros: INT8_MAX, SIZE_MAX, CHAR_BIT, ... */
static bool is_limit_macro(const char *s)
{
    for (const char *p = s; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            return false;
    return ends_with(s, "_MAX") || ends_with(s, "_MIN") || ends_with(s, "_WIDTH") || ends_with(s, "_BIT");
}

const char *cg_c_type(ir_dtype t)
{
    switch (t) {
    case DT_BOOL: return "uint8_t";
    case DT_I32: return "int32_t";
    case DT_I64: return "int64_t";
    case DT_F16:
    case DT_BF16: return "uint16_t";
    case DT_F32: return "float";
    case DT_F64: return "double";
    default: return "void";
    }
}

int cg_header_check(const ir_module *m, char *err, size_t errlen)
{
    const char *mod = m ? m->name : NULL;
    if (!is_identifier(mod)) {
        snprintf(err, errlen, "the module name '%s' is not a C identifier; choose one with --name", mod ? mod : "");
        return -1;
    }
    if (in_list(mod, reserved_words, sizeof reserved_words / sizeof *reserved_words) || is_reserved_ident(mod) ||
        strcmp(mod, "main") == 0 || ends_with(mod, "_t") || is_limit_macro(mod)) {
        snprintf(err, errlen, "the module name '%s' is reserved in C or C++; choose another with --name", mod);
        return -1;
    }
    if (strlen(mod) > 100) {
        snprintf(err, errlen, "the module name '%.40s...' is longer than 100 characters", mod);
        return -1;
    }
    if (strcmp(mod, "tdsl") == 0 || strncmp(mod, "tdsl_", 5) == 0 || strncmp(mod, "TDSL_", 5) == 0) {
        snprintf(err, errlen, "the module name '%s' would clash with the runtime's tdsl_ names; choose another with --name",
                 mod);
        return -1;
    }
    for (int k = 0; k < m->nfuncs; k++) {
        const char *fn = m->funcs[k]->name;
        if (!is_identifier(fn)) {
            snprintf(err, errlen, "the export '%s' is not a C identifier", fn ? fn : "");
            return -1;
        }
        if (strlen(fn) > 100) {
            snprintf(err, errlen, "the export name '%.40s...' is longer than 100 characters", fn);
            return -1;
        }
        if (in_list(fn, instance_fns, sizeof instance_fns / sizeof *instance_fns)) {
            snprintf(err, errlen, "the export '%s' would be the C function %s_%s, which every module defines; rename it",
                     fn, mod, fn);
            return -1;
        }
        /* GPU builds add <fn>_dev twins: keep that name free now so the API does not change later */
        for (int j = 0; j < m->nfuncs; j++) {
            const char *g = m->funcs[j]->name;
            size_t n = g ? strlen(g) : 0;
            if (j != k && g && strncmp(fn, g, n) == 0 && strcmp(fn + n, "_dev") == 0) {
                snprintf(err, errlen, "the export '%s' would clash with the device twin of export '%s' (%s_%s)", fn, g,
                         mod, fn);
                return -1;
            }
        }
    }
    return 0;
}

/* ---- text helpers ---- */

/* Text inside a comment or #error string: no "*" "/" pair, no control characters, no quotes. */
static void put_safe(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '*' && p[1] == '/')
            fputs("* ", out);
        else if (*p < 0x20 || *p == 0x7f)
            fputc('?', out);
        else if (*p == '"' || *p == '\\')
            fputc('\'', out);
        else
            fputc(*p, out);
    }
}

/* "f32[64, 784]", or "f32" for a scalar, as the source writes types. */
static void format_type(char *buf, size_t len, ir_dtype dt, int rank, const int64_t *shape)
{
    char dims[256] = "";
    if (rank > 0)
        ir_format_shape(dims, sizeof dims, rank, shape);
    snprintf(buf, len, "%s%s", ir_dtype_name(dt), dims);
}

static void format_double(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.17g", v);
    /* the shortest text that reads back to v, as a person would write it */
    for (int p = 1; p <= 17; p++) {
        char t[64];
        snprintf(t, sizeof t, "%.*g", p, v);
        if (strtod(t, NULL) == v) {
            snprintf(buf, len, "%s", t);
            return;
        }
    }
}

/* ---- parameter names ---- */

enum { NAME_MAX_LEN = 96 };

typedef struct c_param {
    char name[NAME_MAX_LEN + 16];   /* room for a base name and a numeric suffix */
    const char *source;   /* the source name when the C name differs, else NULL */
    char type[288];       /* "f32[64, 784]" */
    const char *ctype;
    bool is_out;
} c_param;

/* A name no parameter may have: the instance `m`, the module's typedef, type names (`_t`,
 * POSIX's), keywords, reserved identifiers and the runtime's or <stdint.h>'s macros. */
static bool never_a_param(const char *s, const ir_module *m)
{
    return strcmp(s, "m") == 0 || strcmp(s, m->name) == 0 || ends_with(s, "_t") || strncmp(s, "TDSL", 4) == 0 ||
           is_reserved_ident(s) || is_limit_macro(s) ||
           in_list(s, reserved_words, sizeof reserved_words / sizeof *reserved_words);
}

static bool name_taken(const char *s, const ir_module *m, const c_param *ps, int n, int self)
{
    if (never_a_param(s, m))
        return true;
    for (int k = 0; k < n; k++)
        if (k != self && ps[k].name[0] && strcmp(ps[k].name, s) == 0)
            return true;
    return false;
}

/* Outputs are named out / out0, out1, ... (a training step's one result: loss); arguments keep their source names unless a
 * name is taken, then `name_` (then name_2, ...); a name that is not an identifier (text
 * IR allows any) becomes argN. */
static void name_params(const ir_module *m, const ir_func *f, c_param *ps)
{
    int n = f->nargs + ir_num_results(f);
    for (int k = 0; k < ir_num_results(f); k++) {
        c_param *p = &ps[f->nargs + k];
        if (ir_num_results(f) == 1)   /* a training step returns F's value: its loss */
            snprintf(p->name, sizeof p->name, "%s", ir_num_results(f) < f->nouts ? "loss" : "out");
        else
            snprintf(p->name, sizeof p->name, "out%d", k);
    }
    /* first the names that stay, so a renamed one cannot take a later argument's name */
    for (int k = 0; k < f->nargs; k++) {
        const char *s = f->args[k].name;
        if (is_identifier(s) && strlen(s) < NAME_MAX_LEN - 8 && !name_taken(s, m, ps, n, k))
            snprintf(ps[k].name, sizeof ps[k].name, "%s", s);
    }
    for (int k = 0; k < f->nargs; k++) {
        if (ps[k].name[0])
            continue;
        const char *s = f->args[k].name;
        ps[k].source = s ? s : "";
        char base[NAME_MAX_LEN] = "";
        if (is_identifier(s) && strlen(s) < NAME_MAX_LEN - 8)
            snprintf(base, sizeof base, "%s_", s);
        /* argN_J is never ruled out by never_a_param, so the loop below ends */
        if (!is_identifier(s) || strlen(s) >= NAME_MAX_LEN - 8 || never_a_param(base, m))
            snprintf(base, sizeof base, "arg%d", k);
        snprintf(ps[k].name, sizeof ps[k].name, "%s", base);
        for (int j = 2; name_taken(ps[k].name, m, ps, n, k); j++)
            snprintf(ps[k].name, sizeof ps[k].name, "%s%s%d", base, ends_with(base, "_") ? "" : "_", j);
    }
}

/* ---- emission ---- */

static void emit_export(FILE *out, const ir_module *m, const ir_func *f, const char *source_path)
{
    int n = f->nargs + ir_num_results(f);
    c_param ps[64 + 64];
    if (n > (int)(sizeof ps / sizeof *ps)) {
        fprintf(out, "#error \"export %s has more arguments and outputs than a header can declare\"\n", f->name);
        return;
    }
    memset(ps, 0, sizeof ps);
    for (int k = 0; k < f->nargs; k++) {
        const ir_arg *a = &f->args[k];
        format_type(ps[k].type, sizeof ps[k].type, a->dtype, a->rank, a->shape);
        ps[k].ctype = cg_c_type(a->dtype);
    }
    for (int k = 0; k < ir_num_results(f); k++) {
        const ir_node *o = &f->nodes[f->outs[k]];
        c_param *p = &ps[f->nargs + k];
        format_type(p->type, sizeof p->type, o->dtype, o->rank, o->shape);
        p->ctype = cg_c_type(o->dtype);
        p->is_out = true;
    }
    name_params(m, f, ps);

    /* the source signature, reconstructed: export fn NAME(a: T, ...) -> T | (T, ...) */
    fputs("/* export fn ", out);
    put_safe(out, f->name);
    fputc('(', out);
    for (int k = 0; k < f->nargs; k++) {
        fputs(k ? ", " : "", out);
        put_safe(out, f->args[k].name);
        fprintf(out, ": %s", ps[k].type);
    }
    fputs(") -> ", out);
    if (ir_num_results(f) != 1)
        fputc('(', out);
    for (int k = 0; k < ir_num_results(f); k++)
        fprintf(out, "%s%s", k ? ", " : "", ps[f->nargs + k].type);
    if (ir_num_results(f) != 1)
        fputc(')', out);
    if (source_path && f->line > 0) {
        fputs("   (", out);
        put_safe(out, source_path);
        fprintf(out, ":%d)", f->line);
    }
    fputs(" */\n", out);
    if (ir_num_results(f) < f->nouts) {   /* a training step: what else it changes */
        int np = 0, ns = 0;
        for (int k = ir_num_results(f); k < f->nouts; k++)
            np += f->updates[k].kind == IR_UPD_PARAM, ns += f->updates[k].kind == IR_UPD_STATE;
        fprintf(out, "/* a training step: updates %d param%s and %d optimizer state tensor%s inside m */\n", np,
                np == 1 ? "" : "s", ns, ns == 1 ? "" : "s");
    }

    /* the prototype, one pointer per line, comments aligned */
    char head[256];
    int indent = snprintf(head, sizeof head, "int %s_%s(", m->name, f->name);
    if (indent < 0 || indent >= (int)sizeof head)
        indent = 4;
    int width = 0;
    for (int k = 0; k < n; k++) {
        int w = (int)(strlen(ps[k].ctype) + strlen(ps[k].name) + (ps[k].is_out ? 3 : 9)); /* "const " " *" "," */
        if (w > width)
            width = w;
    }
    fprintf(out, "%s%s *m,\n", head, m->name);
    for (int k = 0; k < n; k++) {
        int len = fprintf(out, "%*s%s%s *%s%s", indent, "", ps[k].is_out ? "" : "const ", ps[k].ctype, ps[k].name,
                          k + 1 < n ? "," : ");");
        fprintf(out, "%*s /* %s", width + 1 - (len - indent), "", ps[k].type);
        bool scalar = strchr(ps[k].type, '[') == NULL;
        if (scalar || ps[k].source) {
            fputs(scalar ? " (scalar" : " (", out);
            if (ps[k].source) {
                fputs(scalar ? "; source name: " : "source name: ", out);
                put_safe(out, ps[k].source);
            }
            fputc(')', out);
        }
        fputs(" */\n", out);
    }
}

static void emit_params_table(FILE *out, const ir_module *m)
{
    if (m->nparams == 0) {
        fprintf(out, "/* Parameters: none (%s_num_params() is 0). */\n", m->name);
        return;
    }
    fprintf(out, "/* Parameters, in declaration order (i for %s_param, names in the params file):\n", m->name);
    int wname = 0, wtype = 0;
    for (int k = 0; k < m->nparams; k++) {
        const ir_param *p = &m->params[k];
        char t[288];
        format_type(t, sizeof t, p->dtype, p->rank, p->shape);
        int wn = (int)strlen(p->name ? p->name : "");
        wname = wn > wname ? wn : wname;
        wtype = (int)strlen(t) > wtype ? (int)strlen(t) : wtype;
    }
    for (int k = 0; k < m->nparams; k++) {
        const ir_param *p = &m->params[k];
        char t[288];
        format_type(t, sizeof t, p->dtype, p->rank, p->shape);
        fprintf(out, " * %3d  ", k);
        put_safe(out, p->name);
        fprintf(out, "%*s  %-*s  = %s", wname - (int)strlen(p->name ? p->name : ""), "", wtype, t,
                ir_init_name(p->init));
        char a[64], b[64];
        format_double(a, sizeof a, p->a);
        format_double(b, sizeof b, p->b);
        if (p->init == INIT_FULL)
            fprintf(out, "(%s)", a);
        else if (p->init == INIT_NORMAL || p->init == INIT_UNIFORM)
            fprintf(out, "(%s, %s)", a, b);
        fputc('\n', out);
    }
    fputs(" */\n", out);
}

/* Declarations with their comments in one aligned column. */
static void put_decls(FILE *out, char (*decls)[256], const char *const *comments, int n)
{
    int w = 0;
    for (int k = 0; k < n; k++)
        w = (int)strlen(decls[k]) > w ? (int)strlen(decls[k]) : w;
    for (int k = 0; k < n; k++) {
        if (comments[k])
            fprintf(out, "%-*s   /* %s */\n", w, decls[k], comments[k]);
        else
            fprintf(out, "%s\n", decls[k]);
    }
}

void cg_emit_header(FILE *out, const ir_module *m, const char *source_path)
{
    char err[512];
    bool ok = m && cg_header_check(m, err, sizeof err) == 0;
    fputs("/* Generated by tdslc " TDSL_VERSION, out);
    if (source_path) {
        fputs(" from ", out);
        put_safe(out, source_path);
    }
    fputs(". Do not edit.\n", out);
    if (!ok) {
        fputs(" * This module cannot have a C interface; see the #error below. */\n", out);
        fputs("#error \"tdslc: ", out);
        put_safe(out, m ? err : "no module");
        fputs("\"\n", out);
        return;
    }
    const char *mod = m->name;
    fprintf(out,
            " * The C interface of module %s: link %s.o with libtdslrt (-ltdslrt -lcjson -lpthread -lm).\n"
            " * Buffers are dense, row-major and owned by the caller; f16/bf16 travel as uint16_t,\n"
            " * bool as uint8_t. Functions return 0 or a tdsl_status; %s_error says why.\n"
            " * An instance is used by one thread at a time; instances are independent. */\n",
            mod, mod, mod);
    fprintf(out, "#ifndef TDSL_MODULE_%s_H\n#define TDSL_MODULE_%s_H\n\n", mod, mod);
    fputs("#include <tdsl/runtime.h>   /* tdsl_options, tdsl_tensor, tdsl_status */\n", out);
    fputs("#include <stdint.h>\n\n", out);
    fputs("#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n", out);
    fprintf(out, "typedef struct %s %s;\n\n", mod, mod);
    char d[3][256];
    snprintf(d[0], sizeof d[0], "%s *%s_create(const tdsl_options *opts);", mod, mod);
    snprintf(d[1], sizeof d[1], "void %s_destroy(%s *m);", mod, mod);
    snprintf(d[2], sizeof d[2], "const char *%s_error(const %s *m);", mod, mod);
    static const char *const c1[] = {"NULL opts: seed 0, all cores; NULL on failure", NULL,
                                     "last error of this instance; \"\" if none"};
    put_decls(out, d, c1, 3);
    for (int k = 0; k < m->nfuncs; k++) {
        fputc('\n', out);
        emit_export(out, m, m->funcs[k], source_path);
    }
    fputc('\n', out);
    emit_params_table(out, m);
    char e[4][256], count[64];
    snprintf(e[0], sizeof e[0], "int %s_save(const %s *m, const char *path);", mod, mod);
    snprintf(e[1], sizeof e[1], "int %s_load(%s *m, const char *path);", mod, mod);
    snprintf(e[2], sizeof e[2], "int %s_num_params(void);", mod);
    snprintf(e[3], sizeof e[3], "tdsl_tensor %s_param(%s *m, int i);", mod, mod);
    snprintf(count, sizeof count, "%d", m->nparams);
    const char *c2[] = {"safetensors; atomic replace", "checks names, dtypes, shapes", count,
                        "name, dtype, rank, shape, strides, data"};
    put_decls(out, e, c2, 4);
    fputs("\n#ifdef __cplusplus\n}\n#endif\n", out);
    fprintf(out, "#endif /* TDSL_MODULE_%s_H */\n", mod);
}
