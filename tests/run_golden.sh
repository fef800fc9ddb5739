#!/usr/bin/env bash
# Golden, diagnostics and command-line tests over a built tdslc.
#
#   bash tests/run_golden.sh path/to/tdslc            run every case
#   UPDATE=1 bash tests/run_golden.sh path/to/tdslc   rewrite the expected files (review the diff!)
#
# Cases (one line each, then a summary line `N passed, M failed`; exit 1 on any failure):
#   golden  tests/golden/X.tdsl: `dump --stage ir` equals X.ir, `--stage layout` equals
#           X.layout; X.ir parses and prints back to itself, and gives X.layout again.
#   diag    tests/diag/X.tdsl (or X.ir): `check` exits 1, prints nothing on stdout, and its
#           stderr equals X.expected; every diagnostic has file:line:col, source line, caret.
#   cli     exit codes and messages of the driver (tests/cli holds its inputs).
# Runs from the repository root so diagnostics carry relative, portable paths.
set -u

if [ $# -ne 1 ]; then
    echo "usage: [UPDATE=1] bash tests/run_golden.sh path/to/tdslc" >&2
    exit 2
fi
case "$1" in
/*) TDSLC=$1 ;;
*) TDSLC=$PWD/$1 ;;
esac
if [ ! -x "$TDSLC" ]; then
    echo "run_golden.sh: '$1' is not an executable" >&2
    exit 2
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
UPDATE=${UPDATE:-0}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tdsl-golden.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/stdout
ERR=$TMP/stderr

# A hung compiler must fail its case, not the whole ctest run.
if command -v timeout >/dev/null 2>&1; then
    LIMIT=(timeout 60)
else
    LIMIT=()
fi

npass=0
nfail=0
cname=
cok=1
cwhy=
cdetail=

# begin NAME ... end: one case; the first failed assertion gives the reason.
begin() {
    cname=$1
    cok=1
    cwhy=
    cdetail=
}
bad() {
    if [ "$cok" = 1 ]; then
        cwhy=$1
        cdetail=${2:-}
    fi
    cok=0
}
end() {
    if [ "$cok" = 1 ]; then
        npass=$((npass + 1))
        echo "PASS  $cname"
    else
        nfail=$((nfail + 1))
        echo "FAIL  $cname: $cwhy"
        if [ -n "$cdetail" ]; then
            printf '%s\n' "$cdetail" | head -n 40 | sed 's/^/      | /'
        fi
    fi
}

# tdsl WANT_RC ARGS...: runs tdslc with ARGS; stdout in $OUT, stderr in $ERR.
tdsl() {
    local want=$1
    shift
    "${LIMIT[@]}" "$TDSLC" "$@" >"$OUT" 2>"$ERR"
    rc=$?
    if [ "$rc" != "$want" ]; then
        bad "exit status $rc, expected $want (tdslc $*)" "$(cat "$ERR")"
    fi
}
out_has() { grep -qF -- "$1" "$OUT" || bad "stdout lacks '$1'" "$(cat "$OUT")"; }
err_has() { grep -qF -- "$1" "$ERR" || bad "stderr lacks '$1'" "$(cat "$ERR")"; }
out_empty() { [ ! -s "$OUT" ] || bad "stdout is not empty" "$(cat "$OUT")"; }
err_empty() { [ ! -s "$ERR" ] || bad "stderr is not empty" "$(cat "$ERR")"; }
# out_is TEXT: stdout is exactly TEXT plus a final newline
out_is() {
    printf '%s\n' "$1" >"$TMP/want"
    cmp -s "$TMP/want" "$OUT" || bad "stdout differs from the expected text" "$(diff "$TMP/want" "$OUT")"
}
# same_as CAPTURED EXPECTED_FILE: compare, or rewrite EXPECTED_FILE under UPDATE=1
same_as() {
    local got=$1 want=$2
    if [ "$UPDATE" = 1 ]; then
        cmp -s "$got" "$want" 2>/dev/null || {
            cp "$got" "$want"
            echo "      updated $want"
        }
    elif [ ! -f "$want" ]; then
        bad "missing $want (run with UPDATE=1 to create it)"
    elif ! cmp -s "$want" "$got"; then
        bad "output differs from $want" "$(diff -u "$want" "$got" | tail -n +3)"
    fi
}

# Every diagnostic line that names a place is `file:line:col: kind: message`, followed by
# the source line (indented by two) and a caret line; error lines always name a place.
diag_format() {
    awk -v file="$1" '
        function fail(msg) { if (!bad) print msg; bad = 1 }
        expect == 2 { if ($0 !~ /^  /) fail("line " NR ": expected the source line"); expect = 1; next }
        expect == 1 { if ($0 !~ /^ *\^/) fail("line " NR ": expected a caret line"); expect = 0; next }
        index($0, file ":") == 1 && $0 ~ /^[^ ]+:[0-9]+:[0-9]+: (error|warning|note): / { expect = 2; next }
        / error: / { fail("line " NR ": an error without file:line:col: " $0) }
        END { if (expect) fail("the last diagnostic lacks its source line or caret"); exit bad }
    ' "$2"
}

# ---------------------------------------------------------------- golden programs
for src in tests/golden/*.tdsl; do
    [ -e "$src" ] || continue
    base=${src%.tdsl}
    name=${base#tests/golden/}

    begin "golden $name: dump --stage ir"
    tdsl 0 dump "$src" --stage ir
    err_empty
    [ "$cok" = 1 ] && same_as "$OUT" "$base.ir"
    end

    begin "golden $name: dump --stage layout"
    tdsl 0 dump "$src" --stage layout
    err_empty
    [ "$cok" = 1 ] && same_as "$OUT" "$base.layout"
    end

    # The text IR is a faithful format: parsing X.ir and printing it gives X.ir back,
    # and the layouts derived from the parsed IR are the same as from the source.
    begin "golden $name: text IR round trip"
    if [ -f "$base.ir" ]; then
        tdsl 0 dump "$base.ir" --stage ir
        err_empty
        [ "$cok" = 1 ] && { cmp -s "$base.ir" "$OUT" || bad "printing the parsed $base.ir changes it" "$(diff -u "$base.ir" "$OUT" | tail -n +3)"; }
        if [ "$cok" = 1 ] && [ -f "$base.layout" ]; then
            tdsl 0 dump "$base.ir" --stage layout
            [ "$cok" = 1 ] && { cmp -s "$base.layout" "$OUT" || bad "the layout of the parsed $base.ir differs from $base.layout" "$(diff -u "$base.layout" "$OUT" | tail -n +3)"; }
        fi
    else
        bad "missing $base.ir"
    fi
    end
done

# ---------------------------------------------------------------- diagnostics
for src in tests/diag/*.tdsl tests/diag/*.ir; do
    [ -e "$src" ] || continue
    base=${src%.*}
    begin "diag ${src#tests/diag/}"
    tdsl 1 check "$src"
    out_empty
    if [ "$cok" = 1 ]; then
        why=$(diag_format "$src" "$ERR") || bad "malformed diagnostic: $why" "$(cat "$ERR")"
    fi
    # under UPDATE=1 a case whose status is wrong keeps its old expected text
    [ "$cok" = 1 ] && same_as "$ERR" "$base.expected"
    end
done

# ---------------------------------------------------------------- command line
C=tests/cli
G=tests/golden

begin "cli --help prints usage, exit 0"
tdsl 0 --help
out_has "usage: tdslc"
out_has "exit status"
err_empty
end

begin "cli -h is --help"
tdsl 0 -h
out_has "usage: tdslc"
end

begin "cli --version"
tdsl 0 --version
grep -qE '^tdslc [0-9]+\.[0-9]+\.[0-9]+' "$OUT" || bad "stdout is not 'tdslc X.Y.Z'" "$(cat "$OUT")"
end

begin "cli no arguments: exit 2"
tdsl 2
err_has "missing command"
out_empty
end

begin "cli unknown command: exit 2"
tdsl 2 frobnicate $C/cli.tdsl
err_has "unknown command 'frobnicate'"
end

begin "cli gradcheck of a fn that is not a grad export: exit 2"
tdsl 2 gradcheck $C/cli.tdsl --fn double
err_has "not a grad export"
end

begin "cli build: writes the object and the header"
tdsl 0 build $C/cli.tdsl -o "$TMP/cli.o" --header "$TMP/cli.h"
[ -s "$TMP/cli.o" ] || bad "cli.o was not written"
grep -q "int cli_double(cli \*m" "$TMP/cli.h" || bad "cli.h lacks cli_double's prototype" "$(cat "$TMP/cli.h")"
nm "$TMP/cli.o" 2>/dev/null | grep -q " T cli_create" || bad "cli.o does not define cli_create"
end

begin "cli build --name of a non-identifier: exit 2"
tdsl 2 build $C/cli.tdsl --name 9lives -o "$TMP/x.o"
err_has "C identifier"
end

begin "cli missing input file: exit 1, names it"
tdsl 1 check $C/no-such-file.tdsl
err_has "tests/cli/no-such-file.tdsl"
err_has "No such file"
end

begin "cli a directory as input: exit 1"
tdsl 1 check $C
err_has "tests/cli"
end

begin "cli unknown option: exit 2"
tdsl 2 check $C/cli.tdsl --bogus
err_has "--bogus"
end

begin "cli option without its value: exit 2"
tdsl 2 dump $C/cli.tdsl --stage
err_has "--stage"
end

begin "cli unknown stage: exit 2"
tdsl 2 dump $C/cli.tdsl --stage nonsense
err_has "nonsense"
end

begin "cli --stage grad of a file without grad exports: says so"
tdsl 0 dump $C/cli.tdsl --stage grad
err_has "no grad exports"
out_empty
end

begin "cli --stage ast of a .ir file: exit 2"
tdsl 2 dump $G/mlp.ir --stage ast
err_has "--stage ast"
end

begin "cli --format dot (ir) starts with digraph"
tdsl 0 dump $C/cli.tdsl --fn double --format dot
head -n 1 "$OUT" | grep -q '^digraph' || bad "output does not start with digraph" "$(head -n 3 "$OUT")"
[ "$(tail -n 1 "$OUT")" = "}" ] || bad "output does not end with }"
end

begin "cli --format dot --stage layout starts with digraph"
tdsl 0 dump $G/transpose_permute.tdsl --stage layout --format dot
head -n 1 "$OUT" | grep -q '^digraph' || bad "output does not start with digraph" "$(head -n 3 "$OUT")"
end

begin "cli --format svg: exit 2"
tdsl 2 dump $C/cli.tdsl --format svg
err_has "svg"
end

begin "cli --fn selects one function"
tdsl 0 dump $G/transpose_permute.tdsl --stage layout --fn transpose3d
out_has "func transpose3d"
grep -q "func transpose2d" "$OUT" && bad "--fn transpose3d also printed transpose2d"
end

begin "cli --fn of an unknown name: exit 2, lists the exports"
tdsl 2 dump $C/cli.tdsl --fn nope
err_has "'nope'"
err_has "'double', 'pair', 'mix'"
end

begin "cli run without --fn on several exports: exit 2"
tdsl 2 run $C/cli.tdsl
err_has "--fn"
end

begin "cli check prints nothing on success"
tdsl 0 check $G/mlp.tdsl
out_empty
err_empty
end

begin "cli --time-passes reports stages on stderr"
tdsl 0 check $C/cli.tdsl --time-passes
err_has "time: parse"
out_empty
end

# -D overrides a const: L=3 unrolls the loop of stack_layers three times.
begin "cli -D L=3 changes the unrolled loop"
tdsl 0 dump $G/helpers_loops.tdsl --fn stack_layers
n0=$(grep -c ' = matmul ' "$OUT")
tdsl 0 dump -D L=3 $G/helpers_loops.tdsl --fn stack_layers
n1=$(grep -c ' = matmul ' "$OUT")
if [ "$n0" != 2 ] || [ "$n1" != 3 ]; then
    bad "matmul count: $n0 without -D, $n1 with -D L=3 (expected 2 and 3)"
fi
end

begin "cli -D of an unknown const: exit 1"
tdsl 1 check -D NOPE=3 $G/helpers_loops.tdsl
printf '%s\n' "tests/golden/helpers_loops.tdsl: error: -D NOPE: there is no const named 'NOPE' to override" >"$TMP/want"
cmp -s "$TMP/want" "$ERR" || bad "unexpected stderr" "$(diff "$TMP/want" "$ERR")"
end

begin "cli -D with a value that is not a number: exit 1"
tdsl 1 check -D L=many $G/helpers_loops.tdsl
err_has "-D L=many"
end

begin "cli -D without =VALUE: exit 2"
tdsl 2 check -D L $G/helpers_loops.tdsl
err_has "NAME=VALUE"
end

# run: inputs from .npy files
begin "cli run --in --out - prints NumPy style"
tdsl 0 run $C/cli.tdsl --fn double --in x=$C/x3.npy --out -
out_is "array([ 2., -4.,  1.], dtype=float32)"
err_empty
end

begin "cli run prints every output of a tuple"
tdsl 0 run $C/cli.tdsl --fn pair --in x=$C/x3.npy --out -
out_is "array([ 2. , -1. ,  1.5], dtype=float32)
array(-0.5, dtype=float32)"
end

begin "cli run: a transposed output and an i32 output"
tdsl 0 run $C/cli.tdsl --fn mix --in a=$C/a2x2.npy --in n=$C/n3.npy
out_is "array([[1., 3.],
       [2., 4.]], dtype=float32)
array([ 3,  6, -9], dtype=int32)"
end

begin "cli run --out FILE.npy writes .npy that reads back"
tdsl 0 run $C/cli.tdsl --fn double --in x=$C/x3.npy --out "$TMP/d.npy"
out_empty
[ -f "$TMP/d.npy" ] || bad "$TMP/d.npy was not written"
[ "$cok" = 1 ] && { [ "$(head -c 6 "$TMP/d.npy" | tail -c 5)" = NUMPY ] || bad "d.npy lacks the .npy magic"; }
[ "$cok" = 1 ] && tdsl 0 run $C/cli.tdsl --fn double --in x="$TMP/d.npy"
[ "$cok" = 1 ] && out_is "array([ 4., -8.,  2.], dtype=float32)"
end

begin "cli run --out PREFIX writes PREFIX.0.npy and PREFIX.1.npy"
tdsl 0 run $C/cli.tdsl --fn pair --in x=$C/x3.npy --out "$TMP/pre"
if [ ! -f "$TMP/pre.0.npy" ] || [ ! -f "$TMP/pre.1.npy" ]; then
    bad "PREFIX.0.npy or PREFIX.1.npy missing; written: $(cd "$TMP" && ls)"
fi
[ -e "$TMP/pre" ] && bad "also wrote $TMP/pre"
[ "$cok" = 1 ] && tdsl 0 run $C/cli.tdsl --fn double --in x="$TMP/pre.0.npy"
[ "$cok" = 1 ] && out_is "array([ 4., -2.,  3.], dtype=float32)"
end

begin "cli run --out to an unwritable path: exit 1"
tdsl 1 run $C/cli.tdsl --fn double --out "$TMP/no/such/dir/x.npy"
err_has "$TMP/no/such/dir/x.npy"
end

begin "cli run --in of a missing .npy: exit 1, names it"
tdsl 1 run $C/cli.tdsl --fn double --in x=$C/missing.npy
err_has "tests/cli/missing.npy"
out_empty
end

begin "cli run --in of a truncated .npy: exit 1"
tdsl 1 run $C/cli.tdsl --fn double --in x=$C/truncated.npy
err_has "tests/cli/truncated.npy"
err_has "truncated"
out_empty
end

begin "cli run --in of a .npy cut inside its header: exit 1"
tdsl 1 run $C/cli.tdsl --fn double --in x=$C/truncated_header.npy
err_has "tests/cli/truncated_header.npy"
err_has "truncated"
end

begin "cli run --in of garbage bytes: exit 1"
tdsl 1 run $C/cli.tdsl --fn double --in x=$C/garbage.npy
err_has "tests/cli/garbage.npy"
err_has "not a .npy"
end

begin "cli run --in of the wrong shape names both shapes"
tdsl 1 run $C/cli.tdsl --fn double --in x=$C/wrong_shape.npy
err_has "tests/cli/wrong_shape.npy"
err_has "f32[2, 2]"
err_has "f32[3]"
end

begin "cli run --in of the wrong dtype names both dtypes"
tdsl 1 run $C/cli.tdsl --fn double --in x=$C/wrong_dtype.npy
err_has "tests/cli/wrong_dtype.npy"
err_has "f64[3]"
err_has "f32[3]"
end

# NumPy itself loads '>f4'; tdslc may convert it or refuse it clearly, never misread it.
begin "cli run --in of a big-endian .npy: converted or refused"
"${LIMIT[@]}" "$TDSLC" run $C/cli.tdsl --fn double --in x=$C/bigendian.npy >"$OUT" 2>"$ERR"
rc=$?
if [ "$rc" = 0 ]; then
    out_is "array([ 2., -4.,  1.], dtype=float32)"
elif [ "$rc" = 1 ]; then
    err_has "tests/cli/bigendian.npy"
    err_has "big-endian"
else
    bad "exit status $rc" "$(cat "$ERR")"
fi
end

begin "cli run --in with an unknown argument name: exit 2"
tdsl 2 run $C/cli.tdsl --fn double --in y=$C/x3.npy
err_has "'y'"
end

begin "cli run --in without =FILE: exit 2"
tdsl 2 run $C/cli.tdsl --fn double --in x
err_has "ARG=FILE.npy"
end

begin "cli run --params of a missing file: exit 1"
tdsl 1 run $C/cli.tdsl --fn double --params $C/missing.safetensors
err_has "tests/cli/missing.safetensors"
end

begin "cli run: the jit (default) and the evaluator print the same values"
tdsl 0 run $C/cli.tdsl --fn double --in x=$C/x3.npy --engine interp
cp "$OUT" "$TMP/interp.txt"
tdsl 0 run $C/cli.tdsl --fn double --in x=$C/x3.npy
cmp -s "$TMP/interp.txt" "$OUT" || bad "jit and interp differ" "$(diff "$TMP/interp.txt" "$OUT")"
end

begin "cli run --engine of an unknown engine: exit 2"
tdsl 2 run $C/cli.tdsl --fn double --engine gpu
err_has "unknown engine"
end

# Random inputs: a pure function of --seed and the argument's name.
begin "cli run --seed: same seed same output, other seed other output"
tdsl 0 run $C/cli.tdsl --fn pair --seed 7
cp "$OUT" "$TMP/seed7a"
tdsl 0 run $C/cli.tdsl --fn pair --seed 7
cp "$OUT" "$TMP/seed7b"
tdsl 0 run $C/cli.tdsl --fn pair --seed 8
cp "$OUT" "$TMP/seed8"
if [ "$cok" = 1 ]; then
    [ -s "$TMP/seed7a" ] || bad "no output"
    cmp -s "$TMP/seed7a" "$TMP/seed7b" || bad "--seed 7 twice gave different outputs" "$(diff "$TMP/seed7a" "$TMP/seed7b")"
    cmp -s "$TMP/seed7a" "$TMP/seed8" && bad "--seed 7 and --seed 8 gave the same output"
fi
end

begin "cli run --seed of a negative number: exit 2"
tdsl 2 run $C/cli.tdsl --fn double --seed -1
err_has "--seed"
end

# Custom gradients: gradcheck passes on a correct one and catches a wrong one.
begin "cli gradcheck of correct custom gradients: exit 0"
tdsl 0 gradcheck tests/autodiff/custom_swish.tdsl --fn g
out_has "dx: "
end

begin "cli gradcheck of a wrong custom gradient: exit 1, MISMATCH"
tdsl 1 gradcheck tests/autodiff/custom_wrong.tdsl --fn g
out_has "MISMATCH"
end

# checkpoint(f, ...): the gradients still pass gradcheck; stats shows the arena it saves.
begin "cli gradcheck through checkpoint regions: exit 0"
tdsl 0 gradcheck tests/autodiff/checkpoint_resnet.tdsl --fn g --in x=tests/autodiff/data/checkpoint_resnet.in.x.npy --in y=tests/autodiff/data/checkpoint_resnet.in.y.npy
out_has "dW1: "
out_has "dWo: "
end

begin "cli stats of a grad export with checkpoint: the memory it saves"
tdsl 0 stats tests/autodiff/checkpoint_resnet.tdsl
out_has "checkpoint   recomputes in the backward pass: arena 4928 bytes, 9856 without (saves 4928 bytes), +35640 flops"
end

# dump --stage llvm|asm --fn: only that export's functions. -O0 keeps the kernels out of line.
out_lacks() { grep -qF -- "$1" "$OUT" && bad "stdout has '$1'" "$(grep -nF -- "$1" "$OUT" | head -5)"; }

begin "cli dump --stage llvm --fn: one export's wrapper, kernels and declarations, a valid module"
tdsl 0 dump $C/cli.tdsl --stage llvm -O0 --fn double
out_has "define i32 @cli_double("
out_has "define internal void @cli__double__k0("
out_has "define internal i1 @cli_double__finite0("
out_has "declare void @tdsl_rt_clear_error("
out_lacks "@cli_pair"
out_lacks "cli__pair__k"
out_lacks "@cli_create"
if [ "$cok" = 1 ] && command -v llvm-as-16 >/dev/null 2>&1; then
    llvm-as-16 "$OUT" -o /dev/null 2>"$TMP/as.err" || bad "llvm-as-16 rejects the dump" "$(cat "$TMP/as.err")"
fi
tdsl 0 dump $C/cli.tdsl --stage llvm -O0
out_has "define i32 @cli_pair("
out_has "define ptr @cli_create("
end

begin "cli dump --stage asm --fn: one export's functions"
tdsl 0 dump $C/cli.tdsl --stage asm -O0 --fn pair
out_has "	.file	\"cli\""
out_has "	.type	cli_pair,@function"
out_has "	.size	cli_pair, "
out_has "	.type	cli__pair__k0,@function"
out_lacks "cli_double"
out_lacks "cli__double__k0"
out_lacks "cli_create"
tdsl 0 dump $C/cli.tdsl --stage asm -O0
out_has "	.type	cli_double,@function"
out_has "	.type	cli_pair,@function"
end

begin "cli dump --stage asm --fn of no export: exit 2"
tdsl 2 dump $C/cli.tdsl --stage asm --fn nope
err_has "no exported fn named 'nope'"
out_empty
end

# --cpu names no CPU: a usage error before any work, for each command that compiles
begin "cli build --cpu of an unknown CPU: exit 2, no object"
tdsl 2 build $C/cli.tdsl -o "$TMP/cpu.o" --cpu nosuchcpu
err_has "unknown CPU 'nosuchcpu' (use native, x86-64-v3, x86-64-v4 or an LLVM x86-64 CPU name)"
[ -e "$TMP/cpu.o" ] && bad "wrote $TMP/cpu.o"
end

begin "cli dump --stage asm --cpu of an unknown CPU: exit 2"
tdsl 2 dump $C/cli.tdsl --stage asm --cpu nosuchcpu
err_has "unknown CPU 'nosuchcpu'"
out_empty
end

begin "cli run --engine jit --cpu of an unknown CPU: exit 2; the interpreter ignores --cpu"
tdsl 2 run $C/cli.tdsl --fn double --cpu nosuchcpu
err_has "unknown CPU 'nosuchcpu'"
tdsl 0 run $C/cli.tdsl --fn double --cpu nosuchcpu --engine interp
end

begin "cli build --cpu x86-64-v3: a known CPU still builds"
tdsl 0 build $C/cli.tdsl -o "$TMP/v3.o" --cpu x86-64-v3
[ -s "$TMP/v3.o" ] || bad "no object written"
end

# dump --stage fused: the kernels after fusion, as IR and as Graphviz clusters.
begin "cli dump --stage fused: kernels with their fused ops"
tdsl 0 dump docs/examples/block.tdsl --stage fused
out_has "func block: 4 kernels compute 7 values"
out_has "  kernel 1: add -> %10 y (4 ops fused: only %10 is stored)"
out_has "    %6 = relu %5 : f32[4, 16]"
out_has "  no code (leaves, constants and views: read where they are)"
end

begin "cli dump --stage fused --no-fuse: one kernel per value"
tdsl 0 dump docs/examples/block.tdsl --stage fused --no-fuse
out_has "func block: 7 kernels compute 7 values"
end

begin "cli dump --stage fused --format dot: a cluster per kernel"
tdsl 0 dump docs/examples/block.tdsl --stage fused --format dot --fn block
out_has "subgraph cluster_1 {"
out_has 'label="kernel 1"'
out_has "n5 -> n6;"
end

# A training checkpoint read by a module without the training step: the state the file
# lists as optimizer state is passed over, anything else is refused (both engines).
for engine in jit interp; do
    begin "cli run --params of a training checkpoint in a module without the step ($engine): exit 0"
    tdsl 0 run docs/examples/tiny.tdsl --fn logits --engine $engine --params $C/tiny_ckpt.safetensors
    out_has "array([[ 2.07717"
    end

    begin "cli run --params with an unlisted extra tensor ($engine): exit 1"
    tdsl 1 run docs/examples/tiny.tdsl --fn logits --engine $engine --params $C/tiny_junk.safetensors
    err_has "tensor 'junk'"
    end
done

echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
