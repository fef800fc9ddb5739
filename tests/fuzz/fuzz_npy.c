/* libFuzzer target: npy_read_mem on arbitrary bytes must never crash, leak or read out of
 * bounds; on success the tensor must be self-consistent and printable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tools/npy.h"
#include "tools/printarr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    host_tensor t;
    char err[256];
    if (npy_read_mem(data, size, &t, err, sizeof err) == 0) {
        if (host_tensor_numel(&t) <= 4096) {  /* printing is the next consumer of these */
            char *s = format_array(&t);
            free(s);
        }
        host_tensor_free(&t);
    } else if (t.data != NULL || strlen(err) == 0) {
        abort();  /* failures must leave no data and say why */
    }
    return 0;
}
