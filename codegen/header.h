/* The header emitter: the C interface of a compiled module (spec section 4), the file
 * `tdslc build` writes next to the object. Every symbol carries the module prefix so that
 * many modules' headers can be included in one translation unit and their objects linked
 * into one program. Reads the checked IR only: arguments from ir_func.args, outputs from
 * the output nodes' dtypes and shapes, locations from ir_func.line. */
#ifndef TDSL_CG_HEADER_H
#define TDSL_CG_HEADER_H
#include <stddef.h>
#include <stdio.h>
#include "../ir/ir.h"

/* Checks that the module's C names work: the module name is a C identifier that is not a
 * C/C++ keyword, a reserved identifier, `main` or in the runtime's `tdsl` namespace, and
 * every export is an identifier whose `<mod>_<fn>` differs from the instance functions
 * (`<mod>_create`, `_destroy`, `_error`, `_save`, `_load`, `_num_params`, `_param`).
 * Returns 0, or -1 with a one-line reason in err. The driver calls it before codegen. */
int cg_header_check(const ir_module *m, char *err, size_t errlen);

/* Writes the header for m. source_path is the .tdsl file as given on the command line
 * (comments only; may be NULL). If cg_header_check fails, the header holds an #error
 * with the reason instead of declarations that would not compile. */
void cg_emit_header(FILE *out, const ir_module *m, const char *source_path);

/* The C element type of a dtype's buffers: bool -> "uint8_t", f16/bf16 -> "uint16_t",
 * i32 -> "int32_t", i64 -> "int64_t", f32 -> "float", f64 -> "double". */
const char *cg_c_type(ir_dtype t);

#endif
