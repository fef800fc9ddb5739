#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing tdsl needs, and only
# the missing ones. Idempotent and silent when all are present. As non-root it
# only says what is missing (exit 1). Python is not needed to build or test.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config   # C toolchain, make, CMake
  flex bison                         # grammar/
  check libcjson-dev                 # unit tests; JSON
  llvm-16-dev                        # codegen (LLVM 16 C API)
  clang libclang-rt-14-dev           # clang 14 + its libFuzzer runtime (only a Recommends of clang)
  libopenblas-dev                    # bench/matmul only (cblas_sgemm baseline)
  wamerican                          # samples/makemore word list (/usr/share/dict/american-english)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps: run as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
