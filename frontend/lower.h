/* Lowering: checked AST -> IR. Resolves names and constants (-D overrides), inlines
 * generic helper fns per call, infers shapes (NumPy broadcasting) and dtypes (PyTorch
 * promotion, weak literals), and emits IR whose every node has its exact layout.
 * Reports user errors with locations through diag; never aborts on bad input. */
#ifndef TDSL_LOWER_H
#define TDSL_LOWER_H
#include "ast.h"
#include "../ir/ir.h"

typedef struct lower_define {   /* -D NAME=VALUE */
    const char *name;
    const char *value;          /* text: an integer or a float */
    bool used;
} lower_define;

typedef struct lower_opts {
    const char *module_name;
    int ndefines;
    lower_define *defines;
    bool no_recompute;          /* checkpoint(f, ...) as a plain call: `tdslc stats` compares */
    int ncheckpoints;           /* out: checkpoint regions recorded in gradient exports */
} lower_opts;

/* Returns the module, or NULL if errors were reported. */
ir_module *lower_file(arena *ar, const ast_file *file, lower_opts *opts);

#endif
