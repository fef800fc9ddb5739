/* Shape rules (ir/shape.c): one per op family, named in ops.def. */
#ifndef TDSL_SHAPE_H
#define TDSL_SHAPE_H
#include "ir.h"

/* Fills n's dtype, rank and shape (and for views: strides, offset, storage, view_of)
 * from its inputs and attributes, or writes a reason into err and returns false. */
bool ir_shape_rule(const ir_func *f, ir_node *n, char *err, size_t errlen);

#endif
