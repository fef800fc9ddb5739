/* The reference evaluator: runs any IR function on strided buffers, one node at a time,
 * reading every value through its (storage, offset, shape, strides), so views are really
 * views. It is the oracle every backend is tested against: simple and exact, not fast. */
#ifndef TDSL_EVAL_H
#define TDSL_EVAL_H
#include "ir.h"

typedef struct ir_eval_opts {
    bool force_f64;   /* compute every floating value in f64 (gradcheck); results keep
                         their declared dtype unless this is set, then they are f64 */
    const host_tensor *states;   /* f->mod->nstates tensors read by `state` nodes (training
                                    steps; zeros before the first step), or NULL */
} ir_eval_opts;

/* args: f->nargs tensors whose dtype and shape match f->args (else an error);
 * params: f->mod->nparams tensors matching the module's params;
 * outs: f->nouts tensors, allocated here (host_tensor_alloc), row-major dense.
 * Returns 0, or nonzero with a one-line reason in err. Never aborts on bad input. */
int ir_eval(const ir_func *f, const host_tensor *args, const host_tensor *params,
            host_tensor *outs, const ir_eval_opts *opts, char *err, size_t errlen);

/* One training step: evaluates f (outputs with update targets, ir.h) like ir_eval, reading
 * params and states (f->mod->nstates tensors; opts->states is ignored), then, only when
 * everything succeeded, writes each update output into its param or state tensor (same
 * dtype and shape) and returns the plain results in outs (ir_num_results(f) tensors).
 * On failure no param or state changes. */
int ir_eval_step(const ir_func *f, const host_tensor *args, host_tensor *params, host_tensor *states,
                 host_tensor *outs, const ir_eval_opts *opts, char *err, size_t errlen);

#endif
