#!/usr/bin/env bash
# The main job on the default device: sets up, builds, makes the corpus, runs `attamba demo`.
# Extra arguments go to `attamba demo` (e.g. --steps 100 for a quicker run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$PWD/build/pocl-cache}
scripts/corpus.sh build/corpus
build/attamba devices
exec build/attamba demo --data build/corpus/kjv.txt --out build/demo "$@"
