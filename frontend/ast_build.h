/* AST builders: what the grammar's actions call, one call per action, so that
 * grammar/parser.y stays a thin list of rules. Everything lives in the arena;
 * the growable lists below exist only while parsing and are flattened into the
 * AST's (pointer, count) pairs by the node builders. A NULL list is empty. */
#ifndef TDSL_AST_BUILD_H
#define TDSL_AST_BUILD_H
#include "ast.h"

typedef struct ast_expr_list { ast_expr **items; int n, cap; } ast_expr_list;
typedef struct ast_arg_list { ast_arg *items; int n, cap; } ast_arg_list;
typedef struct ast_stmt_list { ast_stmt **items; int n, cap; } ast_stmt_list;
typedef struct ast_name_list { const char **names; src_loc *locs; int n, cap, ncap; } ast_name_list;
typedef struct ast_param_list { ast_param_decl *items; int n, cap; } ast_param_list;

/* `grad (dy, ...) { body }` after a fn, before it is attached to the fn. */
typedef struct ast_grad_block {
    src_loc loc;
    ast_param_list *params;
    ast_stmt_list *body;
} ast_grad_block;

/* ---- lists: push returns the list (a new one when `list` is NULL) */
ast_expr_list *ast_expr_list_push(arena *ar, ast_expr_list *list, ast_expr *e);
ast_arg_list *ast_arg_list_push(arena *ar, ast_arg_list *list, ast_arg a);
ast_stmt_list *ast_stmt_list_push(arena *ar, ast_stmt_list *list, ast_stmt *s);
ast_name_list *ast_name_list_push(arena *ar, ast_name_list *list, const char *name, src_loc loc);
ast_param_list *ast_param_list_push(arena *ar, ast_param_list *list, ast_param_decl p);

/* ---- expressions */
ast_expr *ast_new_expr(arena *ar, ast_expr_kind kind, src_loc loc);
ast_expr *ast_new_int(arena *ar, int64_t v, src_loc loc);
ast_expr *ast_new_float(arena *ar, double v, src_loc loc);
ast_expr *ast_new_bool(arena *ar, bool v, src_loc loc);
ast_expr *ast_new_string(arena *ar, ast_expr_kind kind, const char *s, src_loc loc); /* NAME, STRING */
ast_expr *ast_new_unary(arena *ar, int op, ast_expr *x, src_loc loc);
ast_expr *ast_new_binary(arena *ar, ast_binop op, ast_expr *a, ast_expr *b, src_loc loc);
ast_expr *ast_new_call(arena *ar, const char *callee, ast_arg_list *args, src_loc loc);
ast_expr *ast_new_method(arena *ar, ast_expr *recv, const char *name, ast_arg_list *args, src_loc loc);
ast_expr *ast_new_field(arena *ar, ast_expr *recv, const char *name, src_loc loc);
ast_expr *ast_new_index(arena *ar, ast_expr *base, ast_expr_list *items, src_loc loc);
ast_expr *ast_new_slice(arena *ar, ast_expr *start, ast_expr *stop, ast_expr *step, src_loc loc);
ast_expr *ast_new_list(arena *ar, ast_expr_kind kind, ast_expr_list *items, src_loc loc); /* LIST, TUPLE */
ast_expr *ast_new_type(arena *ar, const char *dtype, ast_expr_list *dims, bool has_dims, src_loc loc);
ast_arg ast_make_arg(const char *name, ast_expr *value, src_loc loc);

/* ---- statements */
ast_stmt *ast_new_assign(arena *ar, ast_name_list *targets, ast_expr *value, src_loc loc);
ast_stmt *ast_new_augassign(arena *ar, const char *target, src_loc target_loc, ast_binop op,
                            ast_expr *value, src_loc loc);
/* One value is returned as is; several become an AST_TUPLE. */
ast_stmt *ast_new_return(arena *ar, ast_expr_list *values, src_loc loc);
ast_stmt *ast_new_for(arena *ar, const char *var, ast_expr *lo, ast_expr *hi, ast_stmt_list *body,
                      src_loc loc);
ast_stmt *ast_new_expr_stmt(arena *ar, ast_expr *e, src_loc loc);

/* ---- declarations */
ast_param_decl ast_make_param_decl(const char *name, ast_expr *type, src_loc loc);
ast_grad_block *ast_new_grad_block(arena *ar, ast_param_list *params, ast_stmt_list *body, src_loc loc);
ast_decl *ast_new_const(arena *ar, const char *name, src_loc name_loc, ast_expr *value, src_loc loc);
ast_decl *ast_new_param(arena *ar, const char *name, src_loc name_loc, ast_expr *type, ast_expr *init,
                        src_loc loc);
ast_decl *ast_new_fn(arena *ar, const char *name, src_loc name_loc, ast_param_list *params,
                     ast_expr *result, ast_stmt_list *body, ast_grad_block *grad, src_loc loc);
ast_decl *ast_decl_export(ast_decl *fn, src_loc loc);   /* `export fn`: marks it, loc = `export` */
ast_decl *ast_new_export(arena *ar, const char *name, src_loc name_loc, ast_expr *value, src_loc loc);
ast_file *ast_new_file(arena *ar, const src_file *file);
ast_file *ast_file_add(arena *ar, ast_file *f, ast_decl *d);

/* Nesting deeper than `limit` (expressions in expressions, blocks in blocks)?
 * Sets *where to the first node past the limit. Recursion stops at the limit, so
 * this is safe on any tree; later passes recurse freely on trees it accepted. */
bool ast_too_deep(const ast_file *f, int limit, src_loc *where);

#endif
