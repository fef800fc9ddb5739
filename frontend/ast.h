/* The AST: what the parser builds, one node kind per syntactic form. Sugar stays
 * visible (method calls, x.T, +=) so `dump --stage ast` shows the source's shape;
 * the lowering (frontend/lower.c) gives it meaning. All nodes live in one arena. */
#ifndef TDSL_AST_H
#define TDSL_AST_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "../common/arena.h"
#include "../common/diag.h"

typedef struct ast_expr ast_expr;
typedef struct ast_stmt ast_stmt;

typedef enum {
    AST_INT,       /* ival */
    AST_FLOAT,     /* fval */
    AST_BOOL,      /* ival 0/1 */
    AST_STRING,    /* str */
    AST_NONE,      /* `none` (custom gradient results) */
    AST_NAME,      /* str */
    AST_LIST,      /* [items...] */
    AST_TUPLE,     /* a, b (in return and unpacking; also parenthesized result types) */
    AST_UNARY,     /* op: '-' or '!'; kids[0] */
    AST_BINARY,    /* op: one of the binop codes below; kids[0], kids[1] */
    AST_CALL,      /* callee name in str; args (positional then keyword) */
    AST_METHOD,    /* receiver kids[0], method name in str, args: x.f(a) */
    AST_FIELD,     /* receiver kids[0], field name in str: x.T, x.shape */
    AST_INDEX,     /* base kids[0], items: expressions, AST_SLICE or AST_ELLIPSIS */
    AST_SLICE,     /* kids[0..2] = start, stop, step (each may be NULL) */
    AST_ELLIPSIS,  /* ... */
    AST_TYPE,      /* a type used as a value: f32, f32[3, 4]; str = dtype name, items = dims
                      (items NULL/nitems 0 for a scalar; has_dims tells `f32[]` apart) */
} ast_expr_kind;

typedef enum {
    BIN_OR, BIN_AND, BIN_EQ, BIN_NE, BIN_LT, BIN_LE, BIN_GT, BIN_GE,
    BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_MOD, BIN_MATMUL, BIN_POW
} ast_binop;
const char *ast_binop_str(ast_binop op);           /* "+", "@", "**" ... */

typedef struct ast_arg {      /* call argument: positional (name NULL) or keyword */
    const char *name;
    ast_expr *value;
    src_loc loc;
} ast_arg;

struct ast_expr {
    ast_expr_kind kind;
    src_loc loc;              /* first character of the expression (operator for binary) */
    int op;                   /* unary: '-' '!'; binary: ast_binop */
    int64_t ival;
    double fval;
    const char *str;
    bool has_dims;
    ast_expr *kids[3];
    int nitems;
    ast_expr **items;
    int nargs;
    ast_arg *args;
};

typedef enum {
    STMT_ASSIGN,      /* targets (names) = value; ntargets > 1 unpacks a tuple */
    STMT_AUGASSIGN,   /* targets[0] op= value; op is an ast_binop */
    STMT_RETURN,      /* value: an expr or AST_TUPLE */
    STMT_FOR,         /* for var in lo..hi { body } */
    STMT_EXPR,        /* a bare expression (an error for the lowering: it has no effect) */
} ast_stmt_kind;

struct ast_stmt {
    ast_stmt_kind kind;
    src_loc loc;
    int ntargets;
    const char **targets;
    src_loc *target_locs;
    int op;
    ast_expr *value;
    const char *var;          /* for */
    ast_expr *lo, *hi;        /* for */
    int nbody;
    ast_stmt **body;
};

typedef struct ast_param_decl {   /* function argument: name, optional type */
    const char *name;
    ast_expr *type;               /* AST_TYPE or NULL (generic helper) */
    src_loc loc;
} ast_param_decl;

typedef enum {
    DECL_CONST,       /* const name = value */
    DECL_PARAM,       /* param name: type (= init)? ; init may be NULL */
    DECL_FN,          /* (export)? fn name(params) (-> type)? { body } (grad (dy...) { body })? */
    DECL_EXPORT,      /* export name = value  (grad(...), sgd(...), adam(...), adamw(...)) */
} ast_decl_kind;

typedef struct ast_decl {
    ast_decl_kind kind;
    src_loc loc;
    const char *name;
    src_loc name_loc;
    bool exported;            /* DECL_FN */
    ast_expr *type;           /* DECL_PARAM: AST_TYPE; DECL_FN: result type or NULL */
    ast_expr *value;          /* DECL_CONST, DECL_EXPORT value; DECL_PARAM initializer */
    int nparams;
    ast_param_decl *params;
    int nbody;
    ast_stmt **body;
    /* custom gradient block, if any */
    bool has_grad;
    src_loc grad_loc;
    int ngrad_params;
    ast_param_decl *grad_params;
    int ngrad_body;
    ast_stmt **grad_body;
} ast_decl;

typedef struct ast_file {
    const src_file *file;
    int ndecls;
    ast_decl **decls;
} ast_file;

/* Parses a whole file. Syntax errors are reported through diag (several per file where
 * the parser can recover); returns NULL if there were any. (grammar/parser.y) */
ast_file *parse_file(arena *ar, const src_file *file);

/* Prints the AST as an indented tree (`tdslc dump --stage ast`). (frontend/ast.c) */
void ast_print(FILE *out, const ast_file *f);

#endif
