/* The in-process engine of `tdslc run`: ORC LLJIT over the module cg_llvm_build made
 * (already optimized: LLJIT itself does not optimize). Generated code calls libtdslrt,
 * which tdslc links statically, so its functions are given to the JIT as absolute
 * symbols (their addresses in this process: no -rdynamic needed); everything else
 * (libm, memcpy/memset the optimizer may introduce) is found by searching the process. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include "llvm_internal.h"

struct cg_jit {
    LLVMOrcLLJITRef jit;
};

static void set_err(char *err, size_t errlen, const char *what, LLVMErrorRef e)
{
    char *m = LLVMGetErrorMessage(e);   /* consumes e */
    if (err && errlen) {
        snprintf(err, errlen, "%s: %s", what, m);
        char *nl = strchr(err, '\n');
        if (nl)
            *nl = '\0';
    }
    LLVMDisposeErrorMessage(m);
}

/* Every function of the runtime ABI and public API (tdsl/runtime.h). */
#define RT_SYM(f) {#f, (void (*)(void))(f)}
static const struct { const char *name; void (*addr)(void); } rt_symbols[] = {
    RT_SYM(tdsl_status_name),    RT_SYM(tdsl_dtype_name),      RT_SYM(tdsl_dtype_size),
    RT_SYM(tdsl_rt_create),      RT_SYM(tdsl_rt_destroy),      RT_SYM(tdsl_rt_error),
    RT_SYM(tdsl_rt_fail),        RT_SYM(tdsl_rt_clear_error),  RT_SYM(tdsl_rt_arena),
    RT_SYM(tdsl_rt_state),       RT_SYM(tdsl_rt_backup),       RT_SYM(tdsl_rt_param_data),
    RT_SYM(tdsl_rt_num_threads), RT_SYM(tdsl_rt_check_finite), RT_SYM(tdsl_rt_parallel_for),
    RT_SYM(tdsl_rt_save),
    RT_SYM(tdsl_rt_load),        RT_SYM(tdsl_rt_param),        RT_SYM(tdsl_rt_reset_params),
};
#undef RT_SYM
#define NRT ((int)(sizeof rt_symbols / sizeof *rt_symbols))

static LLVMErrorRef define_runtime(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd)
{
    LLVMOrcCSymbolMapPair syms[NRT];
    LLVMJITSymbolFlags flags = {LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable, 0};
    for (int k = 0; k < NRT; k++) {
        syms[k].Name = LLVMOrcLLJITMangleAndIntern(jit, rt_symbols[k].name);
        syms[k].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)rt_symbols[k].addr;
        syms[k].Sym.Flags = flags;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(syms, NRT);   /* takes the names */
    LLVMErrorRef e = LLVMOrcJITDylibDefine(jd, mu);
    if (e)
        LLVMOrcDisposeMaterializationUnit(mu);
    return e;
}

/* The JIT compiles for the same CPU, features and optimization level as the module's
 * target machine. The JIT builder consumes a TargetMachine, so it gets a twin. */
static LLVMOrcJITTargetMachineBuilderRef jtmb_for(cg_llvm *cg)
{
    char *cpu = LLVMGetTargetMachineCPU(cg->tm), *feat = LLVMGetTargetMachineFeatureString(cg->tm);
    static const LLVMCodeGenOptLevel levels[] = {LLVMCodeGenLevelNone, LLVMCodeGenLevelLess, LLVMCodeGenLevelDefault,
                                                 LLVMCodeGenLevelAggressive};
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(LLVMGetTargetMachineTarget(cg->tm), cg->target_triple, cpu,
                                                      feat, levels[cg->opt_level], LLVMRelocPIC,
                                                      LLVMCodeModelJITDefault);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
    return tm ? LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm) : NULL;
}

cg_jit *cg_jit_create(cg_llvm *cg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cg || !cg->mod) {
        snprintf(err, errlen, "no LLVM module (already handed to a JIT)");
        return NULL;
    }
    cg_jit *j = calloc(1, sizeof *j);
    LLVMOrcJITTargetMachineBuilderRef jtmb = jtmb_for(cg);
    if (!j || !jtmb) {
        snprintf(err, errlen, "cannot create the JIT's target machine");
        if (jtmb)
            LLVMOrcDisposeJITTargetMachineBuilder(jtmb);
        free(j);
        return NULL;
    }
    LLVMOrcLLJITBuilderRef lb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(lb, jtmb);   /* takes jtmb */
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, lb);          /* takes lb */
    if (e) {
        set_err(err, errlen, "cannot create the JIT", e);
        free(j);
        return NULL;
    }
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
    if ((e = define_runtime(j->jit, jd))) {
        set_err(err, errlen, "cannot define the runtime symbols", e);
        goto fail;
    }
    LLVMOrcDefinitionGeneratorRef gen;
    if ((e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL,
                                                                  NULL))) {
        set_err(err, errlen, "cannot search the process for symbols", e);
        goto fail;
    }
    LLVMOrcJITDylibAddGenerator(jd, gen);   /* takes gen */

    /* the module moves into the JIT with its context (cg keeps a reference to that) */
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(cg->mod, cg->tsctx);
    cg->mod = NULL;
    if ((e = LLVMOrcLLJITAddLLVMIRModule(j->jit, jd, tsm))) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        set_err(err, errlen, "cannot add the module to the JIT", e);
        goto fail;
    }
    /* compile now, so a failure is reported here with its reason rather than as a NULL
     * from the first lookup */
    char *create = malloc(strlen(cg->irm->name) + 8);
    if (!create) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    sprintf(create, "%s_create", cg->irm->name);
    LLVMOrcExecutorAddress addr = 0;
    e = LLVMOrcLLJITLookup(j->jit, &addr, create);
    free(create);
    if (e) {
        set_err(err, errlen, "JIT compilation failed", e);
        goto fail;
    }
    return j;
fail:
    cg_jit_free(j);
    return NULL;
}

void *cg_jit_lookup(cg_jit *j, const char *symbol)
{
    if (!j || !symbol)
        return NULL;
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, symbol);
    if (e) {
        LLVMConsumeError(e);
        return NULL;
    }
    return (void *)(uintptr_t)addr;
}

void cg_jit_free(cg_jit *j)
{
    if (!j)
        return;
    if (j->jit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
        if (e)
            LLVMConsumeError(e);
    }
    free(j);
}

/* Each arity is called through a function pointer of exactly its type, as C requires;
 * the address moves into it with memcpy (ISO C has no object-to-function pointer cast). */
int cg_call_export(void *fn, void *inst, int n, void *const *b)
{
    typedef void *v;
    if (!fn)
        return -1;
    switch (n) {
    case 0: { int (*f)(v); memcpy(&f, &fn, sizeof f); return f(inst); }
    case 1: { int (*f)(v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0]); }
    case 2: { int (*f)(v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1]); }
    case 3: { int (*f)(v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2]); }
    case 4: { int (*f)(v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3]); }
    case 5: { int (*f)(v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4]); }
    case 6: { int (*f)(v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5]); }
    case 7: { int (*f)(v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6]); }
    case 8: { int (*f)(v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]); }
    case 9: { int (*f)(v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]); }
    case 10: { int (*f)(v, v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]); }
    case 11: { int (*f)(v, v, v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10]); }
    case 12: { int (*f)(v, v, v, v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]); }
    case 13: { int (*f)(v, v, v, v, v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12]); }
    case 14: { int (*f)(v, v, v, v, v, v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13]); }
    case 15: { int (*f)(v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14]); }
    case 16: { int (*f)(v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v); memcpy(&f, &fn, sizeof f); return f(inst, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]); }
    default: return -1;
    }
}
