#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (config, safetensors, tokens, state = trainer.json,
# cache = a kernel-cache entry) with clang (ASan + UBSan) and runs each for a bounded time on a copy of its seed corpus (tests/fuzz/corpus/<target>); any crash, leak or sanitizer
# report fails the run, and libFuzzer leaves the input that caused it in build-fuzz/.
#   scripts/fuzz.sh [SECONDS per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
CC=${CC_FUZZ:-clang-15} cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER="${CC_FUZZ:-clang-15}" -DCMAKE_BUILD_TYPE=Debug \
  -DATTAMBA_FUZZ=ON -DATTAMBA_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target fuzz_config fuzz_safetensors fuzz_tokens fuzz_state fuzz_cache >/dev/null
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for target in config safetensors tokens state cache; do
  work="$BUILD/corpus-$target" log="$BUILD/fuzz-$target.log"
  rm -rf "$work" && mkdir -p "$work"
  echo "== fuzz_$target for ${SECONDS_EACH}s"
  if ! (cd "$BUILD" && ./fuzz_"$target" -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -print_final_stats=1 \
        "corpus-$target" "../tests/fuzz/corpus/$target" >"fuzz-$target.log" 2>&1); then
    tail -n 40 "$log"
    echo "fuzz_$target: a finding (the input is saved in $BUILD)"
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$log" || true
done
echo "fuzz: no findings"
