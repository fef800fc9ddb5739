/* The tdsl grammar (spec section 3). Each action is one builder call from
 * frontend/ast_build.h; error rules resynchronise at a statement separator or a
 * block's `}` so one file can report several syntax errors. The only exported
 * function is parse_file (frontend/ast.h). */
%define api.pure full
%define api.prefix {tdsl_yy}
%locations
%define parse.error custom
%define parse.lac full
%param {yyscan_t scanner}
%parse-param {parse_ctx *pc}
%expect 0

%code requires {
#include "frontend/ast_build.h"
#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

typedef struct parse_bracket { char c; int line, col; } parse_bracket;

/* Shared by the lexer (as its extra data) and the parser's actions. */
typedef struct parse_ctx {
    arena *ar;
    const src_file *file;
    int line, col;              /* position of the next unread byte */
    size_t off;
    size_t tok_off, tok_len;    /* the last token's bytes in file->text */
    int last_tok;               /* last token returned, 0 before the first */
    int end_line, end_col;      /* just past the last token other than NEWLINE */
    bool eof_newline;           /* the NEWLINE ending an unterminated last line was sent */
    parse_bracket *br;          /* open brackets, innermost last */
    int nbr, capbr;
    bool mismatch;              /* the last token closed over an unclosed opener: */
    parse_bracket unclosed;     /*   this one */
    int lex_error_line;         /* line of the last lexical error (0: none) */
    bool stop;                  /* too many errors: the lexer ends the input */
    ast_file *result;
} parse_ctx;
}

%code provides {
#ifndef YYSTYPE
#define YYSTYPE TDSL_YYSTYPE
#endif
#ifndef YYLTYPE
#define YYLTYPE TDSL_YYLTYPE
#endif
}

%code {
#include <limits.h>
#include <string.h>
#include "lexer.h"

#define AR pc->ar
#define LOC(l) src_loc_make(pc->file, (l).first_line, (l).first_column)

static void yyerror(const YYLTYPE *loc, yyscan_t scanner, parse_ctx *pc, const char *msg);
static ast_arg_list *args_push(parse_ctx *pc, ast_arg_list *list, ast_arg a);
}

%union {
    int64_t ival;
    double fval;
    const char *str;
    int op;
    ast_expr *expr;
    ast_stmt *stmt;
    ast_decl *decl;
    ast_arg arg;
    ast_param_decl param;
    ast_expr_list *exprs;
    ast_arg_list *args;
    ast_stmt_list *stmts;
    ast_name_list *names;
    ast_param_list *params;
    ast_grad_block *grad;
    ast_file *file;
}

%token <str> IDENT "identifier"
%token <ival> INT "integer"
%token <fval> FLOAT "number"
%token <str> STRING "string"
%token <op> AUGOP "'+='"
%token NEWLINE "end of line"
%token CONST "'const'" PARAM "'param'" FN "'fn'" EXPORT "'export'" RETURN "'return'"
%token FOR "'for'" IN "'in'" GRAD "'grad'" TRUE "'true'" FALSE "'false'" NONE "'none'"
%token EQ "'=='" NE "'!='" LE "'<='" GE "'>='" POW "'**'" ARROW "'->'"
%token ELLIPSIS "'...'" DOTDOT "'..'"

%left '|'
%left '&'
%nonassoc EQ NE '<' LE '>' GE
%left '+' '-'
%left '*' '/' '%'
%left '@'

%type <file> top_items
%type <decl> decl fn_decl
%type <grad> grad_block
%type <params> fn_params param_list grad_params
%type <param> fn_param
%type <expr> type ret_type expr unary power postfix primary index_item slice opt_expr
%type <exprs> type_list expr_list index_list
%type <args> args arg_list
%type <arg> arg
%type <stmts> block stmt_items
%type <stmt> stmt
%type <names> targets

%initial-action {
    @$.first_line = @$.last_line = 1;
    @$.first_column = @$.last_column = 1;
}

%%

file
    : top_items                         { pc->result = $1; }
    ;

/* Declarations, each ended by a separator (the lexer ends the last line). */
top_items
    : %empty                            { $$ = ast_new_file(AR, pc->file); }
    | top_items sep                     { $$ = $1; }
    | top_items decl sep                { $$ = ast_file_add(AR, $1, $2); }
    | top_items error sep               { $$ = $1; yyerrok; }
    | top_items error block grad_block sep
                                        { $$ = $1; yyerrok; }   /* a bad fn header: skip its body */
    ;

sep : NEWLINE | ';' ;

decl
    : CONST IDENT '=' expr              { $$ = ast_new_const(AR, $2, LOC(@2), $4, LOC(@1)); }
    | PARAM IDENT ':' type              { $$ = ast_new_param(AR, $2, LOC(@2), $4, NULL, LOC(@1)); }
    | PARAM IDENT ':' type '=' expr     { $$ = ast_new_param(AR, $2, LOC(@2), $4, $6, LOC(@1)); }
    | fn_decl                           { $$ = $1; }
    | EXPORT fn_decl                    { $$ = ast_decl_export($2, LOC(@1)); }
    | EXPORT IDENT '=' expr             { $$ = ast_new_export(AR, $2, LOC(@2), $4, LOC(@1)); }
    ;

fn_decl
    : FN IDENT '(' fn_params ')' ret_type block grad_block
                                        { $$ = ast_new_fn(AR, $2, LOC(@2), $4, $6, $7, $8, LOC(@1)); }
    ;

fn_params
    : %empty                            { $$ = NULL; }
    | param_list                        { $$ = $1; }
    | param_list ','                    { $$ = $1; }
    ;

param_list
    : fn_param                          { $$ = ast_param_list_push(AR, NULL, $1); }
    | param_list ',' fn_param           { $$ = ast_param_list_push(AR, $1, $3); }
    ;

fn_param
    : IDENT                             { $$ = ast_make_param_decl($1, NULL, LOC(@1)); }
    | IDENT ':' type                    { $$ = ast_make_param_decl($1, $3, LOC(@1)); }
    ;

ret_type
    : %empty                            { $$ = NULL; }
    | ARROW type                        { $$ = $2; }
    | ARROW '(' type_list ')'           { $$ = ast_new_list(AR, AST_TUPLE, $3, LOC(@2)); }
    ;

type_list
    : type                              { $$ = ast_expr_list_push(AR, NULL, $1); }
    | type_list ',' type                { $$ = ast_expr_list_push(AR, $1, $3); }
    ;

/* f32, f32[], f32[B, 784]: the dtype is a plain name, checked by the lowering */
type
    : IDENT                             { $$ = ast_new_type(AR, $1, NULL, false, LOC(@1)); }
    | IDENT '[' ']'                     { $$ = ast_new_type(AR, $1, NULL, true, LOC(@1)); }
    | IDENT '[' expr_list opt_comma ']' { $$ = ast_new_type(AR, $1, $3, true, LOC(@1)); }
    ;

grad_block
    : %empty                            { $$ = NULL; }
    | GRAD '(' grad_params ')' block    { $$ = ast_new_grad_block(AR, $3, $5, LOC(@1)); }
    ;

grad_params
    : IDENT                             { $$ = ast_param_list_push(AR, NULL, ast_make_param_decl($1, NULL, LOC(@1))); }
    | grad_params ',' IDENT             { $$ = ast_param_list_push(AR, $1, ast_make_param_decl($3, NULL, LOC(@3))); }
    ;

/* A block: statements separated by newlines or `;`; the last needs no separator. */
block
    : '{' stmt_items '}'                { $$ = $2; }
    | '{' stmt_items stmt '}'           { $$ = ast_stmt_list_push(AR, $2, $3); }
    | '{' stmt_items error '}'          { $$ = $2; yyerrok; }
    ;

stmt_items
    : %empty                            { $$ = NULL; }
    | stmt_items sep                    { $$ = $1; }
    | stmt_items stmt sep               { $$ = ast_stmt_list_push(AR, $1, $2); }
    | stmt_items error sep              { $$ = $1; yyerrok; }
    | stmt_items error block sep        { $$ = $1; yyerrok; }   /* a bad for header: skip its body */
    ;

stmt
    : targets '=' expr                  { $$ = ast_new_assign(AR, $1, $3, LOC(@1)); }
    | IDENT AUGOP expr                  { $$ = ast_new_augassign(AR, $1, LOC(@1), (ast_binop)$2, $3, LOC(@1)); }
    | RETURN expr_list                  { $$ = ast_new_return(AR, $2, LOC(@1)); }
    | FOR IDENT IN expr DOTDOT expr block
                                        { $$ = ast_new_for(AR, $2, $4, $6, $7, LOC(@1)); }
    | expr                              { $$ = ast_new_expr_stmt(AR, $1, LOC(@1)); }
    ;

targets
    : IDENT                             { $$ = ast_name_list_push(AR, NULL, $1, LOC(@1)); }
    | targets ',' IDENT                 { $$ = ast_name_list_push(AR, $1, $3, LOC(@3)); }
    ;

/* ---- expressions: binary levels by precedence; unary, ** and postfix by rules
 * (`-x**2` is -(x**2), `2**-1` is allowed, ** is right-associative). */
expr
    : unary                             { $$ = $1; }
    | expr '|' expr                     { $$ = ast_new_binary(AR, BIN_OR, $1, $3, LOC(@2)); }
    | expr '&' expr                     { $$ = ast_new_binary(AR, BIN_AND, $1, $3, LOC(@2)); }
    | expr EQ expr                      { $$ = ast_new_binary(AR, BIN_EQ, $1, $3, LOC(@2)); }
    | expr NE expr                      { $$ = ast_new_binary(AR, BIN_NE, $1, $3, LOC(@2)); }
    | expr '<' expr                     { $$ = ast_new_binary(AR, BIN_LT, $1, $3, LOC(@2)); }
    | expr LE expr                      { $$ = ast_new_binary(AR, BIN_LE, $1, $3, LOC(@2)); }
    | expr '>' expr                     { $$ = ast_new_binary(AR, BIN_GT, $1, $3, LOC(@2)); }
    | expr GE expr                      { $$ = ast_new_binary(AR, BIN_GE, $1, $3, LOC(@2)); }
    | expr '+' expr                     { $$ = ast_new_binary(AR, BIN_ADD, $1, $3, LOC(@2)); }
    | expr '-' expr                     { $$ = ast_new_binary(AR, BIN_SUB, $1, $3, LOC(@2)); }
    | expr '*' expr                     { $$ = ast_new_binary(AR, BIN_MUL, $1, $3, LOC(@2)); }
    | expr '/' expr                     { $$ = ast_new_binary(AR, BIN_DIV, $1, $3, LOC(@2)); }
    | expr '%' expr                     { $$ = ast_new_binary(AR, BIN_MOD, $1, $3, LOC(@2)); }
    | expr '@' expr                     { $$ = ast_new_binary(AR, BIN_MATMUL, $1, $3, LOC(@2)); }
    ;

unary
    : power                             { $$ = $1; }
    | '-' unary                         { $$ = ast_new_unary(AR, '-', $2, LOC(@1)); }
    | '!' unary                         { $$ = ast_new_unary(AR, '!', $2, LOC(@1)); }
    ;

power
    : postfix                           { $$ = $1; }
    | postfix POW unary                 { $$ = ast_new_binary(AR, BIN_POW, $1, $3, LOC(@2)); }
    ;

postfix
    : primary                           { $$ = $1; }
    | postfix '.' IDENT                 { $$ = ast_new_field(AR, $1, $3, LOC(@1)); }
    | postfix '.' IDENT '(' args ')'    { $$ = ast_new_method(AR, $1, $3, $5, LOC(@1)); }
    | postfix '[' index_list ']'        { $$ = ast_new_index(AR, $1, $3, LOC(@1)); }
    ;

primary
    : INT                               { $$ = ast_new_int(AR, $1, LOC(@1)); }
    | FLOAT                             { $$ = ast_new_float(AR, $1, LOC(@1)); }
    | TRUE                              { $$ = ast_new_bool(AR, true, LOC(@1)); }
    | FALSE                             { $$ = ast_new_bool(AR, false, LOC(@1)); }
    | NONE                              { $$ = ast_new_expr(AR, AST_NONE, LOC(@1)); }
    | STRING                            { $$ = ast_new_string(AR, AST_STRING, $1, LOC(@1)); }
    | IDENT                             { $$ = ast_new_string(AR, AST_NAME, $1, LOC(@1)); }
    | IDENT '(' args ')'                { $$ = ast_new_call(AR, $1, $3, LOC(@1)); }
    | GRAD '(' args ')'                 { $$ = ast_new_call(AR, "grad", $3, LOC(@1)); }
    | '(' expr ')'                      { $$ = $2; }
    | '[' ']'                           { $$ = ast_new_list(AR, AST_LIST, NULL, LOC(@1)); }
    | '[' expr_list opt_comma ']'       { $$ = ast_new_list(AR, AST_LIST, $2, LOC(@1)); }
    ;

opt_comma : %empty | ',' ;

expr_list
    : expr                              { $$ = ast_expr_list_push(AR, NULL, $1); }
    | expr_list ',' expr                { $$ = ast_expr_list_push(AR, $1, $3); }
    ;

args
    : %empty                            { $$ = NULL; }
    | arg_list opt_comma                { $$ = $1; }
    ;

arg_list
    : arg                               { $$ = args_push(pc, NULL, $1); }
    | arg_list ',' arg                  { $$ = args_push(pc, $1, $3); }
    ;

arg
    : expr                              { $$ = ast_make_arg(NULL, $1, LOC(@1)); }
    | IDENT '=' expr                    { $$ = ast_make_arg($1, $3, LOC(@1)); }
    ;

index_list
    : index_item                        { $$ = ast_expr_list_push(AR, NULL, $1); }
    | index_list ',' index_item         { $$ = ast_expr_list_push(AR, $1, $3); }
    ;

index_item
    : expr                              { $$ = $1; }
    | ELLIPSIS                          { $$ = ast_new_expr(AR, AST_ELLIPSIS, LOC(@1)); }
    | slice                             { $$ = $1; }
    ;

slice
    : opt_expr ':' opt_expr             { $$ = ast_new_slice(AR, $1, $3, NULL, $1 ? LOC(@1) : LOC(@2)); }
    | opt_expr ':' opt_expr ':' opt_expr
                                        { $$ = ast_new_slice(AR, $1, $3, $5, $1 ? LOC(@1) : LOC(@2)); }
    ;

opt_expr
    : %empty                            { $$ = NULL; }
    | expr                              { $$ = $1; }
    ;

%%

/* ---- diagnostics */

/* Keyword arguments come after positional ones (the AST relies on it). */
static ast_arg_list *args_push(parse_ctx *pc, ast_arg_list *list, ast_arg a)
{
    if (!a.name && list && list->n > 0 && list->items[list->n - 1].name) {
        diag_error(a.loc, "positional argument after keyword argument '%s'", list->items[list->n - 1].name);
        if (diag_error_count() >= diag_global.max_errors)
            pc->stop = true;
    }
    return ast_arg_list_push(pc->ar, list, a);
}

static void yyerror(const YYLTYPE *loc, yyscan_t scanner, parse_ctx *pc, const char *msg)
{
    (void)scanner;
    /* the only message left to yyerror is bison's "memory exhausted": its stack is full */
    if (strstr(msg, "exhausted"))
        diag_error(LOC(*loc), "nesting is too deep for the parser");
    else
        diag_error(LOC(*loc), "%s", msg);
    pc->stop = true;
}

/* What the user typed, for "unexpected ...": the token's own text where it helps. */
static void describe_token(parse_ctx *pc, yysymbol_kind_t tok, char *buf, size_t cap)
{
    const char *text = pc->file->text ? pc->file->text + pc->tok_off : "";
    int n = (int)(pc->tok_len > 32 ? 32 : pc->tok_len);
    const char *more = pc->tok_len > 32 ? "..." : "";
    switch (tok) {
    case YYSYMBOL_YYEOF: snprintf(buf, cap, "end of file"); break;
    case YYSYMBOL_NEWLINE: snprintf(buf, cap, pc->tok_len ? "end of line" : "end of file"); break;
    case YYSYMBOL_IDENT: snprintf(buf, cap, "identifier '%.*s%s'", n, text, more); break;
    case YYSYMBOL_INT:
    case YYSYMBOL_FLOAT: snprintf(buf, cap, "number '%.*s%s'", n, text, more); break;
    case YYSYMBOL_STRING: snprintf(buf, cap, "string %.*s%s", n, text, more); break;
    case YYSYMBOL_AUGOP: snprintf(buf, cap, "'%.*s'", n, text); break;
    default: snprintf(buf, cap, "%s", yysymbol_name(tok)); break;
    }
}

static int char_sym(int c) { return YYTRANSLATE(c); }

/* What the parser wanted, condensed: "an expression" instead of a dozen tokens. */
static void describe_expected(const yysymbol_kind_t *exp, int n, bool at_eof, char *buf, size_t cap)
{
    bool has[YYNTOKENS] = {false};
    for (int i = 0; i < n; i++)
        if (exp[i] >= 0 && exp[i] < YYNTOKENS)
            has[exp[i]] = true;
    static const int expr_start[] = {YYSYMBOL_IDENT, YYSYMBOL_INT, YYSYMBOL_FLOAT, YYSYMBOL_STRING,
                                     YYSYMBOL_TRUE, YYSYMBOL_FALSE, YYSYMBOL_NONE, YYSYMBOL_GRAD};
    static const char expr_start_ch[] = "([-!";
    static const int ops[] = {YYSYMBOL_EQ, YYSYMBOL_NE, YYSYMBOL_LE, YYSYMBOL_GE, YYSYMBOL_POW, YYSYMBOL_AUGOP};
    static const char ops_ch[] = "|&<>+-*/%@.[(";
    const char *parts[8];
    int np = 0;
    buf[0] = 0;
    if (at_eof && has[char_sym('}')]) {   /* the one thing that can end the file here */
        snprintf(buf, cap, "'}'");
        return;
    }

    if (has[YYSYMBOL_CONST] && has[YYSYMBOL_FN]) {
        parts[np++] = "a declaration ('const', 'param', 'fn' or 'export')";
        has[YYSYMBOL_CONST] = has[YYSYMBOL_PARAM] = has[YYSYMBOL_FN] = has[YYSYMBOL_EXPORT] = false;
        has[YYSYMBOL_NEWLINE] = has[YYTRANSLATE(';')] = has[YYSYMBOL_YYEOF] = false;
    }
    if (has[YYSYMBOL_INT] && has[YYTRANSLATE('(')] && has[YYTRANSLATE('-')]) {
        if (has[YYSYMBOL_RETURN] && has[YYSYMBOL_FOR]) {
            parts[np++] = "a statement";
            has[YYSYMBOL_RETURN] = has[YYSYMBOL_FOR] = false;
        } else {
            parts[np++] = "an expression";
        }
        for (size_t i = 0; i < sizeof expr_start / sizeof expr_start[0]; i++)
            has[expr_start[i]] = false;
        for (const char *c = expr_start_ch; *c; c++)
            has[char_sym((unsigned char)*c)] = false;
    }
    /* after a complete expression every operator could follow: not worth listing */
    if (has[YYTRANSLATE('+')] && has[YYTRANSLATE('*')]) {
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            has[ops[i]] = false;
        for (const char *c = ops_ch; *c; c++)
            has[char_sym((unsigned char)*c)] = false;
    }
    if (has[YYTRANSLATE(')')])      /* `f(x` then junk: the '=' of a keyword argument is noise */
        has[YYTRANSLATE('=')] = false;
    if (has[YYSYMBOL_NEWLINE]) {    /* "end of line" stands for every way to end a statement */
        has[YYTRANSLATE(';')] = false;
        has[YYTRANSLATE('}')] = false;
        has[YYSYMBOL_YYEOF] = false;
    }
    for (int k = 0; k < YYNTOKENS; k++) {
        if (!has[k] || k == YYSYMBOL_YYerror || k == YYSYMBOL_YYUNDEF)
            continue;
        if (np == 5)
            return;   /* too many to be useful */
        switch (k) {
        case YYSYMBOL_IDENT: parts[np++] = "a name"; break;
        case YYSYMBOL_INT: parts[np++] = "an integer"; break;
        case YYSYMBOL_FLOAT: parts[np++] = "a number"; break;
        case YYSYMBOL_STRING: parts[np++] = "a string"; break;
        default: parts[np++] = yysymbol_name((yysymbol_kind_t)k); break;
        }
    }
    size_t len = 0;
    for (int i = 0; i < np && len < cap; i++) {
        const char *sepr = i == 0 ? "" : i == np - 1 ? " or " : ", ";
        int w = snprintf(buf + len, cap - len, "%s%s", sepr, parts[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

static bool is_keyword(yysymbol_kind_t k)
{
    switch (k) {
    case YYSYMBOL_CONST: case YYSYMBOL_PARAM: case YYSYMBOL_FN: case YYSYMBOL_EXPORT:
    case YYSYMBOL_RETURN: case YYSYMBOL_FOR: case YYSYMBOL_IN: case YYSYMBOL_GRAD:
    case YYSYMBOL_TRUE: case YYSYMBOL_FALSE: case YYSYMBOL_NONE:
        return true;
    default:
        return false;
    }
}

static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, parse_ctx *pc)
{
    (void)scanner;
    yysymbol_kind_t tok = yypcontext_token(ctx);
    src_loc loc = LOC(*yypcontext_location(ctx));
    /* a bad character was dropped on this line: what follows is its echo */
    if (pc->lex_error_line == loc.line)
        return 0;
    yysymbol_kind_t exp[YYNTOKENS];
    int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
    if (n < 0)
        n = 0;
    bool has_ident = false, has_newline = false, has_decl = false;
    for (int i = 0; i < n; i++) {
        has_ident |= exp[i] == YYSYMBOL_IDENT;
        has_newline |= exp[i] == YYSYMBOL_NEWLINE;
        has_decl |= exp[i] == YYSYMBOL_CONST;
    }

    char what[96], wanted[256];
    describe_token(pc, tok, what, sizeof what);
    bool at_eof = tok == YYSYMBOL_YYEOF || (tok == YYSYMBOL_NEWLINE && pc->tok_len == 0);
    describe_expected(exp, n, at_eof, wanted, sizeof wanted);
    const char *kwnote = "";
    char kwbuf[96];
    if (is_keyword(tok) && has_ident) {
        snprintf(kwbuf, sizeof kwbuf, " (%s is a keyword, not a name)", yysymbol_name(tok));
        kwnote = kwbuf;
    }
    if (wanted[0])
        diag_error(loc, "unexpected %s, expected %s%s", what, wanted, kwnote);
    else
        diag_error(loc, "unexpected %s%s", what, kwnote);

    /* cheap hints */
    if (pc->mismatch)
        diag_note(src_loc_make(pc->file, pc->unclosed.line, pc->unclosed.col),
                  "this '%c' is not closed", pc->unclosed.c);
    else if (at_eof && pc->nbr > 0)
        diag_note(src_loc_make(pc->file, pc->br[pc->nbr - 1].line, pc->br[pc->nbr - 1].col),
                  "this '%c' is not closed", pc->br[pc->nbr - 1].c);
    else if (tok == YYSYMBOL_GRAD && has_newline)
        diag_note(loc, "a custom gradient 'grad (dy) { ... }' must follow the closing '}' of a fn");
    else if (tok == YYSYMBOL_EQ || tok == YYSYMBOL_NE || tok == YYSYMBOL_LE || tok == YYSYMBOL_GE ||
             tok == YYTRANSLATE('<') || tok == YYTRANSLATE('>'))
        diag_note(loc, "comparisons do not chain: write (a < b) & (b < c)");
    else if (tok == YYSYMBOL_IDENT && has_decl)
        diag_note(loc, "statements go inside a fn body");

    if (diag_error_count() >= diag_global.max_errors)
        pc->stop = true;
    return 0;
}

/* Deeper trees are rejected here so that later passes may recurse freely. */
#define AST_MAX_DEPTH 512

ast_file *parse_file(arena *ar, const src_file *file)
{
    int errors_before = diag_error_count();
    parse_ctx pc;
    memset(&pc, 0, sizeof pc);
    pc.ar = ar;
    pc.file = file;
    pc.line = pc.col = 1;
    size_t len = file->text ? file->len : 0;
    if (len > INT_MAX / 2) {
        diag_error(src_loc_make(file, 0, 0), "file is too large (%zu bytes)", len);
        return NULL;
    }
    yyscan_t scanner;
    if (tdsl_yylex_init_extra(&pc, &scanner) != 0) {
        diag_error(src_loc_make(file, 0, 0), "out of memory starting the lexer");
        return NULL;
    }
    YY_BUFFER_STATE buf = tdsl_yy_scan_bytes(file->text ? file->text : "", (int)len, scanner);
    int rc = tdsl_yyparse(scanner, &pc);
    tdsl_yy_delete_buffer(buf, scanner);
    tdsl_yylex_destroy(scanner);
    if (rc != 0 || diag_error_count() != errors_before || !pc.result)
        return NULL;
    src_loc where;
    if (ast_too_deep(pc.result, AST_MAX_DEPTH, &where)) {
        diag_error(where, "expression or block nested more than %d levels deep", AST_MAX_DEPTH);
        return NULL;
    }
    return pc.result;
}
