/* The reference evaluator: runs any IR function on strided buffers, one node at a time,
 * reading every value through its (storage, offset, shape, strides), so views are really
 * views. It is the oracle every backend is tested against: simple and exact, not fast. */
#ifndef TDSL_EVAL_H
#define TDSL_EVAL_H
#include "ir.h"

typedef struct ir_eval_opts {
    bool force_f64;   /* compute every floating value in f64 (gradcheck); results keep
                         their declared dtype unless this is set, then they are f64 */
} ir_eval_opts;

/* args: f->nargs tensors whose dtype and shape match f->args (else an error);
 * params: f->mod->nparams tensors matching the module's params;
 * outs: f->nouts tensors, allocated here (host_tensor_alloc), row-major dense.
 * Returns 0, or nonzero with a one-line reason in err. Never aborts on bad input. */
int ir_eval(const ir_func *f, const host_tensor *args, const host_tensor *params,
            host_tensor *outs, const ir_eval_opts *opts, char *err, size_t errlen);

#endif
