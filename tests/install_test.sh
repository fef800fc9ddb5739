#!/bin/bash
# The install tree and the apps built against it (issue 3, item 6):
#  1. `cmake --install BUILD --prefix TMP` puts tdslc, libtdslrt (.a and .so), the headers,
#     tdsl.pc and the CMake package (config, version, targets, tdsl_add_model) in place;
#  2. `pkg-config --cflags --libs tdsl` gives exactly the include and link flags;
#  3. samples/apps, configured against TMP (find_package + tdsl_add_model), builds and runs:
#     classify (forward, save, reload, identical output) and two_modules (three modules in
#     one binary); editing a .tdsl re-runs tdslc on the next build, and only for that model;
#     the same with Ninja when it is installed;
#  4. an app linked by hand with pkg-config's flags (and statically, and as C++) runs;
#  5. find_package(tdsl 99) is refused by the version file.
# usage: install_test.sh BUILD_DIR      exit status 0 pass, 1 fail
set -u
BUILD=$(cd "${1:?usage: install_test.sh BUILD_DIR}" && pwd) || exit 1
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tdsl_install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
P=$TMP/prefix
nlog=0
# a sanitizer build's libtdslrt.a needs the sanitizer runtime in every program that links it
SAN=()
grep -q '^TDSL_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null && SAN=("-fsanitize=address,undefined")

fail() { echo "install test FAILED: $*" >&2; exit 1; }
step() { echo "== $*"; }
# run CMD...: runs it with its output in a log; on failure shows the log and stops
run() {
    nlog=$((nlog + 1))
    local log=$TMP/log.$nlog
    "$@" >"$log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        tail -n 60 "$log" >&2
        fail "'$*' exited with $rc"
    fi
    LAST_LOG=$log
}

step "cmake --install $BUILD --prefix $P"
run cmake --install "$BUILD" --prefix "$P"
# lib, or lib/<multiarch> when the build was configured for the prefix /usr (GNUInstallDirs)
pc=$(find "$P" -name tdsl.pc -path "*/pkgconfig/*" | head -n 1)
[ -n "$pc" ] || fail "the install tree has no pkgconfig/tdsl.pc"
LIB=${pc#"$P"/}
LIB=${LIB%/pkgconfig/tdsl.pc}
for f in bin/tdslc $LIB/libtdslrt.a $LIB/libtdslrt.so include/tdsl/runtime.h $LIB/pkgconfig/tdsl.pc \
         $LIB/cmake/tdsl/tdslConfig.cmake $LIB/cmake/tdsl/tdslConfigVersion.cmake \
         $LIB/cmake/tdsl/tdslTargets.cmake $LIB/cmake/tdsl/tdsl_add_model.cmake; do
    [ -f "$P/$f" ] || fail "the install tree lacks $f"
done
[ -x "$P/bin/tdslc" ] || fail "bin/tdslc is not executable"
run "$P/bin/tdslc" --version
VERSION=$(awk '{print $2}' "$LAST_LOG")
echo "installed tdslc $VERSION"

step "pkg-config"
export PKG_CONFIG_PATH=$P/$LIB/pkgconfig
flags=$(pkg-config --cflags --libs tdsl) || fail "pkg-config --cflags --libs tdsl failed"
read -ra words <<<"$flags"
flags="${words[*]}"   # one space between words
want="-I$P/include -L$P/$LIB -ltdslrt -lcjson -lpthread -lm"
[ "$flags" = "$want" ] || fail "pkg-config --cflags --libs tdsl gave '$flags', want '$want'"
[ "$(pkg-config --modversion tdsl)" = "$VERSION" ] || fail "pkg-config --modversion is not $VERSION"
[ "$(pkg-config --variable=tdslc tdsl)" = "$P/bin/tdslc" ] || fail "pkg-config --variable=tdslc is wrong"
echo "$flags"

# A copy of the apps, so that editing a model does not touch the source tree.
run cp -r "$SRC/samples/apps" "$TMP/apps"

step "samples/apps with find_package(tdsl) + tdsl_add_model (Unix Makefiles)"
run cmake -S "$TMP/apps" -B "$TMP/app" -G "Unix Makefiles" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="${SAN[*]}" -DCMAKE_EXE_LINKER_FLAGS="${SAN[*]}"
run cmake --build "$TMP/app"
grep -q "tdslc: compiling model classifier" "$LAST_LOG" || fail "the build did not run tdslc for classifier"
run "$TMP/app/classify" "$TMP/params.safetensors"
cat "$LAST_LOG"
[ -s "$TMP/params.safetensors" ] || fail "classify did not save its params"
run "$TMP/app/two_modules/two_modules"
cat "$LAST_LOG"
# the library target carries the header's directory and the runtime
grep -q "#include <tdsl/runtime.h>" "$TMP/app/tdsl_models/classifier/classifier.h" ||
    fail "classifier.h is not where tdsl_add_model puts it"

step "a changed .tdsl re-runs tdslc, for that model only"
run cmake --build "$TMP/app"
grep -q "tdslc: compiling model" "$LAST_LOG" && fail "a build with nothing changed ran tdslc again"
sleep 1
echo "# edited by install_test.sh" >>"$TMP/apps/two_modules/pair.tdsl"
run cmake --build "$TMP/app"
grep -q "tdslc: compiling model pair" "$LAST_LOG" || fail "editing pair.tdsl did not re-run tdslc"
grep -q "tdslc: compiling model affine\|tdslc: compiling model classifier" "$LAST_LOG" &&
    fail "editing pair.tdsl re-ran tdslc for other models"
run "$TMP/app/two_modules/two_modules"

if command -v ninja >/dev/null 2>&1; then
    step "samples/apps with Ninja"
    run cmake -S "$TMP/apps" -B "$TMP/app-ninja" -G Ninja -DCMAKE_PREFIX_PATH="$P" \
        -DCMAKE_C_FLAGS="${SAN[*]}" -DCMAKE_EXE_LINKER_FLAGS="${SAN[*]}"
    run cmake --build "$TMP/app-ninja"
    run "$TMP/app-ninja/two_modules/two_modules"
    run "$TMP/app-ninja/classify" "$TMP/params2.safetensors"
fi

step "an app linked by hand with pkg-config"
mkdir -p "$TMP/pc"
for m in affine:affine pair:pair affine2:affine; do
    name=${m%%:*}
    run "$P/bin/tdslc" build "$TMP/apps/two_modules/${m#*:}.tdsl" -o "$TMP/pc/$name.o" --header "$TMP/pc/$name.h" \
        --name "$name"
done
objs=("$TMP/pc/affine.o" "$TMP/pc/pair.o" "$TMP/pc/affine2.o")
read -ra cflags <<<"$(pkg-config --cflags tdsl)"
read -ra libs <<<"$(pkg-config --libs tdsl)"
run cc "${SAN[@]}" -std=c99 -Wall -Wextra -pedantic -Werror -I"$TMP/pc" "${cflags[@]}" "$TMP/apps/two_modules/main.c" "${objs[@]}" \
    "${libs[@]}" -o "$TMP/pc/two_shared"
LD_LIBRARY_PATH=$P/$LIB run "$TMP/pc/two_shared"
# static: libtdslrt.a named explicitly, no library path needed at run time
run cc "${SAN[@]}" -std=c99 -I"$TMP/pc" "${cflags[@]}" "$TMP/apps/two_modules/main.c" "${objs[@]}" \
    "$P/$LIB/libtdslrt.a" -lcjson -lpthread -lm -o "$TMP/pc/two_static"
run "$TMP/pc/two_static"
if command -v g++ >/dev/null 2>&1; then
    # the headers' extern "C" lets C++ call the C objects
    run g++ "${SAN[@]}" -x c++ -std=c++11 -Wall -Wextra -Werror -I"$TMP/pc" "${cflags[@]}" \
        "$TMP/apps/two_modules/main.c" -x none "${objs[@]}" "$P/$LIB/libtdslrt.a" -lcjson -lpthread -lm -o "$TMP/pc/two_cxx"
    run "$TMP/pc/two_cxx"
fi

step "the version file refuses an incompatible request"
mkdir -p "$TMP/v99"
cat >"$TMP/v99/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.20)
project(v99 LANGUAGES C)
find_package(tdsl 99 REQUIRED)
EOF
cmake -S "$TMP/v99" -B "$TMP/v99/build" -DCMAKE_PREFIX_PATH="$P" >"$TMP/v99.log" 2>&1 &&
    fail "find_package(tdsl 99) succeeded against version $VERSION"

echo "install test passed"
