/* libFuzzer target: st_open_mem on arbitrary bytes must never crash, leak or read out of
 * bounds; every tensor it accepts must lie inside the buffer it owns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    st_file *f = st_open_mem(data, size, err, sizeof err);
    if (!f) {
        if (strlen(err) == 0)
            abort();
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        if (st_find(f, t->name) != t)
            abort();
        /* touch first and last byte: ASan flags any offset outside the copy */
        if (t->nbytes) {
            sink ^= ((const uint8_t *)t->data)[0];
            sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
        }
    }
    (void)sink;
    (void)st_metadata(f, "format");
    st_close(f);
    return 0;
}
