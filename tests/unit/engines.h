/* Test support: a module compiled by the LLVM backend and called through its generated C
 * API as an application would: in-process (JIT) and as the object file `tdslc build`
 * writes, linked into a shared library against the shared libtdslrt and dlopen'ed (AOT).
 * Header-only (static functions) for the test executables; needs TDSL_RT_SHARED and
 * TDSL_RT_DIR (tests/CMakeLists.txt defines them). */
#ifndef TDSL_TEST_ENGINES_H
#define TDSL_TEST_ENGINES_H
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "codegen/llvm.h"

typedef struct compiled {
    const char *engine;         /* "jit" or "aot" */
    cg_jit *jit;
    void *dl;
    void *inst;
    void (*destroy)(void *);
    const char *(*error)(const void *);
} compiled;

typedef struct engines {
    cg_llvm *cg;
    compiled c[2];
    char dir[64], obj[600], so[600];
} engines;

static void *engine_lookup(const compiled *c, const char *mod, const char *suffix)
{
    char sym[512];
    snprintf(sym, sizeof sym, "%s_%s", mod, suffix);
    return c->jit ? cg_jit_lookup(c->jit, sym) : dlsym(c->dl, sym);
}

static void engines_close(engines *e)
{
    for (int k = 0; k < 2; k++)
        if (e->c[k].inst)
            e->c[k].destroy(e->c[k].inst);
    if (e->c[0].jit)
        cg_jit_free(e->c[0].jit);
    if (e->c[1].dl)
        dlclose(e->c[1].dl);
    if (e->dir[0]) {
        remove(e->so);
        remove(e->obj);
        rmdir(e->dir);
    }
    cg_llvm_free(e->cg);
    memset(e, 0, sizeof *e);
}

/* Builds m (module name mod) both ways and creates an instance of each (seed 0). */
static int engines_open(engines *e, const ir_module *m, const char *mod, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    cg_options co = {.cpu = "native", .opt_level = 2};
    if (!(e->cg = cg_llvm_build(m, &co, err, errlen)))
        return -1;
    snprintf(e->dir, sizeof e->dir, "/tmp/tdsl-aot-XXXXXX");
    if (!mkdtemp(e->dir)) {
        e->dir[0] = 0;
        snprintf(err, errlen, "mkdtemp failed");
        goto fail;
    }
    snprintf(e->obj, sizeof e->obj, "%s/%s.o", e->dir, mod);
    snprintf(e->so, sizeof e->so, "%s/%s.so", e->dir, mod);
    if (cg_llvm_emit_object(e->cg, e->obj, err, errlen) != 0)
        goto fail;
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cc -shared -o '%s' '%s' '%s' -Wl,-rpath,'%s'", e->so, e->obj, TDSL_RT_SHARED, TDSL_RT_DIR);
    if (system(cmd) != 0) {
        snprintf(err, errlen, "cc could not link the object into a shared library");
        goto fail;
    }
    e->c[0] = (compiled){.engine = "jit", .jit = cg_jit_create(e->cg, err, errlen)};
    if (!e->c[0].jit)
        goto fail;
    e->c[1] = (compiled){.engine = "aot", .dl = dlopen(e->so, RTLD_NOW | RTLD_LOCAL)};
    if (!e->c[1].dl) {
        snprintf(err, errlen, "dlopen: %s", dlerror());
        goto fail;
    }
    for (int k = 0; k < 2; k++) {
        compiled *c = &e->c[k];
        void *(*create)(const tdsl_options *);
        *(void **)&create = engine_lookup(c, mod, "create");
        *(void **)&c->destroy = engine_lookup(c, mod, "destroy");
        *(void **)&c->error = engine_lookup(c, mod, "error");
        if (!create || !c->destroy || !c->error) {
            snprintf(err, errlen, "%s: the module lacks its instance functions", c->engine);
            goto fail;
        }
        if (!(c->inst = create(NULL))) {
            snprintf(err, errlen, "%s: %s_create failed", c->engine, mod);
            goto fail;
        }
    }
    return 0;
fail:
    engines_close(e);
    return -1;
}

/* Calls export f of module mod with args; allocates outs (its results: ir_num_results(f),
 * a training step's updates stay in the instance). Returns the status; on failure err holds
 * the instance's message. */
static int engine_call(const compiled *c, const char *mod, const ir_func *f, const host_tensor *args,
                       host_tensor *outs, char *err, size_t errlen)
{
    void *bufs[CG_MAX_CALL_BUFFERS];
    int nres = ir_num_results(f);
    if (f->nargs + nres > CG_MAX_CALL_BUFFERS) {
        snprintf(err, errlen, "too many buffers");
        return -1;
    }
    for (int a = 0; a < f->nargs; a++)
        bufs[a] = args[a].data;
    for (int k = 0; k < nres; k++) {
        const ir_node *n = &f->nodes[f->outs[k]];
        if (!host_tensor_alloc(&outs[k], n->dtype, n->rank, n->shape)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        bufs[f->nargs + k] = outs[k].data;
    }
    void *fp = engine_lookup(c, mod, f->name);
    if (!fp) {
        snprintf(err, errlen, "%s: no symbol %s_%s", c->engine, mod, f->name);
        return -1;
    }
    int rc = cg_call_export(fp, c->inst, f->nargs + nres, bufs);
    if (rc != 0)
        snprintf(err, errlen, "%s", c->error(c->inst));
    return rc;
}

#endif
