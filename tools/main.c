/* tdslc: the driver. Reading `compile()` tells the whole pipeline:
 *   source --parse--> AST --lower--> IR --verify--> (dump | evaluate)
 * Later stages (autodiff, fusion, memory planning, codegen) join this list as they land. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/eval.h"
#include "ir/ir.h"
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
    "                             S = ast | ir | layout (default ir)\n"
    "  run   FILE --fn NAME [--in ARG=FILE.npy]... [--out FILE.npy | -]\n"
    "             [--params FILE.safetensors] [--engine interp] [--seed N]\n"
    "\n"
    "common options:\n"
    "  -D NAME=VALUE              override a const\n"
    "  --time-passes              print the time each stage takes to stderr\n"
    "  --no-fuse                  accepted; fusion is not implemented yet\n"
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
    uint64_t seed;
    bool time_passes;
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

/* module name = file stem */
static const char *module_name(arena *ar, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    return arena_strndup(ar, base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

/* The pipeline up to checked IR. Returns NULL (diagnostics printed) on bad input. */
static ir_module *compile(arena *ar, const options *o, src_file *src, ast_file **ast_out)
{
    double t0 = now_ms();
    if (ends_with(o->file, ".ir")) {
        ir_module *m = ir_parse_module(ar, src);
        timed(o, "parse-ir", t0);
        return m;
    }
    ast_file *ast = parse_file(ar, src);
    timed(o, "parse", t0);
    if (ast_out)
        *ast_out = ast;
    if (!ast)
        return NULL;
    t0 = now_ms();
    lower_opts lo = {.module_name = module_name(ar, o->file), .ndefines = o->ndefs, .defines = (lower_define *)o->defs};
    ir_module *m = lower_file(ar, ast, &lo);
    timed(o, "lower", t0);
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

static int cmd_dump(const options *o, ir_module *m, const ast_file *ast)
{
    const char *stage = o->stage ? o->stage : "ir";
    bool dot = o->format && strcmp(o->format, "dot") == 0;
    if (strcmp(stage, "ast") == 0) {
        if (!ast)
            return usage_error("--stage ast needs a .tdsl source file, not %s", o->file);
        if (dot)
            return usage_error("--format dot is available for the ir and layout stages, not '%s'", stage);
        ast_print(stdout, ast);
        return 0;
    }
    bool layout = strcmp(stage, "layout") == 0;
    if (!layout && strcmp(stage, "ir") != 0) {
        static const char *later[] = {"grad", "fused", "planned", "llvm", "asm", "cuda", "ptx"};
        for (size_t k = 0; k < sizeof later / sizeof *later; k++)
            if (strcmp(stage, later[k]) == 0)
                return usage_error("--stage %s is not available yet: this version stops at the layout stage", stage);
        return usage_error("unknown stage '%s' (ast, ir, layout)", stage);
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

static bool load_params(const options *o, const ir_module *m, host_tensor *params)
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
            if (!used)
                fprintf(stderr, "tdslc: warning: %s: tensor '%s' matches no param; ignored\n", o->params, s->name);
        }
        st_close(st);
    }
    return ok;
}

static int cmd_run(const options *o, ir_module *m)
{
    if (o->engine && strcmp(o->engine, "interp") != 0) {
        if (strcmp(o->engine, "jit") == 0)
            return usage_error("--engine %s is not available yet: this version has only the reference evaluator "
                               "(--engine interp)", o->engine);
        return usage_error("unknown engine '%s' (interp)", o->engine);
    }
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
    host_tensor *args = calloc((size_t)f->nargs + 1, sizeof *args);
    host_tensor *params = calloc((size_t)m->nparams + 1, sizeof *params);
    host_tensor *outs = calloc((size_t)f->nouts + 1, sizeof *outs);
    char err[512];
    if (!args || !params || !outs)
        goto done;
    for (int j = 0; j < f->nargs; j++) {
        const ir_arg *a = &f->args[j];
        const char *path = NULL;
        for (int k = 0; k < o->nins; k++)
            if (strcmp(o->ins[k].name, a->name) == 0)
                path = o->ins[k].path;
        if (!path) {
            if (!random_input(&args[j], a, o->seed)) {
                fprintf(stderr, "tdslc: out of memory making a random input for argument '%s'\n", a->name);
                goto done;
            }
            continue;
        }
        if (npy_read(path, &args[j], err, sizeof err) != 0) {
            fprintf(stderr, "tdslc: %s\n", err);
            goto done;
        }
        char want[160], got[160];
        type_string(want, sizeof want, a->dtype, a->rank, a->shape);
        type_string(got, sizeof got, args[j].dtype, args[j].rank, args[j].shape);
        if (strcmp(want, got) != 0) {
            fprintf(stderr, "tdslc: %s: the array is %s, but argument '%s' of '%s' is %s\n", path, got, a->name, f->name, want);
            goto done;
        }
    }
    if (!load_params(o, m, params))
        goto done;
    ir_eval_opts eo = {0};
    if (ir_eval(f, args, params, outs, &eo, err, sizeof err) != 0) {
        int line = 0, col = 0, used = 0;   /* the evaluator puts the node's LINE:COL first */
        if (sscanf(err, "%d:%d: %n", &line, &col, &used) == 2 && used > 0)
            fprintf(stderr, "%s:%d:%d: error: %s\n", o->file, line, col, err + used);
        else
            fprintf(stderr, "%s: error: %s\n", o->file, err);
        goto done;
    }
    rc = 0;
    const char *out = o->out ? o->out : "-";
    for (int k = 0; k < f->nouts && rc == 0; k++) {
        if (strcmp(out, "-") == 0) {
            print_array(stdout, &outs[k]);
            continue;
        }
        char path[4096];
        if (f->nouts == 1)
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
    for (int j = 0; outs && j < f->nouts; j++)
        host_tensor_free(&outs[j]);
    free(args);
    free(params);
    free(outs);
    return rc;
}

static int parse_options(int argc, char **argv, options *o)
{
    enum { O_STAGE = 256, O_FN, O_FORMAT, O_IN, O_OUT, O_PARAMS, O_ENGINE, O_SEED, O_TIME, O_NOFUSE, O_VERSION };
    static const struct option longopts[] = {
        {"stage", required_argument, 0, O_STAGE},   {"fn", required_argument, 0, O_FN},
        {"format", required_argument, 0, O_FORMAT}, {"in", required_argument, 0, O_IN},
        {"out", required_argument, 0, O_OUT},       {"params", required_argument, 0, O_PARAMS},
        {"engine", required_argument, 0, O_ENGINE}, {"seed", required_argument, 0, O_SEED},
        {"time-passes", no_argument, 0, O_TIME},    {"no-fuse", no_argument, 0, O_NOFUSE},
        {"help", no_argument, 0, 'h'},              {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "hD:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': fputs(usage_text, stdout); exit(0);
        case O_VERSION: printf("tdslc %s\n", TDSL_VERSION); exit(0);
        case O_STAGE: o->stage = optarg; break;
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
        case O_NOFUSE: break;
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
        return usage_error("missing command%s (check, dump, run)", "");
    o->command = argv[optind++];
    if (optind >= argc)
        return usage_error("%s: missing input file", o->command);
    o->file = argv[optind++];
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return 0;
}

int main(int argc, char **argv)
{
    static options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    static const char *later[] = {"build", "gradcheck", "stats"};
    for (size_t k = 0; k < sizeof later / sizeof *later; k++)
        if (strcmp(o.command, later[k]) == 0)
            return usage_error("'%s' is not available yet: this version has check, dump and run", o.command);
    if (strcmp(o.command, "check") != 0 && strcmp(o.command, "dump") != 0 && strcmp(o.command, "run") != 0)
        return usage_error("unknown command '%s' (check, dump, run)", o.command);
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
    ir_module *m = compile(&ar, &o, &src, &ast);
    if (!m) {
        rc = EXIT_INPUT;
        if (diag_error_count() == 0)   /* every failure path must have said why */
            diag_ice("driver", "compilation failed without a diagnostic");
    } else if (strcmp(o.command, "dump") == 0) {
        rc = cmd_dump(&o, m, ast);
    } else if (strcmp(o.command, "run") == 0) {
        double t0 = now_ms();
        rc = cmd_run(&o, m);
        timed(&o, "run", t0);
    }
    arena_free(&ar);
    free(text);
    return rc;
}
