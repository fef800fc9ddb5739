#!/usr/bin/env bash
# Builds and runs docs/examples/main.c against a real `tdslc build` of tiny.tdsl, the three
# ways docs/c-api.md describes, from an install of BUILD_DIR into a temporary prefix:
#   1. pkg-config, shared libtdslrt      2. pkg-config flags, static libtdslrt.a
#   3. CMake: find_package(tdsl) + tdsl_add_model
# usage: bash docs/examples/run.sh [BUILD_DIR]     (default: build; exit 0 if all pass)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tdsl_example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
P=$tmp/prefix

echo "== cmake --install $build --prefix \$P"
cmake --install "$build" --prefix "$P" >/dev/null
# lib/, or lib/<multiarch>/ when the build was configured with the prefix /usr
pc=$(find "$P" -path '*/pkgconfig/tdsl.pc' | head -n 1)
export PKG_CONFIG_PATH=${pc%/tdsl.pc}
L=$(pkg-config --variable=libdir tdsl)
cd "$here"

echo "== tdslc build tiny.tdsl -o tiny.o --header tiny.h"
"$P/bin/tdslc" build tiny.tdsl -o "$tmp/tiny.o" --header "$tmp/tiny.h"

echo "== 1. cc main.c tiny.o \$(pkg-config --cflags --libs tdsl)   (shared libtdslrt)"
cc -std=c11 -Wall -Wextra -Wpedantic -I"$tmp" main.c "$tmp/tiny.o" $(pkg-config --cflags --libs tdsl) \
   -o "$tmp/app_shared"
LD_LIBRARY_PATH=$L "$tmp/app_shared" "$tmp/tiny.safetensors"

echo "== 2. the same, static: libtdslrt.a"
cc -std=c11 -I"$tmp" $(pkg-config --cflags tdsl) main.c "$tmp/tiny.o" "$L/libtdslrt.a" \
   -lcjson -lpthread -lm -o "$tmp/app_static"
"$tmp/app_static" "$tmp/tiny2.safetensors" >/dev/null
echo "static build: all checks passed"

echo "== 3. CMake: find_package(tdsl) + tdsl_add_model(tiny tiny.tdsl)"
cmake -S "$here" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$P" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
(cd "$tmp/cmake" && ./tiny_app >/dev/null)
echo "CMake build: all checks passed"
