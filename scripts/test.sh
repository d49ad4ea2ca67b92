#!/usr/bin/env bash
# Sets up, builds (warnings as errors) and runs every test suite on the default device, fuzzes the
# parsers for a bounded time (scripts/fuzz.sh, FUZZ_SECONDS each), then runs the whole suite again
# under AddressSanitizer + LeakSanitizer + UBSan (bad inputs and failed allocations must neither
# crash, leak nor hit undefined behaviour). Kernel compiles are cached inside the build trees.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DATTAMBA_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
"$BUILD"/attamba devices
(cd "$BUILD" && ctest --output-on-failure -j1 "$@")

echo "== fuzzing the parsers, ${FUZZ_SECONDS:-30} s each"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

echo "== the whole suite again under ASan/LSan/UBSan (halting on the first report)"
cmake -S . -B "$BUILD-asan" -DCMAKE_BUILD_TYPE=Debug -DATTAMBA_WERROR=ON -DATTAMBA_SANITIZE=ON >/dev/null
cmake --build "$BUILD-asan" -j"$(nproc)" >/dev/null
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# LeakSanitizer's own stop-the-world tracer sometimes crashes at a process exit ("Tracer caught signal
# 11", google/sanitizers#1353): a crash of the checker, not a report. Suites that failed where it did,
# with no sanitizer report, run once more (a check can fail with it: test_cli's, when the crash hits a
# command it runs); a real failure fails again there, and anything else fails the run.
log="$PWD/$BUILD-asan/Testing/sanitized.log"
# (test_portability compiles kernels offline with clang: nothing of ours to sanitize beyond what
# test_cli already runs of `attamba compile`; test_other_impls runs the suites on other drivers,
# whose own leaks and preloads do not mix with the sanitizers; test_python loads the library into
# Python, where the ASan runtime would have to come first)
skip="test_portability|test_other_impls|test_python"
if ! (cd "$BUILD-asan" && ctest --output-on-failure -j1 -E "$skip" --output-log "$log" "$@"); then
    if grep -q "LeakSanitizer has encountered a fatal error" "$log" &&
        ! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:|Received signal|timeout expired" "$log"; then
        echo "== LeakSanitizer's tracer crashed (not a report): rerunning the failed suites once"
        # the same -E: ctest numbers the tests of the filtered run, and --rerun-failed goes by number
        (cd "$BUILD-asan" && ctest --output-on-failure -j1 -E "$skip" --rerun-failed)
    else
        exit 1
    fi
fi
