/* The passes after lowering, in order. Both the backend and the driver's dumps and stats
 * call this, so what `tdslc dump --stage planned` shows is what gets compiled. */
#include "passes.h"

pass_plan pass_pipeline(arena *ar, const ir_func *f, bool fuse)
{
    pass_plan pl;
    pl.schedule = pass_schedule_func(ar, f);   /* one kernel per computed value */
    if (fuse)
        pass_fuse(ar, f, pl.schedule);         /* elementwise chains -> one loop nest */
    pl.mem = pass_memplan_func(ar, f, pl.schedule);   /* where each buffer lives */
    return pl;
}
