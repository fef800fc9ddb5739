#!/usr/bin/env bash
# build_time: how long `tdslc build` of the 2-layer MLP sample takes, LLVM included.
#
# The issue's target: "`tdslc build` of a 2-layer MLP sample, LLVM included: under 300 ms."
#
#   bench/build_time.sh TDSLC [--runs N] [--levels] [--file F.tdsl]
#
# Runs `TDSLC build samples/mlp.tdsl -o $TMP/mlp.o --header $TMP/mlp.h` N times (default
# 11) after one untimed run (page cache, CPU clock), and prints the median, min and max
# wall time (and CPU time: user + sys, which load from other processes does not inflate),
# then one run's --time-passes breakdown, then PASS/FAIL: median wall time under 300 ms.
# --levels repeats the timing at -O0, -O1, -O2 and -O3 with the object's size, to see what
# LLVM's optimization level costs. Exits 0 whatever the timings; 1 if a build fails, 2 on
# a bad command line.
set -u

TARGET_MS=300
usage() { echo "usage: $0 TDSLC [--runs N] [--levels] [--file F.tdsl]" >&2; exit 2; }

[ $# -ge 1 ] || usage
TDSLC=$1
shift
RUNS=11
LEVELS=0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILE=$ROOT/samples/mlp.tdsl
while [ $# -gt 0 ]; do
    case $1 in
        --runs) [ $# -ge 2 ] || usage; RUNS=$2; shift 2 ;;
        --levels) LEVELS=1; shift ;;
        --file) [ $# -ge 2 ] || usage; FILE=$2; shift 2 ;;
        *) usage ;;
    esac
done
case $RUNS in ''|*[!0-9]*) usage ;; esac
[ "$RUNS" -ge 1 ] || usage
[ -x "$TDSLC" ] || { echo "build_time: $TDSLC is not an executable" >&2; exit 2; }
[ -r "$FILE" ] || { echo "build_time: cannot read $FILE" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/build_time.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

# one timed build: appends "wall_ms cpu_ms" to $TMP/times; extra args go to tdslc
timed_build() {
    local t
    TIMEFORMAT='%3R %3U %3S'
    if ! t=$( { time "$TDSLC" build "$FILE" -o "$TMP/mlp.o" --header "$TMP/mlp.h" "$@" >/dev/null 2>"$TMP/err"; } 2>&1 ); then
        echo "build_time: '$TDSLC build $FILE $*' failed:" >&2
        cat "$TMP/err" >&2
        exit 1
    fi
    [ -s "$TMP/err" ] && { echo "build_time: '$TDSLC build $FILE $*' failed:" >&2; cat "$TMP/err" >&2; exit 1; }
    echo "$t" | awk '{ printf "%.1f %.1f\n", $1 * 1000, ($2 + $3) * 1000 }' >>"$TMP/times"
}

# median min max of column $1 of $TMP/times
stats() {
    cut -d' ' -f"$1" "$TMP/times" | sort -n | awk '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.1f %.1f", m, v[1], v[NR] }'
}

# times RUNS builds with the given extra args; sets WALL="median min max", CPU likewise
measure() {
    : >"$TMP/times"
    timed_build "$@"              # untimed warm-up
    : >"$TMP/times"
    for _ in $(seq "$RUNS"); do timed_build "$@"; done
    WALL=$(stats 1)
    CPU=$(stats 2)
}

echo "build_time: $TDSLC build ${FILE#"$ROOT"/} ($RUNS runs, wall clock and CPU time in ms)"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
measure
read -r WMED WMIN WMAX <<<"$WALL"
read -r CMED CMIN CMAX <<<"$CPU"
printf '  wall  median %7.1f  min %7.1f  max %7.1f\n' "$WMED" "$WMIN" "$WMAX"
printf '  cpu   median %7.1f  min %7.1f  max %7.1f   (user + sys)\n' "$CMED" "$CMIN" "$CMAX"

echo
echo "--time-passes of one run:"
"$TDSLC" build "$FILE" -o "$TMP/mlp.o" --header "$TMP/mlp.h" --time-passes 2>&1 >/dev/null | sed 's/^/  /'

if [ "$LEVELS" = 1 ]; then
    echo
    printf '%-5s %12s %12s %12s\n' level "wall median" "cpu median" "object B"
    for O in -O0 -O1 -O2 -O3; do
        measure "$O"
        printf '%-5s %12s %12s %12s\n' "$O" "${WALL%% *}" "${CPU%% *}" "$(wc -c <"$TMP/mlp.o")"
    done
fi

echo
if awk -v m="$WMED" -v t="$TARGET_MS" 'BEGIN { exit !(m < t) }'; then
    echo "target: median wall ${WMED} ms < ${TARGET_MS} ms: PASS"
else
    echo "target: median wall ${WMED} ms >= ${TARGET_MS} ms: FAIL"
fi
exit 0
