/* libFuzzer target for the grammar: the input bytes are one .tdsl file. Diagnostics
 * go to /dev/null; an accepted file is also printed (ast_print) to walk the tree.
 * Nothing may crash, hang or leak: everything lives in one arena per input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "frontend/ast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (!devnull)
        return 0;
    diag_reset(devnull);

    /* parse_file reads `len` bytes; the copy adds the NUL that src_file promises */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    text[size] = 0;
    src_file file = {"fuzz.tdsl", text, size};

    arena ar;
    arena_init(&ar);
    ast_file *f = parse_file(&ar, &file);
    if (f)
        ast_print(devnull, f);
    arena_free(&ar);
    free(text);
    return 0;
}
