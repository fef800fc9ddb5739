/* Passes after lowering, each in its own file, each with one entry point.
 * The driver runs them in this order, verifying and optionally dumping after each:
 *   schedule (kernels)  ->  fuse (elementwise chains)  ->  memplan (where each buffer lives)
 *   ->  codegen
 * autodiff runs in the front end, on the
 * function a `grad` export names, and makes the export's function. */
#ifndef TDSL_PASSES_H
#define TDSL_PASSES_H
#include <stdio.h>
#include "../ir/ir.h"

/* ---- passes/schedule.c ----
 * A kernel is the unit of code generation: one loop nest that writes the value of its
 * root node into the root's storage, computing its member nodes (all elementwise over the
 * root's shape) per element and reading every other value through its own strides.
 * Views, args and params are never kernels; `const` nodes are not either: readers use the
 * constant as an immediate. Without fusion every kernel has one member: its root. */
typedef struct pass_kernel {
    int root;          /* node whose value this kernel writes */
    int nmembers;      /* nodes computed inside, in node order; the root is last */
    int *members;
} pass_kernel;

typedef struct pass_schedule {
    int nkernels;
    pass_kernel *kernels;   /* in an order that respects dependencies */
} pass_schedule;

/* Pre: f verified. Post: every non-view, non-leaf, non-const node is the root of exactly
 * one kernel; kernels appear after the kernels of every storage they read. */
pass_schedule *pass_schedule_func(arena *ar, const ir_func *f);

/* ---- passes/fusion.c ----
 * Merges chains of elementwise kernels into one (see the file's comment). In place. */
void pass_fuse(arena *ar, const ir_func *f, pass_schedule *s);

/* ---- passes/memplan.c ----
 * Where each storage lives when an export runs. */
typedef enum {
    MEM_NONE,     /* no memory: a `const` (an immediate) */
    MEM_ARG,      /* the caller's input buffer `index` (dense row-major) */
    MEM_PARAM,    /* the instance's param `index` (dense row-major) */
    MEM_OUTPUT,   /* the caller's output buffer `index`: the kernel writes the result in place */
    MEM_ARENA,    /* the instance's scratch arena at byte `offset` */
    MEM_STATE,    /* the instance's state block at byte `offset`: state `index` */
} pass_mem_kind;

typedef struct pass_mem {
    pass_mem_kind kind;
    int index;
    int64_t offset;       /* MEM_ARENA: byte offset, 64-byte aligned */
    int64_t bytes;        /* size of the storage */
} pass_mem;

typedef struct pass_memplan {
    pass_mem *mem;        /* indexed by storage id (= owning node id); unused ids are MEM_NONE */
    int nouts;
    bool *out_copy;       /* per output: true when a final copy into the caller's buffer is
                             needed (the value is a view, a leaf, a const, or another output);
                             for an update output: a copy into its staging slot is needed */
    int64_t *stage;       /* per output: update outputs (training steps): arena byte offset of
                             the dense value that the export commits to the param or state
                             after every kernel ran; -1 for plain results and for updates
                             written in place */
    bool *in_place;       /* per output: an update whose kernel writes the param or state
                             itself (its node's mem is MEM_PARAM / MEM_STATE): no staging slot,
                             no commit copy */
    int64_t *backup;      /* per output: an in-place update's byte offset in the backup buffer
                             (the old value, kept only with check_finite, restored when the
                             step fails its checks); -1 otherwise */
    int64_t backup_bytes; /* the backup buffer's size */
    int64_t *scratch;     /* per kernel: arena byte offset of its scratch (pass_kernel_scratch),
                             live only while it runs; -1 for none */
    int64_t arena_bytes;  /* total scratch */
    int64_t arena_bytes_unshared;   /* what the slots would take without reuse */
} pass_memplan;

/* Pre: f verified. Post: two arena storages overlap only if no kernel, copy-out or commit
 * needs both at once (slots are reused after their last reader). An update is written in
 * place only when its kernel is elementwise and reads the old value only at the element it
 * writes, no later kernel or copy reads the old value, and every later kernel is
 * elementwise and cannot fail (so a failing step has changed nothing; check_finite
 * restores from the backup). */
pass_memplan *pass_memplan_func(arena *ar, const ir_func *f, const pass_schedule *s);
/* Scratch memory kernel kr needs while it runs: index_add and gather_add into f32, f16 or
 * bf16 sum in an f64 accumulator shaped like the output (as ir_eval does); 0 for others. */
int64_t pass_kernel_scratch(const ir_func *f, const pass_kernel *kr);
/* The module's state block: byte offset of each state (64-byte aligned) in offsets (may be
 * NULL); returns the block's size in bytes. */
int64_t pass_state_layout(const ir_module *m, int64_t *offsets);

/* ---- passes/pipeline.c ----
 * schedule -> fuse (unless fuse is false: --no-fuse) -> memplan, for one function. */
typedef struct pass_plan {
    pass_schedule *schedule;
    pass_memplan *mem;
} pass_plan;
pass_plan pass_pipeline(arena *ar, const ir_func *f, bool fuse);

/* ---- passes/dump.c ----
 * `tdslc dump --stage fused`: each kernel with its member nodes as IR (dot: Graphviz with a
 * box per kernel). `--stage planned`: kernels and the memory plan. */
void pass_print_fused(FILE *out, const ir_func *f, const pass_schedule *s, bool dot);
void pass_print_plan(FILE *out, const ir_func *f, const pass_schedule *s, const pass_memplan *p);

/* ---- passes/stats.c ----
 * `tdslc stats`: kernels, FLOPs, bytes moved by kernels, arena and peak memory of f. */
void pass_print_stats(FILE *out, const ir_module *m, const ir_func *f, const pass_schedule *s, const pass_memplan *p);
/* The floating-point operations of f's kernels, counted as stats does. */
int64_t pass_flops(const ir_func *f, const pass_schedule *s);

/* ---- passes/autodiff.c ----
 * Reverse-mode differentiation (docs/autodiff.md). F: one scalar float result. wrt: the
 * arguments / params to differentiate by. Appends a NEW function `name` to F's module with
 * F's arguments, returning F's value, then one gradient per wrt entry (zeros where the
 * result does not depend on it: independent[k] is set then). On a failure (an op with no
 * gradient yet, a non-scalar result) returns NULL with the reason in err and the source
 * location of the offending node in err_line/err_col; the module is left as it was. */
typedef struct pass_wrt {
    bool is_param;
    int index;             /* argument index or param index */
} pass_wrt;
ir_func *pass_autodiff(ir_func *F, const char *name, int nwrt, const pass_wrt *wrt, bool *independent,
                       int *err_line, int *err_col, char *err, size_t errlen);
/* Custom-gradient regions (docs/autodiff.md): the inlined call of a helper fn with a
 * `grad (dy) { }` block. They live only between the lowering and autodiff (never in the
 * IR or its text form). result: F's node of the call's value (made by the call); args:
 * F's node of each argument (-1: not a tensor); keep: F's nodes the block may read (the
 * call's bindings), kept live; data: the lowering's. At `result`, autodiff does not use the op
 * rules: it calls emit, which builds the gradient block into dst (map: F id -> dst id of
 * the re-emitted forward value; dy: dst id of the result's cotangent) and fills cts[k]
 * with the dst id of argument k's cotangent (-1: none). emit returns 0, or -1 after
 * reporting its error. Nested regions: the lowering records only the outermost. */
typedef struct pass_custom {
    int result;
    int nargs, nkeep;
    const int *args, *keep;
    void *data;
} pass_custom;
typedef int (*pass_custom_fn)(void *ctx, const ir_func *src, ir_func *dst, const pass_custom *r, const int *map,
                              int dy, int *cts);
/* Checkpoint regions (docs/autodiff.md): the nodes first..last of F that one inlined
 * `checkpoint(f, args...)` made. The backward pass does not keep them: on reaching the
 * region it emits them again (leaves excepted) and the region's rules read the copies,
 * so the forward's values die as soon as the forward is done with them (less memory for
 * a second forward computation). Regions do not overlap (the lowering records the
 * outermost of nested ones). */
typedef struct pass_checkpoint {
    int first, last;
} pass_checkpoint;
typedef struct pass_regions {
    int ncustom;                      /* custom-gradient regions, and what builds their blocks */
    const pass_custom *customs;
    pass_custom_fn emit;
    void *ctx;
    int ncheckpoints;
    const pass_checkpoint *checkpoints;
} pass_regions;
/* pass_autodiff with regions (NULL: none). The result never holds a node its outputs do
 * not need. */
ir_func *pass_autodiff_regions(ir_func *F, const char *name, int nwrt, const pass_wrt *wrt, bool *independent,
                               const pass_regions *regions, int *err_line, int *err_col, char *err, size_t errlen);
/* Removes f from m's function list (its memory stays in the arena). */
void pass_drop_func(ir_module *m, const ir_func *f);

/* `tdslc gradcheck`: evaluates grad export G in f64 at (args, params) (any float dtype; copied
 * to f64) and compares each gradient output k (named d<arg or param>) with central
 * differences of output 0 (step eps). rows[k-1]: max abs and rel errors, ok when every
 * element has |analytic - numeric| <= atol + rtol |numeric|. Returns 0, or -1 with err. */
typedef struct pass_gradcheck_row {
    char name[128];
    double max_abs, max_rel;
    bool ok;
} pass_gradcheck_row;
int pass_gradcheck(const ir_func *G, const host_tensor *args, const host_tensor *params, double eps, double rtol,
                   double atol, pass_gradcheck_row *rows, char *err, size_t errlen);

#endif
