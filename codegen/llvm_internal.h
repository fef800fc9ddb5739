/* Shared by the files of the LLVM backend (codegen/llvm_*.c); not a public interface.
 *
 * Kernel functions (one per pass_kernel, plus copy-outs) all have the signature
 *     void kernel(ptr out, ptr in_0, ..., ptr in_{n-1}, ptr inst)
 * out:   base of the storage the kernel writes (the root node's storage);
 * in_j:  base of the j-th storage the kernel reads, in the order cg_kernel_inputs gives;
 * inst:  the tdsl_instance (for tdsl_rt_parallel_for and tdsl_rt_fail);
 * every pointer is the start of a dense buffer; the kernel applies each node's own offset
 * and strides (ir_node.offset/strides, in elements) when it indexes. Buffers of distinct
 * storages never alias, so pointer parameters carry `noalias`.
 * Storage element types: bool -> i8, i32, i64, f16 and bf16 -> i16 bits (computed in f32),
 * f32 -> float, f64 -> double. A read of a value whose view chain ends in a `const` node
 * is the constant itself (no memory). */
#ifndef TDSL_CG_LLVM_INTERNAL_H
#define TDSL_CG_LLVM_INTERNAL_H
#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Orc.h>
#include "llvm.h"
#include "../passes/passes.h"

struct cg_llvm {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTargetMachineRef tm;
    int vector_bits;          /* widest vector the target prefers: 512 with AVX-512, else 256 */
    int opt_level;
    LLVMTypeRef t_void, t_i1, t_i8, t_i16, t_i32, t_i64, t_f32, t_f64, t_ptr;
    const ir_module *irm;
    arena *ar;
    char *target_triple;
    LLVMOrcThreadSafeContextRef tsctx;   /* owns ctx, so the JIT can take the module as built */
};

/* ---- codegen/llvm_kernels.c ---- */
/* Distinct storage ids (node ids) that kernel k reads, excluding const-backed values and the
 * kernel's own output storage; returns the count (<= 64). */
int cg_kernel_inputs(const ir_func *f, const pass_kernel *k, int *storages);
/* Emits kernel k of f as a function named `name` with the signature above. */
/* aliased: the root's buffer is also one of the inputs (an update written in place into
 * the param it reads), so the buffers are not declared noalias. scratch: the arena offset
 * of the kernel's scratch from the memory plan (pass_kernel_scratch), or -1: index_add and
 * gather_add then allocate their accumulator on the heap per call. */
LLVMValueRef cg_emit_kernel(cg_llvm *cg, const ir_func *f, const pass_schedule *s, int k, const char *name,
                            bool aliased, int64_t scratch);

/* ---- codegen/llvm_copy.c ---- */
/* Emits `void name(ptr out, ptr in, ptr inst)`: copies node id's value (a strided view of
 * storage `in`; for a const-backed value, the constant) densely, row-major, into out. For
 * outputs that the plan copies out. */
LLVMValueRef cg_emit_copy_out(cg_llvm *cg, const ir_func *f, int id, const char *name);

/* ---- codegen/llvm_gemm.c ---- */
/* Emits a matmul kernel (same signature, cg_kernel_inputs order) for OP_matmul node id:
 * packed, cache-blocked, register-tiled, batched, parallel across the instance's threads. */
LLVMValueRef cg_emit_matmul(cg_llvm *cg, const ir_func *f, int id, const char *name);

/* ---- codegen/llvm_math.c ---- */
/* Full-width polynomial approximations on f32/f64 scalars or vectors (accuracy in docs). */
LLVMValueRef cg_exp(cg_llvm *cg, LLVMValueRef x);
LLVMValueRef cg_log(cg_llvm *cg, LLVMValueRef x);
LLVMValueRef cg_tanh(cg_llvm *cg, LLVMValueRef x);
LLVMValueRef cg_erf(cg_llvm *cg, LLVMValueRef x);
LLVMValueRef cg_sin(cg_llvm *cg, LLVMValueRef x);
LLVMValueRef cg_cos(cg_llvm *cg, LLVMValueRef x);
LLVMValueRef cg_log1p(cg_llvm *cg, LLVMValueRef x);

/* ---- helpers (codegen/llvm_module.c) ---- */
LLVMTypeRef cg_storage_type(cg_llvm *cg, ir_dtype t);   /* i8 / i32 / i64 / i16 / float / double */
LLVMTypeRef cg_compute_type(cg_llvm *cg, ir_dtype t);   /* f16, bf16 -> float; bool -> i1; else storage */
/* declares (once) and returns a runtime function of the ABI (tdsl/runtime.h) */
LLVMValueRef cg_runtime_fn(cg_llvm *cg, const char *name, LLVMTypeRef *fn_type);

#endif
