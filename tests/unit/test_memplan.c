/* Memory planning (passes/memplan.c): the arena reuses slots, and never gives two values
 * the same bytes while both are needed. Checked on every export of every program in
 * tests/programs, tests/golden, tests/autodiff and tests/train (forward, gradient and
 * training-step exports), with and without fusion, against lifetimes recomputed here from
 * the schedule; and the conditions for writing a step's update in place.
 * (That the compiled code computes the right values with these plans is what
 * test_programs and test_golden_engines check.) */
#include <check.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "files.h"
#include "passes/passes.h"

static arena ar;
static src_file src;
static char diag_buf[16384];

typedef struct life {
    int first, last;   /* kernel that writes the storage .. last one needing it (nk: the end) */
} life;

/* Each arena storage's lifetime, computed independently of memplan's own bookkeeping. */
static void lifetimes(const ir_func *f, const pass_schedule *s, life *lv)
{
    int nk = s->nkernels;
    for (int i = 0; i < f->nnodes; i++)
        lv[i] = (life){-1, -1};
    for (int k = 0; k < nk; k++) {
        const pass_kernel *kr = &s->kernels[k];
        lv[kr->root].first = lv[kr->root].last = k;
    }
    for (int k = 0; k < nk; k++)
        for (int m = 0; m < s->kernels[k].nmembers; m++) {
            const ir_node *x = &f->nodes[s->kernels[k].members[m]];
            for (int i = 0; i < x->nin; i++) {
                int sid = f->nodes[x->in[i]].storage;
                if (lv[sid].last < k)
                    lv[sid].last = k;
            }
        }
    for (int o = 0; o < f->nouts; o++)
        lv[f->nodes[f->outs[o]].storage].last = nk;
}

static bool overlap(int64_t a, int64_t an, int64_t b, int64_t bn) { return a < b + bn && b < a + an; }

/* Whether kernel k may write its root over storage sid, which it is the last to read: an
 * elementwise kernel reading sid only through sid's own node, shaped like the root (each
 * element is read before it is overwritten, by the same iteration). */
static bool overwrites(const ir_func *f, const pass_schedule *s, int k, int sid)
{
    if (k >= s->nkernels)   /* a staging slot, filled after the kernels */
        return false;
    const pass_kernel *kr = &s->kernels[k];
    const ir_node *root = &f->nodes[kr->root];
    if (!(ir_ops[root->op].flags & OPF_ELEM))
        return false;
    for (int m = 0; m < kr->nmembers; m++) {
        const ir_node *x = &f->nodes[kr->members[m]];
        if (!(ir_ops[x->op].flags & OPF_ELEM))
            return false;
        for (int q = 0; q < x->nin; q++) {
            const ir_node *in = &f->nodes[x->in[q]];
            if (in->storage == sid && (x->in[q] != sid || in->rank != root->rank ||
                                       memcmp(in->shape, root->shape, sizeof(int64_t) * (size_t)root->rank) != 0 ||
                                       ir_dtype_size(in->dtype) != ir_dtype_size(root->dtype)))
                return false;
        }
    }
    return true;
}

/* every pair of arena storages (and staging slots) that share bytes has disjoint lifetimes */
static int nscratch;   /* kernels with scratch seen */

static void check_plan(const char *where, const ir_func *f, bool fuse, int64_t *saved, int *nin_place)
{
    pass_plan pl = pass_pipeline(&ar, f, fuse);
    const pass_memplan *p = pl.mem;
    int nk = pl.schedule->nkernels, cap = f->nnodes + f->nouts + nk + 1;
    life *lv = arena_alloc(&ar, sizeof *lv * (size_t)cap);
    lifetimes(f, pl.schedule, lv);
    int n = 0, *ids = arena_alloc(&ar, sizeof(int) * (size_t)cap);
    int64_t *off = arena_alloc(&ar, sizeof(int64_t) * (size_t)cap);
    int64_t *len = arena_alloc(&ar, sizeof(int64_t) * (size_t)cap);
    for (int i = 0; i < f->nnodes; i++)
        if (p->mem[i].kind == MEM_ARENA) {
            ck_assert_msg(lv[i].first >= 0, "%s: %%%d is in the arena but no kernel writes it", where, i);
            ck_assert_msg(p->mem[i].offset % 64 == 0, "%s: %%%d misaligned", where, i);
            ck_assert_msg(p->mem[i].offset + p->mem[i].bytes <= p->arena_bytes, "%s: %%%d past the arena", where, i);
            ids[n] = i;
            off[n] = p->mem[i].offset;
            len[n++] = p->mem[i].bytes;
        }
    for (int k = 0; k < nk; k++)   /* a kernel's scratch: live while it runs */
        if (p->scratch[k] >= 0) {
            ids[n] = f->nnodes + f->nouts + k;
            lv[ids[n]] = (life){k, k};
            off[n] = p->scratch[k];
            len[n] = pass_kernel_scratch(f, &pl.schedule->kernels[k]);
            ck_assert_int_le(off[n] + len[n], p->arena_bytes);
            nscratch++;
            n++;
        } else {
            ck_assert_int_eq(pass_kernel_scratch(f, &pl.schedule->kernels[k]), 0);
        }
    int nslots = n;
    for (int o = ir_num_results(f); o < f->nouts; o++)   /* staging slots: written after the kernels */
        if (p->out_copy[o]) {
            ids[n] = f->nnodes + o;
            lv[f->nnodes + o] = (life){nk, nk};
            off[n] = p->stage[o];
            len[n++] = ir_numel(&f->nodes[f->outs[o]]) * (int64_t)ir_dtype_size(f->nodes[f->outs[o]].dtype);
        }
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            if (!overlap(off[a], len[a], off[b], len[b]) || len[a] == 0 || len[b] == 0)
                continue;
            life x = lv[ids[a]], y = lv[ids[b]];
            if ((x.last == y.first && overwrites(f, pl.schedule, y.first, ids[a])) ||
                (y.last == x.first && overwrites(f, pl.schedule, x.first, ids[b]))) {
                ck_assert_int_eq(off[a], off[b]);   /* the same slot, element for element */
                continue;
            }
            ck_assert_msg(x.last < y.first || y.last < x.first,
                          "%s%s: %%%d (kernels %d..%d) and %%%d (kernels %d..%d) share arena bytes", where,
                          fuse ? "" : " (no fusion)", ids[a], x.first, x.last, ids[b], y.first, y.last);
        }
    /* an update written in place: its kernel is the last reader of the old value, and no
     * kernel after it reads the old value or can fail */
    for (int o = ir_num_results(f); o < f->nouts; o++) {
        if (!p->in_place[o])
            continue;
        int K = lv[f->outs[o]].first;
        const ir_update *u = &f->updates[o];
        ck_assert_int_ge(K, 0);
        for (int i = 0; i < f->nnodes; i++)
            if (f->nodes[i].op == (u->kind == IR_UPD_PARAM ? OP_param : OP_state) && f->nodes[i].i[0] == u->index)
                ck_assert_msg(lv[i].last <= K, "%s: the old value of update %d is read after its kernel %d", where, o, K);
        for (int k = K; k < nk; k++)
            for (int m = 0; m < pl.schedule->kernels[k].nmembers; m++) {
                const ir_node *x = &f->nodes[pl.schedule->kernels[k].members[m]];
                ck_assert_msg((ir_ops[x->op].flags & OPF_ELEM) &&
                                  !((x->op == OP_div || x->op == OP_mod) && !ir_dtype_is_float(x->dtype)),
                              "%s: kernel %d after in-place update %d may fail", where, k, o);
            }
        ck_assert_int_le(p->backup[o] + p->mem[f->outs[o]].bytes, p->backup_bytes);
        (*nin_place)++;
    }
    int64_t sum = 0;
    for (int a = 0; a < nslots; a++)
        sum += (len[a] + 63) / 64 * 64;
    ck_assert_int_le(p->arena_bytes, p->arena_bytes_unshared);
    ck_assert_int_ge(p->arena_bytes_unshared, sum);
    *saved += p->arena_bytes_unshared - p->arena_bytes;
}

static int check_dir(const char *dir, int64_t *saved, int *nin_place)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    int nfuncs = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".tdsl") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t bytes;
        char *text = (char *)slurp(path, &bytes);
        ck_assert_ptr_nonnull(text);
        text[bytes] = 0;
        ir_module *m = compile_source(&ar, &src, "t", text, 0, NULL, diag_buf, sizeof diag_buf);
        if (m)   /* some golden files are meant to fail (diagnostics); they plan nothing */
            for (int k = 0; k < m->nfuncs; k++) {
                char where[1200];
                snprintf(where, sizeof where, "%s: %s", path, m->funcs[k]->name);
                check_plan(where, m->funcs[k], true, saved, nin_place);
                check_plan(where, m->funcs[k], false, saved, nin_place);
                nfuncs++;
            }
        free(text);
    }
    closedir(d);
    return nfuncs;
}

START_TEST(no_two_live_values_share_bytes)
{
    int64_t saved = 0;
    int in_place = 0;
    int n = check_dir(TDSL_SOURCE_DIR "/tests/programs", &saved, &in_place) +
            check_dir(TDSL_SOURCE_DIR "/tests/golden", &saved, &in_place) +
            check_dir(TDSL_SOURCE_DIR "/tests/autodiff", &saved, &in_place) +
            check_dir(TDSL_SOURCE_DIR "/tests/train", &saved, &in_place);
    ck_assert_int_gt(n, 100);
    printf("memplan: %d exports planned with and without fusion, %lld arena bytes saved by reuse, %d updates in place\n",
           n, (long long)saved, in_place);
    ck_assert_int_gt(in_place, 0);
    ck_assert_int_gt(nscratch, 0);   /* embedding gradients (index_add into f32) */
    ck_assert_int_gt(saved, 0);   /* and reuse happens */
}
END_TEST

START_TEST(a_chain_needs_two_slots)
{
    /* a chain of kernels that fusion cannot merge (reductions between them): each value is
     * read only by the next kernel, so two slots serve the whole chain */
    ir_module *m = compile_source(&ar, &src, "t",
                                  "export fn f(x: f32[64, 64]) {\n"
                                  "    a = softmax(x, 1)\n    b = softmax(a, 0)\n    c = softmax(b, 1)\n"
                                  "    d = softmax(c, 0)\n    return softmax(d, 1)\n}\n",
                                  0, NULL, diag_buf, sizeof diag_buf);
    ck_assert_msg(m != NULL, "%s", diag_buf);
    pass_plan pl = pass_pipeline(&ar, m->funcs[0], true);
    ck_assert_int_eq(pl.schedule->nkernels, 5);
    ck_assert_int_eq(pl.mem->arena_bytes_unshared, 4 * 64 * 64 * 4);
    ck_assert_int_eq(pl.mem->arena_bytes, 2 * 64 * 64 * 4);
    /* a value read at the end (returned as a view: copied out last) keeps its slot */
    m = compile_source(&ar, &src, "t",
                       "export fn f(x: f32[64, 64]) {\n    a = softmax(x, 1)\n    b = softmax(a, 0)\n"
                       "    c = softmax(b, 1)\n    return c, a.T\n}\n",
                       0, NULL, diag_buf, sizeof diag_buf);
    ck_assert_msg(m != NULL, "%s", diag_buf);
    pl = pass_pipeline(&ar, m->funcs[0], true);
    const ir_func *f = m->funcs[0];
    int a = f->nodes[f->outs[1]].storage;
    ck_assert_int_eq(pl.mem->mem[a].kind, MEM_ARENA);
    for (int i = 0; i < f->nnodes; i++)
        if (i != a && pl.mem->mem[i].kind == MEM_ARENA)
            ck_assert(!overlap(pl.mem->mem[i].offset, pl.mem->mem[i].bytes, pl.mem->mem[a].offset, pl.mem->mem[a].bytes));
}
END_TEST

START_TEST(elementwise_kernels_write_over_their_input)
{
    /* relu(x @ W + b) overwrites the matmul's output, which nothing reads afterwards; the
     * second matmul cannot (not elementwise), and h.T read later keeps h from being overwritten */
    ir_module *m = compile_source(&ar, &src, "t",
                                  "param W: f32[64, 256]\nparam b: f32[256]\nparam V: f32[256, 10]\n"
                                  "export fn f(x: f32[64, 64]) {\n    h = relu(x @ W + b)\n    return h @ V\n}\n"
                                  "export fn g(x: f32[64, 64]) {\n    a = x @ W\n    h = relu(a)\n"
                                  "    return h @ V, a.T\n}\n",
                                  0, NULL, diag_buf, sizeof diag_buf);
    ck_assert_msg(m != NULL, "%s", diag_buf);
    pass_plan pl = pass_pipeline(&ar, ir_module_find(m, "f"), true);
    ck_assert_int_eq(pl.schedule->nkernels, 3);
    int mm = pl.schedule->kernels[0].root, relu = pl.schedule->kernels[1].root;
    ck_assert_int_eq(pl.mem->mem[relu].kind, MEM_ARENA);
    ck_assert_int_eq(pl.mem->mem[relu].offset, pl.mem->mem[mm].offset);
    ck_assert_int_eq(pl.mem->arena_bytes, 64 * 256 * 4);   /* one slot for both */
    const ir_func *g = ir_module_find(m, "g");
    pl = pass_pipeline(&ar, g, true);
    mm = pl.schedule->kernels[0].root, relu = pl.schedule->kernels[1].root;
    ck_assert(!overlap(pl.mem->mem[mm].offset, pl.mem->mem[mm].bytes, pl.mem->mem[relu].offset,
                       pl.mem->mem[relu].bytes));   /* a is copied out at the end */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memplan");
    TCase *tc = tcase_create("reuse");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, no_two_live_values_share_bytes);
    tcase_add_test(tc, a_chain_needs_two_slots);
    tcase_add_test(tc, elementwise_kernels_write_over_their_input);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
