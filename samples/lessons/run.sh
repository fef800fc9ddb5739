#!/usr/bin/env bash
# Runs the lessons: for each samples/lessons/NN_*.tdsl, `check`, the layout dump and
# every exported fn (random inputs from --seed 0), and shows that 04_view_error.tdsl
# is rejected with exit status 1. Exits 1 if any step fails unexpectedly.
#   usage: bash samples/lessons/run.sh [TDSLC]     (default: build/tdslc; `make demo`)
set -uo pipefail

tdslc=${1:-build/tdslc}
if [ ! -x "$tdslc" ]; then
    echo "run.sh: '$tdslc' is not an executable; build first (make build)" >&2
    exit 2
fi
case $tdslc in /*) ;; *) tdslc=$PWD/$tdslc ;; esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
show=${tdslc#"$root"/}   # the command as printed: relative to the repo root when inside it

passed=0
failed=0
failures=()

banner() {
    printf '\n%s\n%s\n%s\n' "========================================================================" \
        "$1" "========================================================================"
}

# step EXPECTED_STATUS ARGS...: prints and runs `tdslc ARGS...`, compares the exit status.
step() {
    local want=$1
    shift
    printf '\n$ %s %s\n' "$show" "$*"
    "$tdslc" "$@"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then
        [ "$1" = check ] && echo "(ok: no errors)"
        passed=$((passed + 1))
    else
        echo "run.sh: FAILED (exit status $rc, expected $want): tdslc $*" >&2
        failed=$((failed + 1))
        failures+=("tdslc $*")
    fi
}

lessons=(samples/lessons/0[1-9]_*.tdsl)
for f in "${lessons[@]}"; do
    case $f in *_error.tdsl) continue ;; esac
    banner "$(sed -n '1s/^# *//p' "$f")   ($f)"
    step 0 check "$f"
    step 0 dump "$f" --stage layout
    fns=$(grep -oE '^[[:space:]]*export[[:space:]]+fn[[:space:]]+[A-Za-z_][A-Za-z0-9_]*' "$f" | awk '{print $3}')
    for fn in $fns; do
        step 0 run "$f" --fn "$fn" --seed 0 --out -
    done
done

# The seed's error 1 (x.T.view(12)) is a compile-time error: status 1 and a diagnostic
# that names view() at the line of the call.
err=samples/lessons/04_view_error.tdsl
banner "Lesson 04, the error: view() of a non-contiguous value   ($err)"
printf '\n$ %s check %s\n' "$show" "$err"
diag=$("$tdslc" check "$err" 2>&1)
rc=$?
printf '%s\n' "$diag"
if [ "$rc" -eq 1 ] && grep -qE "^$err:[0-9]+:[0-9]+: error: view\(\): cannot view" <<<"$diag"; then
    echo "(exit status 1, as expected)"
    passed=$((passed + 1))
else
    echo "run.sh: FAILED: expected exit status 1 and a view() error, got status $rc" >&2
    failed=$((failed + 1))
    failures+=("tdslc check $err")
fi

banner "Summary"
for x in "${failures[@]+"${failures[@]}"}"; do
    echo "failed: $x"
done
echo "lessons: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
