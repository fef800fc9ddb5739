/* tdslc: the driver. Reading `compile()` tells the whole pipeline:
 *   source --parse--> AST --lower--> IR --verify--> (dump | evaluate)
 * Later stages (autodiff, fusion, memory planning, codegen) join this list as they land. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/header.h"
#include "codegen/llvm.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/eval.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/philox.h"
#include "runtime/safetensors.h"
#include "tools/npy.h"
#include "tools/printarr.h"

enum { EXIT_INPUT = 1, EXIT_USAGE = 2 };

static const char *usage_text =
    "usage: tdslc COMMAND FILE.tdsl [options]\n"
    "\n"
    "commands:\n"
    "  check FILE                 parse and type-check only\n"
    "  dump  FILE [--stage S] [--fn NAME] [--format text|dot]\n"
    "                             S = ast | ir | grad | layout | fused | planned | llvm | asm (default ir)\n"
    "  run   FILE --fn NAME [--in ARG=FILE.npy]... [--out FILE.npy | -]\n"
    "             [--params FILE.safetensors] [--engine jit|interp] [--seed N]\n"
    "  build FILE [-o OUT.o] [--header OUT.h] [--name MODULE] [--target cpu]\n"
    "             [--cpu native|x86-64-v3|x86-64-v4|NAME] [-O0|-O1|-O2|-O3]\n"
    "  gradcheck FILE --fn NAME [--eps E] [--rtol R] [--atol A] [--seed N] [--in ARG=FILE.npy]...\n"
    "                             check a grad export against central differences (f64)\n"
    "  stats FILE                 per export: kernels, FLOPs, bytes, peak memory\n"
    "\n"
    "common options:\n"
    "  -D NAME=VALUE              override a const\n"
    "  --time-passes              print the time each stage takes to stderr\n"
    "  --no-fuse                  one kernel per computed value (no elementwise fusion)\n"
    "  -h, --help                 this help\n"
    "  --version                  print the version\n"
    "\n"
    "FILE may also be a text IR file (.ir), as printed by `tdslc dump --stage ir`.\n"
    "exit status: 0 success, 1 the input is wrong, 2 bad command line, 3 internal error\n";

typedef struct input_arg {
    const char *name, *path;
} input_arg;

typedef struct options {
    const char *command, *file;
    const char *stage, *fn, *format, *out, *params, *engine;
    const char *obj, *header, *name, *target, *cpu;
    int opt_level;
    uint64_t seed;
    double eps, rtol, atol;
    bool time_passes, no_fuse;
    int nins;
    input_arg ins[64];
    int ndefs;
    lower_define defs[64];
} options;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void timed(const options *o, const char *stage, double t0)
{
    if (o->time_passes)
        fprintf(stderr, "time: %-10s %8.3f ms\n", stage, now_ms() - t0);
}

static int usage_error(const char *fmt, const char *arg)
{
    fputs("tdslc: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(run `tdslc --help` for usage)\n", stderr);
    return EXIT_USAGE;
}

/* Reads a whole file; NUL bytes are kept (the lexer reports them). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* module name = --name, else the file stem made a C identifier (01-mlp.tdsl -> m01_mlp) */
static const char *module_name(arena *ar, const options *o)
{
    if (o->name)
        return o->name;
    const char *base = strrchr(o->file, '/');
    base = base ? base + 1 : o->file;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    char *name = arena_alloc(ar, n + 2);
    size_t k = 0;
    if (n == 0 || (base[0] >= '0' && base[0] <= '9'))
        name[k++] = 'm';
    for (size_t i = 0; i < n; i++) {
        char ch = base[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
        name[k++] = ok ? ch : '_';
    }
    return name;
}

static bool is_identifier(const char *s)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* The pipeline up to checked IR. Returns NULL (diagnostics printed) on bad input. */
static ir_module *compile(arena *ar, const options *o, src_file *src, ast_file **ast_out, int *ncheckpoints)
{
    double t0 = now_ms();
    if (ends_with(o->file, ".ir")) {
        ir_module *m = ir_parse_module(ar, src);
        timed(o, "parse-ir", t0);
        if (m && o->name)
            m->name = o->name;   /* --name renames a module read from text IR too */
        return m;
    }
    ast_file *ast = parse_file(ar, src);
    timed(o, "parse", t0);
    if (ast_out)
        *ast_out = ast;
    if (!ast)
        return NULL;
    t0 = now_ms();
    lower_opts lo = {.module_name = module_name(ar, o), .ndefines = o->ndefs, .defines = (lower_define *)o->defs};
    ir_module *m = lower_file(ar, ast, &lo);
    timed(o, "lower", t0);
    if (ncheckpoints)
        *ncheckpoints = lo.ncheckpoints;
    if (!m)
        return NULL;
    t0 = now_ms();
    if (ir_verify(m, stderr) != 0)
        diag_ice("verify", "the IR produced by lowering is malformed (see above)");
    timed(o, "verify", t0);
    return m;
}

static ir_func *pick_fn(const ir_module *m, const char *name, const char *cmd)
{
    if (name) {
        ir_func *f = ir_module_find(m, name);
        if (!f) {
            fprintf(stderr, "tdslc: no exported fn named '%s'", name);
            for (int k = 0; k < m->nfuncs; k++)
                fprintf(stderr, "%s'%s'", k ? ", " : "; exported fns: ", m->funcs[k]->name);
            fputc('\n', stderr);
        }
        return f;
    }
    if (m->nfuncs == 1)
        return m->funcs[0];
    fprintf(stderr, "tdslc %s: choose a function with --fn NAME", cmd);
    for (int k = 0; k < m->nfuncs; k++)
        fprintf(stderr, "%s'%s'", k ? ", " : "; exported fns: ", m->funcs[k]->name);
    fputc('\n', stderr);
    return NULL;
}

/* Runs the LLVM backend; prints why on failure (a backend failure on checked IR is a bug). */
static cg_llvm *build_llvm(const options *o, const ir_module *m, char *err, size_t errlen)
{
    double t0 = now_ms();
    cg_options co = {.cpu = o->cpu ? o->cpu : "native", .opt_level = o->opt_level, .no_fuse = o->no_fuse};
    cg_llvm *cg = cg_llvm_build(m, &co, err, errlen);
    timed(o, "llvm", t0);
    if (!cg)
        fprintf(stderr, "tdslc: code generation failed: %s\n", err);
    return cg;
}

/* the export declarations `g = grad(...)` of the source */
static bool is_grad_export(const ast_file *ast, const char *name)
{
    for (int k = 0; ast && k < ast->ndecls; k++) {
        const ast_decl *d = ast->decls[k];
        if (d->kind == DECL_EXPORT && strcmp(d->name, name) == 0 && d->value && d->value->kind == AST_CALL &&
            strcmp(d->value->str, "grad") == 0)
            return true;
    }
    return false;
}

/* dump --stage grad: the IR of grad exports (forward, then the backward graph) */
static int dump_grad(const options *o, const ir_module *m, const ast_file *ast)
{
    if (!ast)
        return usage_error("--stage grad needs a .tdsl source file, not %s", o->file);
    if (o->format && strcmp(o->format, "dot") == 0)
        return usage_error("--format dot is available for the ir, layout and fused stages, not '%s'", "grad");
    int shown = 0;
    for (int k = 0; k < m->nfuncs; k++) {
        const ir_func *f = m->funcs[k];
        if (!is_grad_export(ast, f->name) || (o->fn && strcmp(f->name, o->fn) != 0))
            continue;
        if (shown++)
            fputc('\n', stdout);
        ir_print_func(stdout, f);
    }
    if (o->fn && !shown) {
        fprintf(stderr, "tdslc: dump --stage grad: '%s' is not a grad export\n", o->fn);
        return EXIT_USAGE;
    }
    if (!shown)
        fprintf(stderr, "tdslc: dump --stage grad: %s has no grad exports\n", o->file);
    return 0;
}

static int cmd_dump(const options *o, ir_module *m, const ast_file *ast)
{
    const char *stage = o->stage ? o->stage : "ir";
    bool dot = o->format && strcmp(o->format, "dot") == 0;
    if (strcmp(stage, "ast") == 0) {
        if (!ast)
            return usage_error("--stage ast needs a .tdsl source file, not %s", o->file);
        if (dot)
            return usage_error("--format dot is available for the ir, layout and fused stages, not '%s'", stage);
        ast_print(stdout, ast);
        return 0;
    }
    bool layout = strcmp(stage, "layout") == 0;
    bool fused = strcmp(stage, "fused") == 0, planned = strcmp(stage, "planned") == 0;
    if (fused || planned || strcmp(stage, "llvm") == 0 || strcmp(stage, "asm") == 0) {
        if (dot && !fused)
            return usage_error("--format dot is available for the ir, layout and fused stages, not '%s'", stage);
        if (o->fn && !ir_module_find(m, o->fn))
            return pick_fn(m, o->fn, "dump") ? 0 : EXIT_USAGE;
        if (fused || planned) {   /* the kernels after fusion; planned: and the memory plan */
            arena ar;
            arena_init(&ar);
            for (int k = 0; k < m->nfuncs; k++) {
                const ir_func *f = m->funcs[k];
                if (o->fn && strcmp(f->name, o->fn) != 0)
                    continue;
                pass_plan pl = pass_pipeline(&ar, f, !o->no_fuse);
                if (fused)
                    pass_print_fused(stdout, f, pl.schedule, dot);
                else
                    pass_print_plan(stdout, f, pl.schedule, pl.mem);
            }
            arena_free(&ar);
            return 0;
        }
        char err[512];
        cg_llvm *cg = build_llvm(o, m, err, sizeof err);
        if (!cg)
            return EXIT_INPUT;
        /* with --fn, only that export's functions (and, for llvm, what they use) */
        int rc = stage[0] == 'l' ? cg_llvm_print_export_ir(cg, o->fn, stdout, err, sizeof err)
                                 : cg_llvm_print_export_asm(cg, o->fn, stdout, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "tdslc: %s\n", err);
            rc = EXIT_INPUT;
        }
        cg_llvm_free(cg);
        return rc;
    }
    if (!layout && strcmp(stage, "ir") != 0) {
        if (strcmp(stage, "grad") == 0)
            return dump_grad(o, m, ast);
        static const char *later[] = {"cuda", "ptx"};
        for (size_t k = 0; k < sizeof later / sizeof *later; k++)
            if (strcmp(stage, later[k]) == 0)
                return usage_error("--stage %s is not available yet in this version", stage);
        return usage_error("unknown stage '%s' (ast, ir, grad, layout, fused, planned, llvm, asm)", stage);
    }
    for (int k = 0; k < m->nfuncs; k++) {
        const ir_func *f = m->funcs[k];
        if (o->fn && strcmp(f->name, o->fn) != 0)
            continue;
        if (dot)
            ir_print_dot(stdout, f, layout);
        else if (layout)
            ir_print_layout(stdout, f);
    }
    if (o->fn && !ir_module_find(m, o->fn))
        return pick_fn(m, o->fn, "dump") ? 0 : EXIT_USAGE;
    if (!dot && !layout) {
        if (o->fn)
            ir_print_func(stdout, ir_module_find(m, o->fn));
        else
            ir_print_module(stdout, m);
    }
    return 0;
}

static void type_string(char *buf, size_t n, ir_dtype dt, int rank, const int64_t *shape)
{
    snprintf(buf, n, "%s", ir_dtype_name(dt));
    if (rank)
        ir_format_shape(buf + strlen(buf), n - strlen(buf), rank, shape);
}

/* Deterministic random inputs: floats N(0, 1), integers U{0..9}, bools 50/50, from the
 * same counter-based generator as params, keyed by the seed and "input:<name>". */
static bool random_input(host_tensor *t, const ir_arg *a, uint64_t seed)
{
    if (!host_tensor_alloc(t, a->dtype, a->rank, a->shape))
        return false;
    int64_t n = host_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v)
        return false;
    char key[300];
    snprintf(key, sizeof key, "input:%s", a->name);
    bool fl = ir_dtype_is_float(a->dtype);
    rt_init_values(fl ? RT_INIT_NORMAL : RT_INIT_UNIFORM, fl ? 0 : 0, fl ? 1 : (a->dtype == DT_BOOL ? 2 : 10), 1, seed,
                   key, n, v);
    for (int64_t i = 0; i < n; i++)
        host_tensor_set(t, i, fl ? v[i] : (double)(int64_t)v[i]);
    free(v);
    return true;
}

/* --params FILE: every param (exact type), or the initializers without it. The file may also
 * hold the module's optimizer states (a checkpoint from <module>_save): each is checked and
 * copied into states when that is given (run), else ignored (gradcheck uses no state). */
static bool load_params(const options *o, const ir_module *m, host_tensor *params, host_tensor *states)
{
    st_file *st = NULL;
    char err[512];
    if (o->params) {
        st = st_open(o->params, err, sizeof err);
        if (!st) {
            fprintf(stderr, "tdslc: %s\n", err);
            return false;
        }
    }
    bool ok = true;
    for (int k = 0; k < m->nparams && ok; k++) {
        const ir_param *p = &m->params[k];
        host_tensor *t = &params[k];
        if (!host_tensor_alloc(t, p->dtype, p->rank, p->shape)) {
            fprintf(stderr, "tdslc: out of memory allocating param '%s'\n", p->name);
            ok = false;
            break;
        }
        int64_t n = host_tensor_numel(t);
        if (st) {
            const st_tensor *s = st_find(st, p->name);
            char want[160], got[160];
            type_string(want, sizeof want, p->dtype, p->rank, p->shape);
            if (!s) {
                fprintf(stderr, "tdslc: %s: has no tensor named '%s' (param %s: %s)\n", o->params, p->name, p->name, want);
                ok = false;
                break;
            }
            type_string(got, sizeof got, (ir_dtype)s->dtype, s->rank, s->shape);
            if (strcmp(want, got) != 0) {
                fprintf(stderr, "tdslc: %s: tensor '%s' is %s, but param %s is %s\n", o->params, p->name, got, p->name, want);
                ok = false;
                break;
            }
            memcpy(t->data, s->data, host_tensor_bytes(t));
            continue;
        }
        double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
        if (!v) {
            fprintf(stderr, "tdslc: out of memory initializing param '%s'\n", p->name);
            ok = false;
            break;
        }
        rt_init_values((int)p->init, p->a, p->b, p->rank ? p->shape[0] : 1, o->seed, p->name, n, v);
        for (int64_t i = 0; i < n; i++)
            host_tensor_set(t, i, v[i]);
        free(v);
    }
    if (st) {
        for (int k = 0; ok && k < st_count(st); k++) {
            const st_tensor *s = st_get(st, k);
            bool used = false;
            for (int j = 0; j < m->nparams; j++)
                used |= strcmp(m->params[j].name, s->name) == 0;
            for (int j = 0; j < m->nstates && !used; j++) {
                const ir_state *sd = &m->states[j];
                if (strcmp(sd->name, s->name) != 0)
                    continue;
                used = true;
                char want[160], got[160];
                type_string(want, sizeof want, sd->dtype, sd->rank, sd->shape);
                type_string(got, sizeof got, (ir_dtype)s->dtype, s->rank, s->shape);
                if (strcmp(want, got) != 0) {
                    fprintf(stderr, "tdslc: %s: tensor '%s' is %s, but state %s is %s\n", o->params, s->name, got,
                            s->name, want);
                    ok = false;
                } else if (states) {
                    memcpy(states[j].data, s->data, s->nbytes);
                }
            }
            used = used || st_metadata_lists(st, OPTIMIZER_STATE_KEY, s->name);   /* another module's state */
            if (!used) {   /* a file from another model: refused, as <module>_load refuses it */
                fprintf(stderr, "tdslc: %s: tensor '%s' matches no param or state of the module\n", o->params,
                        s->name);
                ok = false;
            }
        }
        st_close(st);
    }
    return ok;
}

/* Prints an instance's error message as FILE:LINE:COL: error: ... when it starts with the
 * LINE:COL of the operation that failed (run-time checks put it there). */
static void print_run_error(const options *o, const char *msg)
{
    int line = 0, col = 0, used = 0;
    if (sscanf(msg, "%d:%d: %n", &line, &col, &used) == 2 && used > 0)
        fprintf(stderr, "%s:%d:%d: error: %s\n", o->file, line, col, msg + used);
    else
        fprintf(stderr, "%s: error: %s\n", o->file, msg);
}

/* --engine jit: compile the module in-process and call it through its C API, exactly as
 * an application calls the object that `tdslc build` writes. */
static int run_jit(const options *o, ir_module *m, ir_func *f, host_tensor *args, host_tensor *outs)
{
    char err[512];
    int nres = ir_num_results(f);   /* a training step's updates stay inside the instance */
    if (f->nargs + nres > CG_MAX_CALL_BUFFERS) {
        fprintf(stderr, "tdslc: --engine jit runs exports of at most %d arguments and results; use --engine interp\n",
                CG_MAX_CALL_BUFFERS);
        return -1;
    }
    for (int k = 0; k < nres; k++) {
        const ir_node *n = &f->nodes[f->outs[k]];
        if (!host_tensor_alloc(&outs[k], n->dtype, n->rank, n->shape)) {
            fprintf(stderr, "tdslc: out of memory for result %d\n", k);
            return -1;
        }
    }
    cg_llvm *cg = build_llvm(o, m, err, sizeof err);
    if (!cg)
        return -1;
    double t0 = now_ms();
    cg_jit *j = cg_jit_create(cg, err, sizeof err);
    timed(o, "jit", t0);
    if (!j) {
        fprintf(stderr, "tdslc: JIT failed: %s\n", err);
        cg_llvm_free(cg);
        return -1;
    }
    char sym[600];
    void *fns[5];
    static const char *const suffix[5] = {"create", "destroy", "error", "load", NULL};
    for (int k = 0; k < 5; k++) {
        snprintf(sym, sizeof sym, "%s_%s", m->name, suffix[k] ? suffix[k] : f->name);
        fns[k] = cg_jit_lookup(j, sym);
    }
    void *(*create)(const tdsl_options *);
    void (*destroy)(void *);
    const char *(*error)(const void *);
    int (*load)(void *, const char *);
    *(void **)&create = fns[0];
    *(void **)&destroy = fns[1];
    *(void **)&error = fns[2];
    *(void **)&load = fns[3];
    int rc = -1;
    void *inst = NULL;
    if (!fns[0] || !fns[1] || !fns[2] || !fns[3] || !fns[4]) {
        fprintf(stderr, "tdslc: internal error: the JIT module lacks functions of '%s'\n", m->name);
    } else {
        tdsl_options opts = TDSL_OPTIONS_INIT;
        opts.seed = o->seed;
        inst = create(&opts);
        if (!inst) {
            fprintf(stderr, "tdslc: %s_create failed (out of memory?)\n", m->name);
        } else if (o->params && load(inst, o->params) != 0) {
            fprintf(stderr, "tdslc: %s\n", error(inst));
        } else {
            void *ptrs[CG_MAX_CALL_BUFFERS];
            for (int k = 0; k < f->nargs; k++)
                ptrs[k] = args[k].data;
            for (int k = 0; k < nres; k++)
                ptrs[f->nargs + k] = outs[k].data;
            t0 = now_ms();
            rc = cg_call_export(fns[4], inst, f->nargs + nres, ptrs);
            timed(o, "call", t0);
            if (rc != 0)
                print_run_error(o, error(inst));
        }
    }
    if (inst)
        destroy(inst);
    cg_jit_free(j);
    cg_llvm_free(cg);
    return rc;
}

/* --in files or deterministic random inputs, checked against f's arguments */
static bool load_args(const options *o, const ir_func *f, host_tensor *args)
{
    char err[512];
    for (int j = 0; j < f->nargs; j++) {
        const ir_arg *a = &f->args[j];
        const char *path = NULL;
        for (int k = 0; k < o->nins; k++)
            if (strcmp(o->ins[k].name, a->name) == 0)
                path = o->ins[k].path;
        if (!path) {
            if (!random_input(&args[j], a, o->seed)) {
                fprintf(stderr, "tdslc: out of memory making a random input for argument '%s'\n", a->name);
                return false;
            }
            continue;
        }
        if (npy_read(path, &args[j], err, sizeof err) != 0) {
            fprintf(stderr, "tdslc: %s\n", err);
            return false;
        }
        char want[160], got[160];
        type_string(want, sizeof want, a->dtype, a->rank, a->shape);
        type_string(got, sizeof got, args[j].dtype, args[j].rank, args[j].shape);
        if (strcmp(want, got) != 0) {
            fprintf(stderr, "tdslc: %s: the array is %s, but argument '%s' of '%s' is %s\n", path, got, a->name, f->name, want);
            return false;
        }
    }
    return true;
}

static int cmd_run(const options *o, ir_module *m)
{
    const char *engine = o->engine ? o->engine : "jit";
    if (strcmp(engine, "interp") != 0 && strcmp(engine, "jit") != 0)
        return usage_error("unknown engine '%s' (jit, interp)", engine);
    ir_func *f = pick_fn(m, o->fn, "run");
    if (!f)
        return EXIT_USAGE;   /* --fn names no export, or is needed */
    for (int k = 0; k < o->nins; k++) {
        int j = 0;
        while (j < f->nargs && strcmp(f->args[j].name, o->ins[k].name) != 0)
            j++;
        if (j == f->nargs) {
            fprintf(stderr, "tdslc: --in %s=...: '%s' has no argument named '%s'\n", o->ins[k].name, f->name, o->ins[k].name);
            return EXIT_USAGE;
        }
    }
    int rc = EXIT_INPUT;
    int nres = ir_num_results(f);   /* a training step prints F's value, not its updates */
    host_tensor *args = calloc((size_t)f->nargs + 1, sizeof *args);
    host_tensor *params = calloc((size_t)m->nparams + 1, sizeof *params);
    host_tensor *states = calloc((size_t)m->nstates + 1, sizeof *states);
    host_tensor *outs = calloc((size_t)f->nouts + 1, sizeof *outs);
    char err[512];
    if (!args || !params || !states || !outs)
        goto done;
    for (int j = 0; j < m->nstates; j++)   /* optimizer state starts at zero, as in an instance */
        if (!host_tensor_alloc(&states[j], m->states[j].dtype, m->states[j].rank, m->states[j].shape)) {
            fprintf(stderr, "tdslc: out of memory for state '%s'\n", m->states[j].name);
            goto done;
        }
    if (!load_args(o, f, args))
        goto done;
    if (strcmp(engine, "jit") == 0) {
        if (run_jit(o, m, f, args, outs) != 0)
            goto done;   /* run_jit said why */
    } else if (!load_params(o, m, params, states)) {
        goto done;   /* load_params said why */
    } else if (ir_eval_step(f, args, params, states, outs, &(ir_eval_opts){0}, err, sizeof err) != 0) {
        print_run_error(o, err);   /* the evaluator puts the node's LINE:COL first too */
        goto done;
    }
    rc = 0;
    const char *out = o->out ? o->out : "-";
    for (int k = 0; k < nres && rc == 0; k++) {
        if (strcmp(out, "-") == 0) {
            print_array(stdout, &outs[k]);
            continue;
        }
        char path[4096];
        if (nres == 1)
            snprintf(path, sizeof path, "%s", out);
        else   /* a tuple: PREFIX.k.npy */
            snprintf(path, sizeof path, "%.*s.%d.npy",
                     (int)(ends_with(out, ".npy") ? strlen(out) - 4 : strlen(out)), out, k);
        if (npy_write(path, &outs[k], err, sizeof err) != 0) {
            fprintf(stderr, "tdslc: %s\n", err);
            rc = EXIT_INPUT;
        }
    }
done:
    for (int j = 0; args && j < f->nargs; j++)
        host_tensor_free(&args[j]);
    for (int j = 0; params && j < m->nparams; j++)
        host_tensor_free(&params[j]);
    for (int j = 0; states && j < m->nstates; j++)
        host_tensor_free(&states[j]);
    for (int j = 0; outs && j < f->nouts; j++)
        host_tensor_free(&outs[j]);
    free(args);
    free(params);
    free(states);
    free(outs);
    return rc;
}

static char *replace_ext(arena *ar, const char *path, const char *ext)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t n = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
    return arena_printf(ar, "%.*s%s", (int)n, path, ext);
}

/* tdslc build: OUT.o (kernels, exports, instance functions) and OUT.h (their C API). */
static int cmd_build(const options *o, ir_module *m)
{
    if (o->target && strcmp(o->target, "cpu") != 0)
        return usage_error(strcmp(o->target, "cuda") == 0 ? "--target %s is not available yet in this version"
                                                          : "unknown target '%s' (cpu)", o->target);
    arena ar;
    arena_init(&ar);
    const char *base = strrchr(o->file, '/') ? strrchr(o->file, '/') + 1 : o->file;
    const char *obj = o->obj ? o->obj : replace_ext(&ar, base, ".o");
    const char *hdr = o->header ? o->header : replace_ext(&ar, obj, ".h");
    char err[512];
    int rc = EXIT_INPUT;
    if (cg_header_check(m, err, sizeof err) != 0) {
        fprintf(stderr, "%s: error: %s\n", o->file, err);
        arena_free(&ar);
        return EXIT_INPUT;
    }
    cg_llvm *cg = build_llvm(o, m, err, sizeof err);
    if (cg) {
        double t0 = now_ms();
        if (cg_llvm_emit_object(cg, obj, err, sizeof err) != 0)
            fprintf(stderr, "tdslc: %s\n", err);
        else
            rc = 0;
        timed(o, "object", t0);
        cg_llvm_free(cg);
    }
    if (rc == 0) {
        /* the header goes to a temporary file renamed into place: no half-written header */
        char *tmp = arena_printf(&ar, "%s.tmp.%ld", hdr, (long)getpid());
        FILE *h = fopen(tmp, "w");
        if (!h) {
            fprintf(stderr, "tdslc: cannot write '%s': %s\n", hdr, strerror(errno));
            rc = EXIT_INPUT;
        } else {
            cg_emit_header(h, m, o->file);
            if (fclose(h) != 0 || rename(tmp, hdr) != 0) {
                fprintf(stderr, "tdslc: cannot write '%s': %s\n", hdr, strerror(errno));
                remove(tmp);
                rc = EXIT_INPUT;
            }
        }
        if (rc != 0)
            remove(obj);   /* an object without its header is no use: leave neither */
    }
    arena_free(&ar);
    return rc;
}

/* The module lowered again with checkpoint(f, ...) as a plain call (its diagnostics were
 * printed the first time), for stats to show what recomputation saves; NULL on failure. */
static ir_module *lower_without_recompute(arena *ar, const options *o, const ast_file *ast)
{
    FILE *null = fopen("/dev/null", "w");
    if (!null)
        return NULL;
    diag_ctx saved = diag_global;
    diag_global.out = null;
    lower_opts lo = {.module_name = module_name(ar, o), .ndefines = o->ndefs, .defines = (lower_define *)o->defs,
                     .no_recompute = true};
    ir_module *m = lower_file(ar, ast, &lo);
    diag_global = saved;
    fclose(null);
    return m;
}

static int cmd_stats(const options *o, ir_module *m, const ast_file *ast, int ncheckpoints)
{
    arena ar;
    arena_init(&ar);
    ir_module *plain = ast && ncheckpoints ? lower_without_recompute(&ar, o, ast) : NULL;
    int shown = 0;
    for (int k = 0; k < m->nfuncs; k++) {
        const ir_func *f = m->funcs[k];
        if (o->fn && strcmp(f->name, o->fn) != 0)
            continue;
        pass_plan pl = pass_pipeline(&ar, f, !o->no_fuse);
        pass_print_stats(stdout, m, f, pl.schedule, pl.mem);
        const ir_func *g = plain ? ir_module_find(plain, f->name) : NULL;
        if (g && g->nnodes != f->nnodes) {   /* only the exports whose gradient recomputes */
            pass_plan pg = pass_pipeline(&ar, g, !o->no_fuse);
            int64_t with = pl.mem->arena_bytes, without = pg.mem->arena_bytes;
            printf("  checkpoint   recomputes in the backward pass: arena %lld bytes, %lld without (%s %lld bytes), "
                   "%+lld flops\n", (long long)with, (long long)without, with <= without ? "saves" : "costs",
                   (long long)(with <= without ? without - with : with - without),
                   (long long)(pass_flops(f, pl.schedule) - pass_flops(g, pg.schedule)));
        }
        shown++;
    }
    arena_free(&ar);
    if (o->fn && !shown)
        return pick_fn(m, o->fn, "stats") ? 0 : EXIT_USAGE;
    return 0;
}

static int cmd_gradcheck(const options *o, ir_module *m, const ast_file *ast)
{
    ir_func *f = pick_fn(m, o->fn, "gradcheck");
    if (!f)
        return EXIT_USAGE;
    if (!is_grad_export(ast, f->name)) {
        fprintf(stderr, "tdslc: gradcheck: '%s' is not a grad export (export %s = grad(loss, ...))\n", f->name, f->name);
        return EXIT_USAGE;
    }
    int rc = EXIT_INPUT;
    host_tensor *args = calloc((size_t)f->nargs + 1, sizeof *args);
    host_tensor *params = calloc((size_t)m->nparams + 1, sizeof *params);
    pass_gradcheck_row *rows = calloc((size_t)f->nouts + 1, sizeof *rows);
    char err[512];
    if (!args || !params || !rows)
        goto done;
    if (!load_args(o, f, args) || !load_params(o, m, params, NULL))
        goto done;
    double eps = o->eps > 0 ? o->eps : 1e-6, rtol = o->rtol >= 0 ? o->rtol : 1e-4, atol = o->atol >= 0 ? o->atol : 1e-6;
    if (pass_gradcheck(f, args, params, eps, rtol, atol, rows, err, sizeof err) != 0) {
        print_run_error(o, err);
        goto done;
    }
    rc = 0;
    for (int k = 0; k + 1 < f->nouts; k++) {
        printf("%s: max abs err %.1e, max rel err %.1e  %s\n", rows[k].name, rows[k].max_abs, rows[k].max_rel,
               rows[k].ok ? "ok" : "MISMATCH");
        if (!rows[k].ok)
            rc = EXIT_INPUT;
    }
done:
    for (int j = 0; args && j < f->nargs; j++)
        host_tensor_free(&args[j]);
    for (int j = 0; params && j < m->nparams; j++)
        host_tensor_free(&params[j]);
    free(args);
    free(params);
    free(rows);
    return rc;
}

static double parse_nonneg(const char *arg, bool *ok)
{
    char *end;
    double v = strtod(arg, &end);
    *ok = *arg && !*end && v >= 0 && isfinite(v);
    if (!*ok)
        usage_error("--eps, --rtol and --atol need a non-negative number, not '%s'", arg);
    return v;
}

static int parse_options(int argc, char **argv, options *o)
{
    enum { O_STAGE = 256, O_FN, O_FORMAT, O_IN, O_OUT, O_PARAMS, O_ENGINE, O_SEED, O_TIME, O_NOFUSE, O_VERSION,
           O_HEADER, O_NAME, O_TARGET, O_CPU, O_EPS, O_RTOL, O_ATOL };
    static const struct option longopts[] = {
        {"stage", required_argument, 0, O_STAGE},   {"fn", required_argument, 0, O_FN},
        {"format", required_argument, 0, O_FORMAT}, {"in", required_argument, 0, O_IN},
        {"out", required_argument, 0, O_OUT},       {"params", required_argument, 0, O_PARAMS},
        {"engine", required_argument, 0, O_ENGINE}, {"seed", required_argument, 0, O_SEED},
        {"time-passes", no_argument, 0, O_TIME},    {"no-fuse", no_argument, 0, O_NOFUSE},
        {"help", no_argument, 0, 'h'},              {"version", no_argument, 0, O_VERSION},
        {"header", required_argument, 0, O_HEADER}, {"name", required_argument, 0, O_NAME},
        {"target", required_argument, 0, O_TARGET}, {"cpu", required_argument, 0, O_CPU},
        {"eps", required_argument, 0, O_EPS},       {"rtol", required_argument, 0, O_RTOL},
        {"atol", required_argument, 0, O_ATOL},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    o->opt_level = 3;
    o->rtol = o->atol = -1;
    while ((ch = getopt_long(argc, argv, "hD:o:O:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': fputs(usage_text, stdout); exit(0);
        case O_VERSION: printf("tdslc %s\n", TDSL_VERSION); exit(0);
        case O_STAGE: o->stage = optarg; break;
        case 'o': o->obj = optarg; break;
        case 'O':
            if (strlen(optarg) != 1 || optarg[0] < '0' || optarg[0] > '3')
                return usage_error("-O takes 0, 1, 2 or 3, not '%s'", optarg);
            o->opt_level = optarg[0] - '0';
            break;
        case O_HEADER: o->header = optarg; break;
        case O_NAME:
            if (!is_identifier(optarg))
                return usage_error("--name must be a C identifier, not '%s'", optarg);
            o->name = optarg;
            break;
        case O_TARGET: o->target = optarg; break;
        case O_CPU: o->cpu = optarg; break;
        case O_EPS:
        case O_RTOL:
        case O_ATOL: {
            bool ok;
            double v = parse_nonneg(optarg, &ok);
            if (!ok)
                return EXIT_USAGE;
            if (ch == O_EPS && v <= 0)
                return usage_error("--eps must be positive, not '%s'", optarg);
            *(ch == O_EPS ? &o->eps : ch == O_RTOL ? &o->rtol : &o->atol) = v;
            break;
        }
        case O_FN: o->fn = optarg; break;
        case O_FORMAT:
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "dot") != 0)
                return usage_error("--format must be text or dot, not '%s'", optarg);
            o->format = optarg;
            break;
        case O_OUT: o->out = optarg; break;
        case O_PARAMS: o->params = optarg; break;
        case O_ENGINE: o->engine = optarg; break;
        case O_TIME: o->time_passes = true; break;
        case O_NOFUSE: o->no_fuse = true; break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 0);
            if (!*optarg || *end || errno || optarg[0] == '-')
                return usage_error("--seed needs a non-negative integer, not '%s'", optarg);
            o->seed = s;
            break;
        }
        case O_IN: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                return usage_error("--in needs ARG=FILE.npy, not '%s'", optarg);
            if (o->nins == 64)
                return usage_error("too many --in options (at most 64)%s", "");
            *eq = 0;
            o->ins[o->nins++] = (input_arg){optarg, eq + 1};
            break;
        }
        case 'D': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                return usage_error("-D needs NAME=VALUE, not '%s'", optarg);
            if (o->ndefs == 64)
                return usage_error("too many -D options (at most 64)%s", "");
            *eq = 0;
            o->defs[o->ndefs++] = (lower_define){optarg, eq + 1, false};
            break;
        }
        default:
            return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("missing command%s (check, dump, run, build, stats, gradcheck)", "");
    o->command = argv[optind++];
    if (optind >= argc)
        return usage_error("%s: missing input file", o->command);
    o->file = argv[optind++];
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Whether the command compiles with LLVM and so reads --cpu: build, run --engine jit
 * (the default) and dump --stage llvm|asm. */
static bool uses_cpu(const options *o)
{
    if (strcmp(o->command, "build") == 0)
        return true;
    if (strcmp(o->command, "run") == 0)
        return !o->engine || strcmp(o->engine, "jit") == 0;
    return strcmp(o->command, "dump") == 0 && o->stage && (strcmp(o->stage, "llvm") == 0 || strcmp(o->stage, "asm") == 0);
}

int main(int argc, char **argv)
{
    static options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    static const char *commands[] = {"check", "dump", "run", "build", "stats", "gradcheck"};
    bool known = false;
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        known |= strcmp(o.command, commands[k]) == 0;
    if (!known)
        return usage_error("unknown command '%s' (check, dump, run, build, stats, gradcheck)", o.command);
    char err[256];
    if (o.cpu && uses_cpu(&o) && cg_check_cpu(o.cpu, err, sizeof err) != 0)
        return usage_error("%s", err);   /* a misspelt --cpu is a usage error, before any work */
    diag_reset(stderr);
    size_t len = 0;
    char *text = read_file(o.file, &len);
    if (!text) {
        fprintf(stderr, "tdslc: cannot read '%s': %s\n", o.file, strerror(errno ? errno : EIO));
        return EXIT_INPUT;
    }
    src_file src = {o.file, text, len};
    arena ar;
    arena_init(&ar);
    ast_file *ast = NULL;
    int ncheckpoints = 0;
    ir_module *m = compile(&ar, &o, &src, &ast, &ncheckpoints);
    if (!m) {
        rc = EXIT_INPUT;
        if (diag_error_count() == 0)   /* every failure path must have said why */
            diag_ice("driver", "compilation failed without a diagnostic");
    } else if (strcmp(o.command, "dump") == 0) {
        rc = cmd_dump(&o, m, ast);
    } else if (strcmp(o.command, "build") == 0) {
        rc = cmd_build(&o, m);
    } else if (strcmp(o.command, "gradcheck") == 0) {
        rc = cmd_gradcheck(&o, m, ast);
    } else if (strcmp(o.command, "stats") == 0) {
        rc = cmd_stats(&o, m, ast, ncheckpoints);
    } else if (strcmp(o.command, "run") == 0) {
        double t0 = now_ms();
        rc = cmd_run(&o, m);
        timed(&o, "run", t0);
    }
    arena_free(&ar);
    free(text);
    return rc;
}
