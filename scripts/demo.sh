#!/usr/bin/env bash
# The main job on the default device: sets up, builds, lists the devices, benchmarks GEMM.
# (Grows into `attamba demo` as training lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$PWD/build/pocl-cache}
build/attamba devices
build/attamba bench gemm --json build/bench-gemm.json "$@"
