#!/usr/bin/env bash
# Sets up, builds (warnings as errors) and runs every test suite on the default device.
# Kernel compiles are cached inside the build tree, so each kernel compiles once per build dir.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DATTAMBA_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
"$BUILD"/attamba devices
cd "$BUILD"
ctest --output-on-failure -j1 "$@"
