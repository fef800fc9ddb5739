/* The CPU backend: IR -> LLVM IR through the LLVM C API, optimized with the new pass
 * manager, emitted as an object file or run in an ORC LLJIT. One LLVM module per tdsl
 * module holds a kernel function per scheduled kernel, one C-callable function per export
 * (`<mod>_<fn>`), and the instance functions (`<mod>_create`, `_destroy`, `_error`,
 * `_save`, `_load`, `_num_params`, `_param`) that call into libtdslrt. */
#ifndef TDSL_CG_LLVM_H
#define TDSL_CG_LLVM_H
#include <stdio.h>
#include "../ir/ir.h"
#include "tdsl/runtime.h"

typedef struct cg_options {
    const char *cpu;     /* "native" (default), "x86-64-v3", "x86-64-v4", or an LLVM CPU name */
    int opt_level;       /* 0..3 (default 3) */
    bool no_fuse;        /* --no-fuse: one kernel per computed value */
} cg_options;

typedef struct cg_llvm cg_llvm;

/* Builds and optimizes the module. NULL with a one-line reason in err on failure. */
cg_llvm *cg_llvm_build(const ir_module *m, const cg_options *o, char *err, size_t errlen);
void cg_llvm_free(cg_llvm *cg);
void cg_llvm_print_ir(cg_llvm *cg, FILE *out);                 /* dump --stage llvm */
int  cg_llvm_print_asm(cg_llvm *cg, FILE *out, char *err, size_t errlen);   /* dump --stage asm */
int  cg_llvm_emit_object(cg_llvm *cg, const char *path, char *err, size_t errlen);
/* dump --stage llvm|asm --fn: only what export fn owns (its C function <mod>_<fn>, its
 * kernels and copy-outs) and what those call; for llvm also the globals and declarations
 * they use, so the text stays a valid module. fn NULL: the whole module. Nonzero with a
 * reason in err when fn is not an export or the assembly cannot be made. */
int  cg_llvm_print_export_ir(cg_llvm *cg, const char *fn, FILE *out, char *err, size_t errlen);
int  cg_llvm_print_export_asm(cg_llvm *cg, const char *fn, FILE *out, char *err, size_t errlen);

/* --cpu: 0 for "native", NULL or a CPU name LLVM 16 knows; else -1 with the message. A
 * driver calls it up front so a misspelt CPU is a usage error, not a failed compile. */
int  cg_check_cpu(const char *cpu, char *err, size_t errlen);

/* JIT: compiles the module in-process (LLJIT), resolving tdsl_rt_* and libm symbols.
 * cg_jit_lookup returns the address of a symbol such as "mlp_forward", or NULL. */
typedef struct cg_jit cg_jit;
cg_jit *cg_jit_create(cg_llvm *cg, char *err, size_t errlen);   /* consumes the LLVM module */
void   *cg_jit_lookup(cg_jit *j, const char *symbol);
void    cg_jit_free(cg_jit *j);

/* Calls an export (`int <mod>_<fn>(inst, buffers...)`, e.g. from cg_jit_lookup) with its
 * n <= CG_MAX_CALL_BUFFERS argument and result pointers, in declaration order. Returns the
 * export's status, or -1 when n is out of range. */
#define CG_MAX_CALL_BUFFERS 16
int cg_call_export(void *fn, void *inst, int n, void *const *buffers);

#endif
