/* The IR's text form, parser half: reads what ir_print_module writes (docs/ir.md).
 *
 *   file   := { line }                       blank lines and `# comments` anywhere
 *   module := 'module' NAME ['seed' '=' INT]
 *   param  := 'param' NAME ':' TYPE ['=' INIT ['(' NUM {',' NUM} ')']] [meta]
 *   state  := 'state' NAME ':' TYPE [meta]
 *   func   := 'func' NAME '(' [NAME ':' TYPE {',' ...}] ')' '{' [meta] NL
 *             { node NL } 'return' result {',' result} NL '}'
 *   result := ID | 'update' ('param' | 'state') NAME '=' ID      (updates after plain results)
 *   node   := ID '=' OP [ID {',' ID}] {ATTR '=' VALUE} ':' TYPE [meta]
 *   meta   := ';' [NAME] ['@' INT ':' INT]
 *   TYPE   := DTYPE ['[' [INT {',' INT}] ']']        NAME := IDENT | "string"
 *
 * Each node is rebuilt with ir_append, which re-derives its layout and rejects bad nodes;
 * the printed result type must then match what ir_append derived. Errors go through
 * diag with file:line:col; after one the rest of the line is skipped, so a file yields
 * several. Any error makes the result NULL. */
#include "ir.h"
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Dims and list entries are bounded so that no shape rule can overflow int64. */
#define MAX_EXTENT ((int64_t)1 << 48)
#define MAX_INT_ATTR ((int64_t)1 << 53)

/* ---- tokens ---- */

typedef enum { T_EOF, T_NL, T_IDENT, T_NUM, T_STR, T_ID, T_PUNCT, T_BAD } tok_kind;

typedef struct token {
    tok_kind kind;
    int line, col;
    const char *s;   /* text (for T_STR: between the quotes, escapes not yet decoded) */
    size_t n;
    char c;          /* T_PUNCT / T_BAD: the character */
} token;

typedef struct parser {
    const src_file *file;
    arena *ar;
    const char *p, *end;
    int line, col;
    token tok;
    int errors;
    ir_module *m;
} parser;

static bool ident_start(int c) { return isalpha(c) || c == '_'; }
static bool ident_char(int c) { return isalnum(c) || c == '_' || c == '.'; }

static void lex(parser *P)
{
    const char *p = P->p;
    while (p < P->end && (*p == ' ' || *p == '\t' || *p == '\r')) {
        p++;
        P->col++;
    }
    if (p < P->end && *p == '#')   /* comment: up to the newline */
        while (p < P->end && *p != '\n') {
            p++;
            P->col++;
        }
    token t = {T_EOF, P->line, P->col, p, 0, 0};
    if (p >= P->end) {
        P->p = p;
        P->tok = t;
        return;
    }
    const char *s = p;
    unsigned char c = (unsigned char)*p;
    if (c == '\n') {
        t.kind = T_NL;
        p++;
        P->line++;
        P->col = 1;
        t.n = 1;
        P->p = p;
        P->tok = t;
        return;
    }
    if (ident_start(c)) {
        while (p < P->end && ident_char((unsigned char)*p))
            p++;
        t.kind = T_IDENT;
    } else if (isdigit(c) || (c == '.' && p + 1 < P->end && isdigit((unsigned char)p[1])) ||
               ((c == '-' || c == '+') && p + 1 < P->end &&
                (isalnum((unsigned char)p[1]) || p[1] == '.'))) {
        /* a number's extent; strtod/strtoll judge it later */
        p++;
        while (p < P->end) {
            char d = *p;
            if (ident_char((unsigned char)d))
                p++;
            else if ((d == '-' || d == '+') && (p[-1] == 'e' || p[-1] == 'E'))
                p++;
            else
                break;
        }
        t.kind = T_NUM;
    } else if (c == '%' && p + 1 < P->end && isdigit((unsigned char)p[1])) {
        p++;
        s = p;
        while (p < P->end && isdigit((unsigned char)*p))
            p++;
        t.kind = T_ID;
    } else if (c == '"') {
        p++;
        s = p;
        while (p < P->end && *p != '"' && *p != '\n') {
            if (*p == '\\' && p + 1 < P->end && p[1] != '\n')
                p++;
            p++;
        }
        if (p < P->end && *p == '"') {
            t.kind = T_STR;
            t.s = s;
            t.n = (size_t)(p - s);
            p++;
            P->col += (int)(p - t.s) + 1;
            P->p = p;
            P->tok = t;
            return;
        }
        t.kind = T_BAD;   /* unterminated: reported by the caller */
        t.c = '"';
    } else if (strchr("()[],:={}@;", c) && c) {
        p++;
        t.kind = T_PUNCT;
        t.c = (char)c;
    } else {
        p++;
        t.kind = T_BAD;
        t.c = (char)c;
    }
    t.s = s;
    t.n = (size_t)(p - s);
    P->col += (int)(p - t.s) + (t.kind == T_ID ? 1 : 0);
    P->p = p;
    P->tok = t;
}

/* ---- errors and recovery ---- */

__attribute__((format(printf, 3, 4))) static void err_at(parser *P, const token *t, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    P->errors++;
    diag_error(src_loc_make(P->file, t->line, t->col), "%s", msg);
}

static const char *tok_desc(const token *t, char *buf, size_t len)
{
    switch (t->kind) {
    case T_EOF: return "end of file";
    case T_NL: return "end of line";
    case T_STR: snprintf(buf, len, "string \"%.*s\"", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    case T_ID: snprintf(buf, len, "'%%%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    case T_PUNCT: snprintf(buf, len, "'%c'", t->c); return buf;
    case T_BAD:
        if (t->c == '"')
            return "unterminated string";
        if (isprint((unsigned char)t->c))
            snprintf(buf, len, "stray character '%c'", t->c);
        else
            snprintf(buf, len, "stray byte 0x%02x", (unsigned char)t->c);
        return buf;
    default: snprintf(buf, len, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    }
}

static void expected(parser *P, const char *what)
{
    char buf[96];
    err_at(P, &P->tok, "expected %s, found %s", what, tok_desc(&P->tok, buf, sizeof buf));
}

static void skip_line(parser *P)
{
    while (P->tok.kind != T_NL && P->tok.kind != T_EOF)
        lex(P);
}

static bool is_punct(const parser *P, char c) { return P->tok.kind == T_PUNCT && P->tok.c == c; }

static bool is_word(const parser *P, const char *w)
{
    return P->tok.kind == T_IDENT && P->tok.n == strlen(w) && memcmp(P->tok.s, w, P->tok.n) == 0;
}

static bool accept(parser *P, char c)
{
    if (!is_punct(P, c))
        return false;
    lex(P);
    return true;
}

static bool expect(parser *P, char c)
{
    if (accept(P, c))
        return true;
    char what[8] = {'\'', c, '\'', 0};
    expected(P, what);
    return false;
}

/* The line must end here. */
static bool expect_eol(parser *P)
{
    if (P->tok.kind == T_NL || P->tok.kind == T_EOF)
        return true;
    expected(P, "end of line");
    return false;
}

/* ---- values ---- */

static char *tok_str(parser *P, const token *t) { return arena_strndup(P->ar, t->s, t->n); }

/* A "string" with C escapes decoded. */
static bool decode_string(parser *P, const token *t, char **out)
{
    char *buf = arena_alloc(P->ar, t->n + 1);
    size_t o = 0;
    for (size_t k = 0; k < t->n; k++) {
        char c = t->s[k];
        if (c != '\\') {
            buf[o++] = c;
            continue;
        }
        if (++k >= t->n)
            break;
        switch (t->s[k]) {
        case 'n': buf[o++] = '\n'; break;
        case 't': buf[o++] = '\t'; break;
        case '\\': buf[o++] = '\\'; break;
        case '"': buf[o++] = '"'; break;
        case 'x':
            if (k + 2 < t->n && isxdigit((unsigned char)t->s[k + 1]) && isxdigit((unsigned char)t->s[k + 2])) {
                char hex[3] = {t->s[k + 1], t->s[k + 2], 0};
                long v = strtol(hex, NULL, 16);
                if (v == 0) {
                    err_at(P, t, "string contains a NUL byte");
                    return false;
                }
                buf[o++] = (char)v;
                k += 2;
                break;
            }
            /* fall through */
        default:
            err_at(P, t, "bad escape '\\%c' in string", t->s[k]);
            return false;
        }
    }
    buf[o] = 0;
    *out = buf;
    return true;
}

/* NAME := IDENT | "string" */
static bool parse_name(parser *P, const char *what, char **out, token *at)
{
    if (at)
        *at = P->tok;
    if (P->tok.kind == T_IDENT) {
        *out = tok_str(P, &P->tok);
        lex(P);
        return true;
    }
    if (P->tok.kind == T_STR) {
        if (!decode_string(P, &P->tok, out))
            return false;
        lex(P);
        return true;
    }
    expected(P, what);
    return false;
}

static bool parse_int(parser *P, int64_t lo, int64_t hi, const char *what, int64_t *out)
{
    token t = P->tok;
    if (t.kind != T_NUM) {
        expected(P, what);
        return false;
    }
    char buf[64];
    if (t.n >= sizeof buf) {
        err_at(P, &t, "%s is too long", what);
        return false;
    }
    memcpy(buf, t.s, t.n);
    buf[t.n] = 0;
    char *e;
    errno = 0;
    long long v = strtoll(buf, &e, 10);
    if (*e || e == buf) {
        err_at(P, &t, "expected %s, found '%s'", what, buf);
        return false;
    }
    if (errno == ERANGE || v < lo || v > hi) {
        err_at(P, &t, "%s %s is out of range [%" PRId64 ", %" PRId64 "]", what, buf, lo, hi);
        return false;
    }
    *out = v;
    lex(P);
    return true;
}

/* A double: any strtod form, plus the words inf and nan (and -inf from the lexer). */
static bool parse_double(parser *P, const char *what, double *out)
{
    token t = P->tok;
    if (t.kind == T_IDENT && ((t.n == 3 && (memcmp(t.s, "inf", 3) == 0 || memcmp(t.s, "nan", 3) == 0)))) {
        *out = t.s[0] == 'i' ? INFINITY : NAN;
        lex(P);
        return true;
    }
    if (t.kind != T_NUM) {
        expected(P, what);
        return false;
    }
    char buf[128];
    if (t.n >= sizeof buf) {
        err_at(P, &t, "%s is too long", what);
        return false;
    }
    memcpy(buf, t.s, t.n);
    buf[t.n] = 0;
    char *e;
    double v = strtod(buf, &e);
    if (*e || e == buf) {
        err_at(P, &t, "expected %s, found '%s'", what, buf);
        return false;
    }
    *out = v;
    lex(P);
    return true;
}

/* '[' [INT {',' INT}] ']' ; with dims=true every entry is a dimension (>= 0) and the
 * product is bounded, so later numel computations cannot overflow. */
static bool parse_int_list(parser *P, bool dims, int *n, int64_t *v)
{
    token open = P->tok;
    if (!expect(P, '['))
        return false;
    *n = 0;
    int64_t prod = 1;
    if (accept(P, ']'))
        return true;
    for (;;) {
        if (*n == IR_MAX_RANK) {
            err_at(P, &P->tok, "more than %d entries in a list", IR_MAX_RANK);
            return false;
        }
        token at = P->tok;
        int64_t x;
        if (!parse_int(P, dims ? 0 : -MAX_EXTENT, MAX_EXTENT, dims ? "a dimension" : "an integer", &x))
            return false;
        int64_t ax = x < 0 ? -x : x;
        if (ax > 1) {
            if (prod > MAX_EXTENT / ax) {
                err_at(P, &at, "list [%s...] is too large (more than 2^48 elements)", dims ? "dims " : "");
                return false;
            }
            prod *= ax;
        }
        v[(*n)++] = x;
        if (accept(P, ']'))
            return true;
        if (!is_punct(P, ',')) {
            char buf[96];
            err_at(P, &P->tok, "expected ',' or ']' in the list opened at %d:%d, found %s", open.line, open.col,
                   tok_desc(&P->tok, buf, sizeof buf));
            return false;
        }
        lex(P);
    }
}

/* TYPE := DTYPE ['[' dims ']'] */
static bool parse_type(parser *P, ir_dtype *dt, int *rank, int64_t *shape)
{
    token t = P->tok;
    if (t.kind != T_IDENT) {
        expected(P, "a type such as f32[2, 3]");
        return false;
    }
    char buf[16];
    snprintf(buf, sizeof buf, "%.*s", (int)(t.n < 15 ? t.n : 15), t.s);
    if (t.n >= sizeof buf || !ir_dtype_parse(buf, dt)) {
        err_at(P, &t, "unknown dtype '%.*s' (expected bool, i32, i64, f16, bf16, f32 or f64)",
               (int)(t.n > 40 ? 40 : t.n), t.s);
        return false;
    }
    lex(P);
    *rank = 0;
    if (is_punct(P, '['))
        return parse_int_list(P, true, rank, shape);
    return true;
}

static void fmt_type(char *buf, size_t len, ir_dtype dt, int rank, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, len, "%s", ir_dtype_name(dt));
    if (rank > 0 && o < len)
        ir_format_shape(buf + o, len - o, rank, shape);
}

/* meta := ';' [NAME] ['@' INT ':' INT]; names only where allow_name. */
static bool parse_meta(parser *P, bool allow_name, char **name, int *line, int *col)
{
    if (!accept(P, ';'))
        return expect_eol(P);
    if (P->tok.kind == T_IDENT || P->tok.kind == T_STR) {
        if (!allow_name) {
            err_at(P, &P->tok, "only a location '@line:col' may follow ';' here");
            return false;
        }
        if (!parse_name(P, "a name", name, NULL))
            return false;
    }
    if (accept(P, '@')) {
        int64_t l, c;
        if (!parse_int(P, 0, INT32_MAX, "a line number", &l) || !expect(P, ':') ||
            !parse_int(P, 0, INT32_MAX, "a column number", &c))
            return false;
        *line = (int)l;
        *col = (int)c;
    }
    return expect_eol(P);
}

/* ---- module, params ---- */

static void parse_module_line(parser *P)
{
    token kw = P->tok;
    lex(P);
    char *name;
    if (!parse_name(P, "a module name", &name, NULL)) {
        skip_line(P);
        return;
    }
    uint64_t seed = 0;
    if (is_word(P, "seed")) {
        lex(P);
        if (!expect(P, '=')) {
            skip_line(P);
            return;
        }
        token t = P->tok;
        char buf[32];
        char *e = NULL;
        errno = 0;
        if (t.kind == T_NUM && t.n < sizeof buf && isdigit((unsigned char)t.s[0])) {
            memcpy(buf, t.s, t.n);
            buf[t.n] = 0;
            seed = strtoull(buf, &e, 10);
        }
        if (!e || *e || errno == ERANGE) {
            err_at(P, &t, "expected the seed, an unsigned 64-bit integer");
            skip_line(P);
            return;
        }
        lex(P);
    }
    if (!expect_eol(P)) {
        skip_line(P);
        return;
    }
    if (P->m) {
        err_at(P, &kw, "a second 'module' line (the module is already named '%s')", P->m->name);
        return;
    }
    P->m = ir_module_new(P->ar, name);
    P->m->seed = seed;
}

/* Every other declaration needs the module line first; one error, then a stand-in. */
static void need_module(parser *P)
{
    if (P->m)
        return;
    err_at(P, &P->tok, "expected 'module NAME' before any other line");
    P->m = ir_module_new(P->ar, "module");
}

static void parse_param(parser *P)
{
    need_module(P);
    lex(P);
    ir_param p;
    memset(&p, 0, sizeof p);
    char *name;
    token nt;
    if (!parse_name(P, "a param name", &name, &nt) || !expect(P, ':') ||
        !parse_type(P, &p.dtype, &p.rank, p.shape)) {
        skip_line(P);
        return;
    }
    p.name = name;
    p.init = INIT_ZEROS;
    if (accept(P, '=')) {
        token it = P->tok;
        bool found = false;
        for (int k = INIT_ZEROS; k <= INIT_KAIMING_UNIFORM && it.kind == T_IDENT; k++) {
            const char *in = ir_init_name((ir_init_kind)k);
            if (strlen(in) == it.n && memcmp(in, it.s, it.n) == 0) {
                p.init = (ir_init_kind)k;
                found = true;
            }
        }
        if (!found) {
            expected(P, "an initializer (zeros, ones, full, normal, uniform or kaiming_uniform)");
            skip_line(P);
            return;
        }
        lex(P);
        int want = p.init == INIT_FULL ? 1 : (p.init == INIT_NORMAL || p.init == INIT_UNIFORM) ? 2 : 0;
        int got = 0;
        double v[2] = {0, 0};
        if (accept(P, '(')) {
            if (!accept(P, ')')) {
                for (;;) {
                    if (got == 2) {
                        err_at(P, &P->tok, "too many initializer arguments");
                        skip_line(P);
                        return;
                    }
                    if (!parse_double(P, "a number", &v[got])) {
                        skip_line(P);
                        return;
                    }
                    got++;
                    if (accept(P, ')'))
                        break;
                    if (!expect(P, ',')) {
                        skip_line(P);
                        return;
                    }
                }
            }
        }
        if (got != want) {
            err_at(P, &it, "initializer '%s' takes %d argument%s, got %d", ir_init_name(p.init), want,
                   want == 1 ? "" : "s", got);
            skip_line(P);
            return;
        }
        p.a = v[0];
        p.b = v[1];
    }
    if (!parse_meta(P, false, NULL, &p.line, &p.col)) {
        skip_line(P);
        return;
    }
    for (int i = 0; i < P->m->nparams; i++)
        if (strcmp(P->m->params[i].name, name) == 0) {
            err_at(P, &nt, "param '%s' is declared twice", name);
            return;
        }
    ir_add_param(P->m, &p);
}

/* state NAME: TYPE [; @line:col] */
static void parse_state(parser *P)
{
    need_module(P);
    lex(P);
    ir_state st;
    memset(&st, 0, sizeof st);
    char *name;
    token nt;
    if (!parse_name(P, "a state name", &name, &nt) || !expect(P, ':') ||
        !parse_type(P, &st.dtype, &st.rank, st.shape) || !parse_meta(P, false, NULL, &st.line, &st.col)) {
        skip_line(P);
        return;
    }
    st.name = name;
    for (int i = 0; i < P->m->nstates; i++)
        if (strcmp(P->m->states[i].name, name) == 0) {
            err_at(P, &nt, "state '%s' is declared twice", name);
            return;
        }
    ir_add_state(P->m, &st);
}

/* ---- functions ---- */


typedef struct fstate {
    ir_func *f;
    int ntext;      /* text ids seen so far: the next node must be %ntext */
    int cap;
    int *map;       /* text id -> node id in f, or -1 where that node had an error */
    bool returned;
} fstate;

static void map_push(parser *P, fstate *S, int id)
{
    ARR_PUSH(P->ar, S->map, S->ntext, S->cap, id);
}

/* %N as an operand of the node with text id `user` (or of return when user < 0). */
static bool parse_operand(parser *P, fstate *S, int user, int *text_id)
{
    token t = P->tok;
    if (t.kind != T_ID) {
        expected(P, "an operand '%N'");
        return false;
    }
    char buf[24];
    long long v = -1;
    if (t.n < 12) {
        memcpy(buf, t.s, t.n);
        buf[t.n] = 0;
        v = strtoll(buf, NULL, 10);
    }
    int limit = user >= 0 ? user : S->ntext;
    if (v < 0 || v >= limit) {
        if (user >= 0)
            err_at(P, &t, "operand %%%.*s is not defined before %%%d (operands must refer to earlier nodes)",
                   (int)(t.n > 20 ? 20 : t.n), t.s, user);
        else
            err_at(P, &t, "'return' refers to %%%.*s, which is not defined", (int)(t.n > 20 ? 20 : t.n), t.s);
        return false;
    }
    *text_id = (int)v;
    lex(P);
    return true;
}

static void parse_node(parser *P, fstate *S)
{
    token idt = P->tok;
    int id = S->ntext;
    {
        char buf[24];
        long long v = -1;
        if (idt.n < 12) {
            memcpy(buf, idt.s, idt.n);
            buf[idt.n] = 0;
            v = strtoll(buf, NULL, 10);
        }
        if (v != id) {
            err_at(P, &idt, "expected %%%d here (node ids are dense and in order), found %%%.*s", id,
                   (int)(idt.n > 20 ? 20 : idt.n), idt.s);
            /* resynchronize so that one wrong id gives one error */
            if (v > id && v < id + 100000) {
                while (S->ntext <= v)
                    map_push(P, S, -1);
            }
            skip_line(P);
            return;
        }
    }
    map_push(P, S, -1);   /* becomes the node id on success */
    if (S->returned) {
        err_at(P, &idt, "node after 'return' (return must be the last line of a function)");
        skip_line(P);
        return;
    }
    lex(P);
    if (!expect(P, '=')) {
        skip_line(P);
        return;
    }
    token opt = P->tok;
    ir_opcode op;
    char opname[32];
    if (opt.kind != T_IDENT) {
        expected(P, "an op name");
        skip_line(P);
        return;
    }
    snprintf(opname, sizeof opname, "%.*s", (int)(opt.n < 31 ? opt.n : 31), opt.s);
    if (opt.n >= sizeof opname || !ir_op_parse(opname, &op)) {
        err_at(P, &opt, "unknown op '%.*s'", (int)(opt.n > 40 ? 40 : opt.n), opt.s);
        skip_line(P);
        return;
    }
    lex(P);
    const ir_opinfo *info = &ir_ops[op];

    ir_proto pr;
    memset(&pr, 0, sizeof pr);
    pr.op = op;
    int *ins = NULL, nin = 0, incap = 0;
    bool dead = false;   /* an operand had an error of its own: stay quiet about this node */
    if (P->tok.kind == T_ID) {
        for (;;) {
            int tid;
            if (!parse_operand(P, S, id, &tid)) {
                skip_line(P);
                return;
            }
            int real = S->map[tid];
            if (real < 0)
                dead = true;
            ARR_PUSH(P->ar, ins, nin, incap, real);
            if (!accept(P, ','))
                break;
        }
    }

    ir_attr_desc ds[8];
    int nd = ir_op_attrs(op, ds, 8);
    bool seen[8] = {0};
    while (P->tok.kind == T_IDENT) {
        token at = P->tok;
        int k = 0;
        while (k < nd && !(strlen(ds[k].name) == at.n && memcmp(ds[k].name, at.s, at.n) == 0))
            k++;
        if (k == nd) {
            char allowed[160] = "";
            size_t o = 0;
            for (int j = 0; j < nd && o < sizeof allowed; j++)
                o += (size_t)snprintf(allowed + o, sizeof allowed - o, "%s%s", j ? ", " : "", ds[j].name);
            if (nd)
                err_at(P, &at, "'%s' has no attribute '%.*s' (it has: %s)", info->name, (int)(at.n > 40 ? 40 : at.n),
                       at.s, allowed);
            else
                err_at(P, &at, "'%s' takes no attributes, found '%.*s'", info->name, (int)(at.n > 40 ? 40 : at.n),
                       at.s);
            skip_line(P);
            return;
        }
        if (seen[k]) {
            err_at(P, &at, "attribute '%s' given twice", ds[k].name);
            skip_line(P);
            return;
        }
        seen[k] = true;
        lex(P);
        if (!expect(P, '=')) {
            skip_line(P);
            return;
        }
        bool ok = true;
        switch (ds[k].kind) {
        case IR_ATTR_LIST: ok = parse_int_list(P, false, &pr.nlist, pr.list); break;
        case IR_ATTR_INT: ok = parse_int(P, -MAX_INT_ATTR, MAX_INT_ATTR, "an integer", &pr.i[ds[k].slot]); break;
        case IR_ATTR_FLOAT: ok = parse_double(P, "a number", &pr.f[ds[k].slot]); break;
        case IR_ATTR_STR:
            if (P->tok.kind != T_STR) {
                expected(P, "a quoted string");
                ok = false;
            } else {
                char *s;
                ok = decode_string(P, &P->tok, &s);
                pr.str = s;
                if (ok)
                    lex(P);
            }
            break;
        }
        if (!ok) {
            skip_line(P);
            return;
        }
    }

    if (!is_punct(P, ':')) {
        expected(P, nin == 0 && P->tok.kind == T_NUM ? "':' (operands are written %N)" : "':' and the result type");
        skip_line(P);
        return;
    }
    lex(P);
    token tt = P->tok;
    ir_dtype dt;
    int rank;
    int64_t shape[IR_MAX_RANK];
    if (!parse_type(P, &dt, &rank, shape)) {
        skip_line(P);
        return;
    }
    char *name = NULL;
    if (!parse_meta(P, true, &name, &pr.line, &pr.col)) {
        skip_line(P);
        return;
    }
    if (dead)
        return;

    pr.dtype = dt;   /* used by the leaves that need it (const, full, arange, eye) and cast */
    pr.nin = nin;
    int none = 0;
    pr.in = ins ? ins : &none;
    pr.name = name;
    char err[256];
    int nid = ir_append(S->f, &pr, err, sizeof err);
    if (nid < 0) {
        err_at(P, &opt, "%%%d: %s", id, err);
        return;
    }
    const ir_node *n = &S->f->nodes[nid];
    bool same = n->dtype == dt && n->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = n->shape[d] == shape[d];
    if (!same) {
        char want[200], got[200];
        fmt_type(want, sizeof want, dt, rank, shape);
        fmt_type(got, sizeof got, n->dtype, n->rank, n->shape);
        err_at(P, &tt, "%%%d: result type %s does not match the type '%s' derives: %s", id, want, info->name, got);
        return;
    }
    S->map[id] = nid;
}

/* Reads an optional `update param|state NAME =` before a result into u (kind NONE when
 * absent). after_update: an update came earlier, so a plain result is out of order. */
static bool parse_result_target(parser *P, bool after_update, ir_update *u)
{
    if (!is_word(P, "update")) {
        if (after_update) {
            err_at(P, &P->tok, "plain results come before the update outputs in 'return'");
            return false;
        }
        return true;
    }
    lex(P);
    bool is_param = is_word(P, "param");
    if (!is_param && !is_word(P, "state")) {
        expected(P, "'param' or 'state' after 'update'");
        return false;
    }
    lex(P);
    char *name;
    token nt;
    if (!parse_name(P, is_param ? "a param name" : "a state name", &name, &nt))
        return false;
    int n = is_param ? P->m->nparams : P->m->nstates;
    int idx = -1;
    for (int i = 0; i < n && idx < 0; i++)
        if (strcmp(is_param ? P->m->params[i].name : P->m->states[i].name, name) == 0)
            idx = i;
    if (idx < 0) {
        err_at(P, &nt, "'update %s %s': the module has no %s named '%s'", is_param ? "param" : "state", name,
               is_param ? "param" : "state", name);
        return false;
    }
    if (!expect(P, '='))
        return false;
    *u = (ir_update){is_param ? IR_UPD_PARAM : IR_UPD_STATE, idx};
    return true;
}

/* An update output has exactly its target's dtype and shape. */
static bool update_type_ok(parser *P, fstate *S, const ir_update *u, int id, const token *at)
{
    const ir_node *n = &S->f->nodes[id];
    const char *name;
    ir_dtype dt;
    int rank;
    const int64_t *shape;
    if (u->kind == IR_UPD_PARAM) {
        const ir_param *p = &P->m->params[u->index];
        name = p->name, dt = p->dtype, rank = p->rank, shape = p->shape;
    } else {
        const ir_state *st = &P->m->states[u->index];
        name = st->name, dt = st->dtype, rank = st->rank, shape = st->shape;
    }
    bool same = n->dtype == dt && n->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = n->shape[d] == shape[d];
    if (same)
        return true;
    char want[200], got[200];
    fmt_type(want, sizeof want, dt, rank, shape);
    fmt_type(got, sizeof got, n->dtype, n->rank, n->shape);
    err_at(P, at, "the update of %s '%s' is %s, but %s '%s' is %s", u->kind == IR_UPD_PARAM ? "param" : "state",
           name, got, u->kind == IR_UPD_PARAM ? "param" : "state", name, want);
    return false;
}

static void parse_return(parser *P, fstate *S)
{
    token rt = P->tok;
    lex(P);
    if (S->returned) {
        err_at(P, &rt, "a second 'return' in function '%s'", S->f->name);
        skip_line(P);
        return;
    }
    S->returned = true;
    int *buf = NULL, nout = 0, cap = 0, nu = 0, ucap = 0, nupd = 0;
    ir_update *upd = NULL;
    bool dead = false;
    if (P->tok.kind == T_ID || is_word(P, "update")) {
        for (;;) {
            ir_update u = {IR_UPD_NONE, 0};
            if (!parse_result_target(P, nupd > 0, &u)) {
                skip_line(P);
                return;
            }
            int tid;
            token ot = P->tok;
            if (!parse_operand(P, S, -1, &tid)) {
                skip_line(P);
                return;
            }
            if (S->map[tid] < 0)
                dead = true;
            else if (u.kind != IR_UPD_NONE && !update_type_ok(P, S, &u, S->map[tid], &ot)) {
                skip_line(P);
                return;
            }
            for (int k = 0; k < nout && u.kind != IR_UPD_NONE; k++)
                if (upd[k].kind == u.kind && upd[k].index == u.index) {
                    err_at(P, &ot, "%s '%s' is updated twice", u.kind == IR_UPD_PARAM ? "param" : "state",
                           u.kind == IR_UPD_PARAM ? P->m->params[u.index].name : P->m->states[u.index].name);
                    skip_line(P);
                    return;
                }
            nupd += u.kind != IR_UPD_NONE;
            ARR_PUSH(P->ar, upd, nu, ucap, u);
            ARR_PUSH(P->ar, buf, nout, cap, S->map[tid]);
            if (!accept(P, ','))
                break;
        }
    }
    if (nout == 0) {   /* the verifier requires a result; so does the parser */
        err_at(P, &rt, "'return' needs at least one result (%%N, ...)");
        skip_line(P);
        return;
    }
    if (!expect_eol(P)) {
        skip_line(P);
        return;
    }
    if (!dead)
        for (int k = 0; k < nout; k++) {
            if (upd[k].kind == IR_UPD_NONE)
                ir_add_output(S->f, buf[k]);
            else
                ir_add_update(S->f, buf[k], upd[k].kind, upd[k].index);
        }
}

/* Skips a function body whose header could not be read: up to its closing '}'. */
static void skip_body(parser *P)
{
    for (;;) {
        skip_line(P);
        if (P->tok.kind == T_EOF)
            return;
        lex(P);
        if (is_punct(P, '}')) {
            lex(P);
            return;
        }
        if (is_word(P, "func") || is_word(P, "param") || is_word(P, "state") || is_word(P, "module"))
            return;
    }
}

static void parse_func(parser *P)
{
    need_module(P);
    lex(P);
    char *name;
    token nt;
    int nargs = 0, cap = 0;
    ir_arg *args = NULL;
    if (!parse_name(P, "a function name", &name, &nt) || !expect(P, '(')) {
        skip_body(P);
        return;
    }
    if (!accept(P, ')')) {
        for (;;) {
            ir_arg a;
            memset(&a, 0, sizeof a);
            char *an;
            if (!parse_name(P, "an argument name", &an, NULL) || !expect(P, ':') ||
                !parse_type(P, &a.dtype, &a.rank, a.shape)) {
                skip_body(P);
                return;
            }
            a.name = an;
            ARR_PUSH(P->ar, args, nargs, cap, a);
            if (accept(P, ')'))
                break;
            if (!expect(P, ',')) {
                skip_body(P);
                return;
            }
        }
    }
    int line = 0, col = 0;
    if (!expect(P, '{') || !parse_meta(P, false, NULL, &line, &col)) {
        skip_body(P);
        return;
    }
    if (ir_module_find(P->m, name)) {
        err_at(P, &nt, "function '%s' is defined twice", name);
        skip_body(P);
        return;
    }
    fstate S = {ir_func_new(P->m, name, nargs, args), 0, 0, NULL, false};
    S.f->line = line;
    S.f->col = col;
    for (;;) {
        while (P->tok.kind == T_NL)
            lex(P);
        if (P->tok.kind == T_EOF) {
            err_at(P, &P->tok, "end of file inside function '%s' (missing '}')", name);
            return;
        }
        if (is_punct(P, '}')) {
            token close = P->tok;
            lex(P);
            if (!S.returned)
                err_at(P, &close, "function '%s' has no 'return'", name);
            if (!expect_eol(P))
                skip_line(P);
            return;
        }
        if (is_word(P, "func") || is_word(P, "param") || is_word(P, "state") || is_word(P, "module")) {
            err_at(P, &P->tok, "missing '}' at the end of function '%s'", name);
            return;
        }
        if (is_word(P, "return"))
            parse_return(P, &S);
        else if (P->tok.kind == T_ID)
            parse_node(P, &S);
        else {
            expected(P, "a node '%N = op ...', 'return' or '}'");
            skip_line(P);
        }
    }
}

ir_module *ir_parse_module(arena *ar, const src_file *file)
{
    parser P;
    memset(&P, 0, sizeof P);
    P.file = file;
    P.ar = ar;
    P.p = file && file->text ? file->text : "";
    P.end = P.p + (file && file->text ? file->len : 0);
    P.line = 1;
    P.col = 1;
    lex(&P);
    for (;;) {
        while (P.tok.kind == T_NL)
            lex(&P);
        if (P.tok.kind == T_EOF)
            break;
        if (is_word(&P, "module"))
            parse_module_line(&P);
        else if (is_word(&P, "param"))
            parse_param(&P);
        else if (is_word(&P, "state"))
            parse_state(&P);
        else if (is_word(&P, "func"))
            parse_func(&P);
        else if (is_punct(&P, '}')) {
            err_at(&P, &P.tok, "'}' outside a function");
            skip_line(&P);
        } else {
            expected(&P, "'module', 'param', 'state' or 'func'");
            skip_line(&P);
        }
    }
    if (!P.m && !P.errors)
        err_at(&P, &P.tok, "empty IR file: expected 'module NAME'");
    return P.errors ? NULL : P.m;
}
