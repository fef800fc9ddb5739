/* Memory planning: gives every storage a home (see passes.h). Runs after scheduling.
 * Outputs whose value is the whole, contiguous storage a kernel writes are written in
 * place into the caller's buffer; any other output gets a final copy.
 *
 * Arena slots are reused: kernels run one after another in schedule order, so a storage is
 * live from the kernel that writes it to the last kernel that reads it (through any view);
 * values the final copies or the commit read live to the end. Slots are placed greedily in
 * that order, each in the smallest free gap that holds it (best fit), so a slot never
 * overlaps one that is live at the same time, with one exception: an elementwise kernel
 * may write over an input it is the last to read when it reads it only at the element it
 * writes (overwritable_input). Such kernels are compiled without the no-alias promise.
 *
 * A training step's update output is written straight into its param or state when
 * nothing can read the old value afterwards and nothing after it can fail (update_in_place);
 * otherwise its dense value waits in an arena slot (its own kernel's slot when that holds
 * it whole, else a staging slot filled by a copy) until the export commits. */
#include "passes.h"
#include <string.h>

static int64_t storage_bytes(const ir_node *n) { return ir_numel(n) * (int64_t)ir_dtype_size(n->dtype); }

static int64_t align64(int64_t b) { return (b + 63) & ~(int64_t)63; }

/* The arena's slots while planning: the live ones, sorted by offset. */
typedef struct slot {
    int64_t off, bytes;
    int last;              /* the slot is free again after kernel `last` */
} slot;
typedef struct slots {
    arena *ar;
    int n, cap;
    slot *s;
    int64_t top;           /* high-water mark: the arena's size */
    int64_t total;         /* every slot's size summed: the arena without reuse */
} slots;

/* A slot of `bytes` written by kernel `k` and read until kernel `last`: frees the slots
 * whose last reader ran before k, then takes the smallest gap that fits (or the top). */
static int64_t place(slots *sl, int k, int last, int64_t bytes)
{
    int w = 0;
    for (int i = 0; i < sl->n; i++)
        if (sl->s[i].last >= k)
            sl->s[w++] = sl->s[i];
    sl->n = w;
    bytes = align64(bytes);
    sl->total += bytes;
    int at = sl->n;             /* insert before slot `at` */
    int64_t off = sl->n ? sl->s[sl->n - 1].off + sl->s[sl->n - 1].bytes : 0, best = -1;
    for (int i = 0; i < sl->n; i++) {
        int64_t start = i ? sl->s[i - 1].off + sl->s[i - 1].bytes : 0, gap = sl->s[i].off - start;
        if (gap >= bytes && (best < 0 || gap < best)) {
            best = gap;
            off = start;
            at = i;
        }
    }
    slot add = {off, bytes, last};
    ARR_PUSH(sl->ar, sl->s, sl->n, sl->cap, add);
    memmove(&sl->s[at + 1], &sl->s[at], sizeof *sl->s * (size_t)(sl->n - 1 - at));
    sl->s[at] = add;
    if (off + bytes > sl->top)
        sl->top = off + bytes;
    return off;
}

/* The live slot at off changes hands: it now holds a value read until kernel `last`. */
static void take_over(slots *sl, int64_t off, int last, int64_t bytes)
{
    sl->total += align64(bytes);
    for (int i = 0; i < sl->n; i++)
        if (sl->s[i].off == off && sl->s[i].last < last)
            sl->s[i].last = last;
}

int64_t pass_state_layout(const ir_module *m, int64_t *offsets)
{
    int64_t off = 0;
    for (int i = 0; i < m->nstates; i++) {
        const ir_state *st = &m->states[i];
        int64_t n = 1;
        for (int d = 0; d < st->rank; d++)
            n *= st->shape[d];
        if (offsets)
            offsets[i] = off;
        off += align64(n * (int64_t)ir_dtype_size(st->dtype));
    }
    return off;
}

/* Whether kernel kr reads storage sid only at the element it writes: every read is sid's
 * own node, contiguous, with the root's shape and element size. */
static bool reads_in_step(const ir_func *f, const pass_kernel *kr, int sid)
{
    const ir_node *root = &f->nodes[kr->root];
    for (int m = 0; m < kr->nmembers; m++) {
        const ir_node *y = &f->nodes[kr->members[m]];
        for (int q = 0; q < y->nin; q++) {
            const ir_node *in = &f->nodes[y->in[q]];
            if (in->storage == sid &&
                (y->in[q] != sid || ir_dtype_size(in->dtype) != ir_dtype_size(root->dtype) || in->rank != root->rank ||
                 !ir_is_contiguous(in) || memcmp(in->shape, root->shape, sizeof(int64_t) * (size_t)root->rank) != 0))
                return false;
        }
    }
    return true;
}

/* Kernel k's root may take the arena slot of storage `in` when the kernel is elementwise,
 * k is the last kernel to read `in`, and it reads `in` only at the element it writes: the
 * storage's own node, same shape and element size as the root. Returns such an input
 * storage, or -1. */
static int overwritable_input(const ir_func *f, const pass_kernel *kr, int k, const int *last, const pass_mem *mem)
{
    const ir_node *root = &f->nodes[kr->root];
    if (!(ir_ops[root->op].flags & OPF_ELEM) || !ir_is_contiguous(root))
        return -1;
    for (int m = 0; m < kr->nmembers; m++) {
        const ir_node *x = &f->nodes[kr->members[m]];
        for (int q = 0; q < x->nin; q++) {
            int sid = f->nodes[x->in[q]].storage;
            if (mem[sid].kind != MEM_ARENA || last[sid] != k || mem[sid].bytes != storage_bytes(root))
                continue;
            if (reads_in_step(f, kr, sid))
                return sid;
        }
    }
    return -1;
}

/* An elementwise kernel that cannot fail at run time (integer division and modulo can). */
static bool safe_elementwise(const ir_func *f, const pass_kernel *kr)
{
    for (int m = 0; m < kr->nmembers; m++) {
        const ir_node *n = &f->nodes[kr->members[m]];
        if (!(ir_ops[n->op].flags & OPF_ELEM) || ((n->op == OP_div || n->op == OP_mod) && !ir_dtype_is_float(n->dtype)))
            return false;
    }
    return true;
}

/* Whether update output k can be written straight into its param or state (passes.h).
 * last: the last kernel reading each storage (nk: read after the kernels). */
static bool update_in_place(const ir_func *f, const pass_schedule *s, const int *last, int k)
{
    const ir_update *u = &f->updates[k];
    int id = f->outs[k];
    const ir_node *n = &f->nodes[id];
    int K = -1;
    for (int j = 0; j < s->nkernels && K < 0; j++)
        if (s->kernels[j].root == id)
            K = j;
    if (K < 0 || n->storage != id || !ir_is_contiguous(n) || ir_numel(n) == 0)
        return false;
    for (int j = 0; j < f->nouts; j++)   /* another output of the same node, or two updates */
        if (j != k && f->outs[j] == id)
            return false;
    for (int j = K; j < s->nkernels; j++)
        if (!safe_elementwise(f, &s->kernels[j]))
            return false;
    ir_opcode leaf = u->kind == IR_UPD_PARAM ? OP_param : OP_state;
    const pass_kernel *kr = &s->kernels[K];
    for (int i = 0; i < f->nnodes; i++) {
        const ir_node *t = &f->nodes[i];
        if (t->op != leaf || t->i[0] != u->index)
            continue;
        if (last[i] > K || !reads_in_step(f, kr, i))   /* old value read later, or elsewhere */
            return false;
    }
    return true;
}

int64_t pass_kernel_scratch(const ir_func *f, const pass_kernel *kr)
{
    const ir_node *n = &f->nodes[kr->root];
    if ((n->op != OP_index_add && n->op != OP_gather_add) || !ir_dtype_is_float(n->dtype) || n->dtype == DT_F64 ||
        ir_numel(n) == 0)
        return 0;
    int64_t span = n->offset + 1;   /* the output's storage span: offset and strides kept */
    for (int d = 0; d < n->rank; d++)
        span += (n->shape[d] - 1) * n->strides[d];
    return span * 8;
}

pass_memplan *pass_memplan_func(arena *ar, const ir_func *f, const pass_schedule *s)
{
    pass_memplan *p = arena_alloc(ar, sizeof *p);
    p->mem = arena_alloc(ar, sizeof(pass_mem) * (size_t)(f->nnodes ? f->nnodes : 1));
    p->nouts = f->nouts;
    p->out_copy = arena_alloc(ar, sizeof(bool) * (size_t)(f->nouts ? f->nouts : 1));
    p->stage = arena_alloc(ar, sizeof(int64_t) * (size_t)(f->nouts ? f->nouts : 1));
    p->in_place = arena_alloc(ar, sizeof(bool) * (size_t)(f->nouts ? f->nouts : 1));
    p->backup = arena_alloc(ar, sizeof(int64_t) * (size_t)(f->nouts ? f->nouts : 1));
    for (int k = 0; k < f->nouts; k++)
        p->backup[k] = -1;
    int64_t *state_off = arena_alloc(ar, sizeof(int64_t) * (size_t)(f->mod->nstates + 1));
    pass_state_layout(f->mod, state_off);
    for (int i = 0; i < f->nnodes; i++) {
        const ir_node *n = &f->nodes[i];
        if (n->op == OP_arg)
            p->mem[i] = (pass_mem){MEM_ARG, (int)n->i[0], 0, storage_bytes(n)};
        else if (n->op == OP_param)
            p->mem[i] = (pass_mem){MEM_PARAM, (int)n->i[0], 0, storage_bytes(n)};
        else if (n->op == OP_state)
            p->mem[i] = (pass_mem){MEM_STATE, (int)n->i[0], state_off[n->i[0]], storage_bytes(n)};
    }
    int nres = ir_num_results(f);
    /* outputs written in place: a kernel root, contiguous, output only once */
    for (int k = 0; k < nres; k++) {
        int id = f->outs[k];
        const ir_node *n = &f->nodes[id];
        bool twice = false;
        for (int j = 0; j < k; j++)
            twice |= f->outs[j] == id;
        /* n->storage == id: n owns its buffer (not a view), so the kernel writes all of it */
        bool in_place = !twice && n->storage == id && n->op != OP_arg && n->op != OP_param && n->op != OP_state &&
                        n->op != OP_constant && ir_is_contiguous(n);
        p->out_copy[k] = !in_place;
        p->stage[k] = -1;
        if (in_place)
            p->mem[id] = (pass_mem){MEM_OUTPUT, k, 0, storage_bytes(n)};
    }
    /* last kernel reading each storage; nk = read after the kernels (copy-out, commit) */
    int nk = s->nkernels;
    int *last = arena_alloc(ar, sizeof(int) * (size_t)(f->nnodes ? f->nnodes : 1));
    for (int i = 0; i < f->nnodes; i++)
        last[i] = -1;
    for (int k = 0; k < nk; k++) {
        const pass_kernel *kr = &s->kernels[k];
        for (int m = 0; m < kr->nmembers; m++) {
            const ir_node *x = &f->nodes[kr->members[m]];
            for (int i = 0; i < x->nin; i++) {
                int sid = f->nodes[x->in[i]].storage;
                if (last[sid] < k)
                    last[sid] = k;
            }
        }
    }
    for (int k = 0; k < f->nouts; k++)   /* copied out or committed after the kernels */
        last[f->nodes[f->outs[k]].storage] = nk;
    for (int k = nres; k < f->nouts; k++)
        if (update_in_place(f, s, last, k)) {
            const ir_update *u = &f->updates[k];
            const ir_node *n = &f->nodes[f->outs[k]];
            p->mem[f->outs[k]] = u->kind == IR_UPD_PARAM ? (pass_mem){MEM_PARAM, u->index, 0, storage_bytes(n)}
                                                         : (pass_mem){MEM_STATE, u->index, state_off[u->index], storage_bytes(n)};
            p->in_place[k] = true;
            p->backup[k] = p->backup_bytes;
            p->backup_bytes += align64(storage_bytes(n));
        }
    slots sl = {.ar = ar};
    p->scratch = arena_alloc(ar, sizeof(int64_t) * (size_t)(nk ? nk : 1));
    for (int k = 0; k < nk; k++) {
        int id = s->kernels[k].root;
        int64_t need = pass_kernel_scratch(f, &s->kernels[k]);
        if (p->mem[id].kind != MEM_NONE) {
            p->scratch[k] = need ? place(&sl, k, k, need) : -1;
            continue;
        }
        int64_t bytes = storage_bytes(&f->nodes[id]);
        int until = last[id] > k ? last[id] : k;
        int in = overwritable_input(f, &s->kernels[k], k, last, p->mem);
        if (in >= 0) {   /* the kernel writes over an input it is the last to read */
            p->mem[id] = (pass_mem){MEM_ARENA, 0, p->mem[in].offset, bytes};
            take_over(&sl, p->mem[in].offset, until, bytes);
        } else {
            p->mem[id] = (pass_mem){MEM_ARENA, 0, place(&sl, k, until, bytes), bytes};
        }
        p->scratch[k] = need ? place(&sl, k, k, need) : -1;   /* after the root: both live at k */
    }
    /* update outputs: their own arena slot when it holds the dense value, else a staging slot */
    for (int k = nres; k < f->nouts; k++) {
        int id = f->outs[k];
        const ir_node *n = &f->nodes[id];
        if (p->in_place[k]) {
            p->out_copy[k] = false;
            p->stage[k] = -1;
            continue;
        }
        bool own = n->storage == id && p->mem[id].kind == MEM_ARENA && ir_is_contiguous(n);
        p->out_copy[k] = !own;
        p->stage[k] = own ? p->mem[id].offset : place(&sl, nk, nk, storage_bytes(n));
    }
    p->arena_bytes = sl.top;
    p->arena_bytes_unshared = sl.total;
    return p;
}
