#!/usr/bin/env bash
# train_step: one SGD training step of a relu MLP (cross_entropy, batch 64), 784-256-10 and
# 64-64-10, at 1 and 2 threads: tdsl's compiled step, the same step hand-written in C on
# OpenBLAS, and PyTorch eager, in one run; then the peak memory that `tdslc stats` gives
# for the step export and for a forward-only export of the same model, and of a deep
# residual MLP (bench/checkpoint's, without checkpoint) where activations dominate.
#
#   bench/train_step.sh [BUILD_DIR] [--rounds N] [--steps N]
#
# BUILD_DIR (default build-bench) holds bench/train_step and tdslc (built with OpenBLAS).
# The issue's targets: tdsl's 784-256-10 step at 1 thread at least 1.25x faster than
# PyTorch eager; forward-only peak memory at most half the step's. Prints PASS/FAIL for
# each and exits 0 whatever the numbers; 1 if a program fails.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build-bench
ROUNDS=5
STEPS=40
usage() { echo "usage: $0 [BUILD_DIR] [--rounds N] [--steps N]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2 ;;
        --steps) [ $# -ge 2 ] || usage; STEPS=$2; shift 2 ;;
        -*) usage ;;
        *) BUILD=$(cd "$1" && pwd) || exit 1; shift ;;
    esac
done
BENCH=$BUILD/bench/train_step
TDSLC=$BUILD/tdslc
for f in "$BENCH" "$TDSLC"; do
    [ -x "$f" ] || { echo "train_step.sh: $f not found (build it: cmake --build $BUILD --target train_step tdslc)" >&2; exit 1; }
done
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT

# OpenBLAS picks its kernel when it loads: unset the environment's overrides for this
# one command only, so that the C row uses its best kernel (the name is printed).
echo "== tdsl and hand-written C + OpenBLAS"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$BENCH" --rounds "$ROUNDS" --steps "$STEPS" | tee "$TMP/c.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "train_step.sh: bench/train_step failed" >&2; exit 1; }
echo
echo "== PyTorch eager"
python3 "$ROOT/bench/train_step.py" --rounds "$ROUNDS" --steps "$STEPS" | tee "$TMP/py.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "train_step.sh: train_step.py failed" >&2; exit 1; }

echo
echo "== summary (median us per step)"
printf "%-12s %3s %10s %10s %10s %12s %12s\n" model thr tdsl OpenBLAS PyTorch tdsl/OpenBLAS PyTorch/tdsl
awk '
    FNR == NR && $1 == "RESULT" { td[$2 " " $3] = $4; bl[$2 " " $3] = $5; key[n++] = $2 " " $3; next }
    $1 == "RESULT" { pt[$2 " " $3] = $4 }
    END {
        for (i = 0; i < n; i++) {
            k = key[i]; split(k, a, " ")
            printf "%-12s %3s %10.1f %10.1f %10.1f %12.2f %12.2f\n", a[1], a[2], td[k], bl[k], pt[k], td[k] / bl[k], pt[k] / td[k]
        }
        k = "784-256-10 1"
        r = pt[k] / td[k]
        printf "\ntarget: 784-256-10 step, 1 thread, PyTorch / tdsl = %.2f (>= 1.25: %s)\n", r, (r >= 1.25 ? "PASS" : "FAIL")
    }' "$TMP/c.txt" "$TMP/py.txt"

# memory_row FILE: the peak memory `tdslc stats` gives FILE's step and forward exports, and
# their ratio against the issue's target (forward <= half the step).
memory_row() {
    local fn
    for fn in step forward; do
        "$TDSLC" stats "$1" --fn "$fn" > "$TMP/stats_$fn.txt" || { echo "train_step.sh: tdslc stats $1 --fn $fn failed" >&2; exit 1; }
        printf "%-8s %s\n" "$fn:" "$(grep 'peak memory' "$TMP/stats_$fn.txt" | sed 's/^ *//')"
    done
    awk '/peak memory/ { v[n++] = $3 } END {
            r = v[1] / v[0]
            printf "forward / step peak memory = %.3f (<= 0.5: %s)\n", r, (r <= 0.5 ? "PASS" : "FAIL")
        }' "$TMP/stats_step.txt" "$TMP/stats_forward.txt"
}

echo
echo "== peak memory (tdslc stats), 784-256-10, batch 64"
"$BENCH" --emit-tdsl 784 > "$TMP/mlp784.tdsl" || exit 1
memory_row "$TMP/mlp784.tdsl"
echo "(a two-layer MLP's params dominate both; where activations dominate, next:)"

# The seed's no_grad row where activations dominate: bench/checkpoint's depth-8 residual MLP
# (batch 512), its step without checkpoint against a forward-only export of the same blocks.
CKPT=$BUILD/bench/checkpoint
if [ -x "$CKPT" ]; then
    echo
    echo "== peak memory (tdslc stats), residual MLP, 8 blocks 64-256-64, batch 512"
    "$CKPT" --emit-tdsl --depths 8 | sed 's/checkpoint(block, h, \(W[0-9]*\), \(V[0-9]*\))/block(h, \1, \2)/' \
        > "$TMP/res8.tdsl" || exit 1
    {
        printf 'export fn forward(x: f32[512, 64]) -> f32[512, 10] {\n    h = x\n'
        for k in 1 2 3 4 5 6 7 8; do printf '    h = block(h, W%d, V%d)\n' "$k" "$k"; done
        printf '    return h @ Wo\n}\n'
    } >> "$TMP/res8.tdsl"
    memory_row "$TMP/res8.tdsl"
else
    echo "(no $CKPT: build the checkpoint bench for the residual MLP's memory row)"
fi
exit 0
