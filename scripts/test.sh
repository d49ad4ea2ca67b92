#!/usr/bin/env bash
# Sets up, builds (warnings as errors) and runs every test suite on the default device, fuzzes the
# parsers for a bounded time (scripts/fuzz.sh), then the
# file-format, boundary and fault-injection suites again under AddressSanitizer + LeakSanitizer +
# UBSan (corrupt inputs and failed allocations must neither crash, leak nor hit undefined
# behaviour). Kernel compiles are cached inside the build trees.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DATTAMBA_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
"$BUILD"/attamba devices
(cd "$BUILD" && ctest --output-on-failure -j1 "$@")

echo "== fuzzing the parsers (config, safetensors, token files), ${FUZZ_SECONDS:-60} s each"
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"

echo "== sanitizers: model files, boundaries and injected allocation failures under ASan/LSan/UBSan"
cmake -S . -B "$BUILD-asan" -DCMAKE_BUILD_TYPE=Debug -DATTAMBA_WERROR=ON -DATTAMBA_SANITIZE=ON >/dev/null
cmake --build "$BUILD-asan" -j"$(nproc)" --target test_model_io test_boundaries test_faults >/dev/null
cd "$BUILD-asan"
export LSAN_OPTIONS="suppressions=$PWD/../tests/lsan.supp:print_suppressions=0" CK_FORK=no
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export POCL_CACHE_DIR=$PWD/pocl-cache ATTAMBA_CACHE_DIR=$PWD/kernel-cache
./test_boundaries
./test_model_io
./test_faults
