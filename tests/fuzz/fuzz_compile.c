/* libFuzzer target: the whole front end (parse, lower with autodiff, verify, print and
 * re-parse the IR) and the passes before codegen (schedule, fuse, memplan) on arbitrary bytes. Any crash, sanitizer report or leak is a bug: bad input must only
 * ever produce diagnostics. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/ir.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    diag_reset(devnull);
    src_file src = {"fuzz.tdsl", text, size};
    arena ar;
    arena_init(&ar);
    ast_file *ast = parse_file(&ar, &src);
    if (ast) {
        lower_opts o = {.module_name = "fuzz"};
        ir_module *m = lower_file(&ar, ast, &o);
        if (m) {
            if (ir_verify(m, devnull) != 0)
                abort();   /* lowering produced malformed IR: a compiler bug */
            /* the IR text of every accepted program must parse back */
            char *buf = NULL;
            size_t len = 0;
            FILE *mem = open_memstream(&buf, &len);
            ir_print_module(mem, m);
            fclose(mem);
            src_file irsrc = {"fuzz.ir", buf, len};
            if (!ir_parse_module(&ar, &irsrc))
                abort();
            free(buf);
            for (int k = 0; k < m->nfuncs; k++) {
                pass_plan pl = pass_pipeline(&ar, m->funcs[k], true);
                if (pl.mem->arena_bytes > pl.mem->arena_bytes_unshared)
                    abort();   /* reuse can only shrink the arena */
            }
        }
    }
    arena_free(&ar);
    free(text);
    return 0;
}
