#!/usr/bin/env bash
# attamba against llama.cpp's CPU backend on this machine, same model, same thread count (issue 12).
# Not run by CI (it builds llama.cpp: 15-30 min on two cores). Steps, each skipped when its output is
# already there (so a rerun only measures):
#   1. fetch the llama-cpp-python sdist from PyPI with pip download (its vendored llama.cpp, pinned);
#   2. build llama.cpp's CPU backend: llama-bench, llama-quantize, libllama; and lc_logits.c here;
#   3. models: `attamba init` of the paper-60m shape as a transformer and as Attamba P=8 (seed 1), each
#      quantized by `attamba quantize` to f16 and q8; the transformer as GGUF (to_gguf.py), then
#      llama-quantize to F16 and Q8_0;
#   4. equivalence: the logits of 64 token ids from both engines, f32 / f16 / 8-bit;
#   5. ROUNDS rounds (default 5) of pp512, pp2048 and tg128 per weight type, and decode at 4K and 16K
#      of context: each test's engines back to back, who goes first alternating;
#   6. summarize.py: medians, and each ratio as the median over the rounds of attamba's figure over
#      llama.cpp's in the same round and test (a drift of the shared host between tests cancels)
#      -> docs/bench/peers.json, a markdown table on stdout.
# Both warm up once before they are timed (llama-bench's default: a prompt run, then one generated token;
# attamba generate --warmup 1 the same: the first prefill of a process also creates its scratch buffers,
# 8-15% of a 512-token prefill here, and its first decode step loads the decode kernels, ~10 ms).
# llama.cpp runs with OMP_WAIT_POLICY=PASSIVE (its OpenMP barriers spin otherwise, which collapses on a
# shared machine) and --repack 0 (AMX may be advertised in a VM and not work); attamba on PoCL with
# POCL_MAX_PTHREAD_COUNT=THREADS. Both with THREADS threads (default 2). Both keep an f16 KV cache
# (llama-bench's default; attamba --cache-type f16); decode at depth also runs attamba's f32 cache.
#
#   bench/peers/llamacpp.sh [--rounds N] [--threads T] [--dir DIR] [--out FILE]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=0.3.36 # llama-cpp-python; vendors llama.cpp 0c1e570 (2026-10-01)
ROUNDS=5
THREADS=2
DIR=$ROOT/build/peers
OUT=$ROOT/docs/bench/peers.json
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --dir) DIR=$(realpath -m "$2"); shift 2 ;; # absolute: the script works from DIR
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "llamacpp.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
ATTAMBA=${ATTAMBA:-$ROOT/build/attamba}
KV="--cache-type f16" # as llama-bench's default cache
[ -x "$ATTAMBA" ] || { echo "llamacpp.sh: build attamba first ($ATTAMBA)" >&2; exit 1; }
# a python with numpy (the GGUF conversion): $PYTHON, else python3 on PATH, else Debian's
for PY in ${PYTHON:-} python3 /usr/bin/python3; do "$PY" -c 'import numpy' 2>/dev/null && break; PY=; done
[ -n "$PY" ] || { echo "llamacpp.sh: no python3 with numpy (set PYTHON, or apt-get install python3-numpy)" >&2; exit 1; }
mkdir -p "$DIR/models" "$DIR/runs"
cd "$DIR"
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$ROOT/build/pocl-cache} ATTAMBA_CACHE_DIR=${ATTAMBA_CACHE_DIR:-$ROOT/build/kernel-cache}
export POCL_MAX_PTHREAD_COUNT=$THREADS
say() { printf '\n== %s\n' "$*"; }

# 1. source
SDIST=llama_cpp_python-$VERSION.tar.gz
if [ ! -f "$SDIST" ]; then
    say "pip download llama-cpp-python==$VERSION (sdist)"
    pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d .
fi
sha256sum "$SDIST"
LC=$DIR/llama_cpp_python-$VERSION/vendor/llama.cpp
[ -d "$LC" ] || tar xzf "$SDIST"

# 2. builds
BIN=$DIR/build-cpu/bin
if [ ! -x "$BIN/llama-bench" ] || [ ! -x "$BIN/llama-quantize" ]; then
    say "building llama.cpp's CPU backend"
    cmake -S "$LC" -B build-cpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    ninja -C build-cpu -j"$(nproc)" llama-bench llama-quantize llama
fi
if [ ! -x lc_logits ] || [ "$ROOT/bench/peers/lc_logits.c" -nt lc_logits ]; then
    cc -O2 -o lc_logits "$ROOT/bench/peers/lc_logits.c" -I"$LC/include" -I"$LC/ggml/include" -L"$BIN" -lllama \
        -Wl,-rpath,"$BIN"
fi

# 3. models
M=$DIR/models
[ -f "$M/p8/model.safetensors" ] || "$ATTAMBA" init --preset paper-60m --seed 1 --out "$M/p8"
if [ ! -f "$M/tf/model.safetensors" ]; then
    "$PY" - "$M" <<'EOF'
import json, sys
c = json.load(open(f"{sys.argv[1]}/p8/config.json"))
c["kind"] = "transformer"
json.dump(c, open(f"{sys.argv[1]}/tf-config.json", "w"), indent=1)
EOF
    "$ATTAMBA" init --config "$M/tf-config.json" --seed 1 --out "$M/tf"
fi
for m in tf p8; do
    for t in f16 q8; do
        [ -f "$M/$m-$t/model.safetensors" ] || "$ATTAMBA" quantize --type $t --in "$M/$m" --out "$M/$m-$t"
    done
done
[ -f "$M/tf-f32.gguf" ] || PYTHONPATH=$LC/gguf-py "$PY" "$ROOT/bench/peers/to_gguf.py" "$M/tf" "$M/tf-f32.gguf"
[ -f "$M/tf-f16.gguf" ] || "$BIN/llama-quantize" "$M/tf-f32.gguf" "$M/tf-f16.gguf" F16 >runs/quantize-f16.log 2>&1
[ -f "$M/tf-q8.gguf" ] || "$BIN/llama-quantize" "$M/tf-f32.gguf" "$M/tf-q8.gguf" Q8_0 >runs/quantize-q8.log 2>&1

# 4. equivalence: 64 ids (256 = our BOS, then bytes-and-beyond ids), through both engines
say "equivalence"
"$PY" -c "import random; r = random.Random(7); print(' '.join(['256'] + [str(r.randrange(32000)) for _ in range(63)]))" \
    > runs/tok64.txt
for t in f32 f16 q8; do
    am=$M/tf && [ $t != f32 ] && am=$M/tf-$t
    "$ATTAMBA" forward --model "$am" --input runs/tok64.txt --output runs/at-$t.bin >/dev/null
    ./lc_logits "$M/tf-$t.gguf" runs/tok64.txt runs/lc-$t.bin >/dev/null 2>runs/lc-$t.log
done

# 5. rounds: each test's engines back to back (seconds apart, so that a drift of the shared host hits
# both alike), the order alternating between tests and rounds; summarize.py sets each attamba figure
# against llama.cpp's of the same round and test
PROMPT512=$("$PY" -c "print(('In the beginning God created the heaven and the earth. ' * 64)[:511], end='')")
PROMPT2048=$("$PY" -c "print(('And the earth was without form, and void. ' * 64)[:2047], end='')")
rm -f runs/lc-r* runs/at-r*
llama_test() { # round, weight type, test
    local args
    case $3 in
    pp512) args="-p 512 -n 0" ;;
    pp2048) args="-p 2048 -n 0" ;;
    tg128) args="-p 0 -n 128" ;;
    esac
    OMP_WAIT_POLICY=PASSIVE "$BIN/llama-bench" -m "$M/tf-$2.gguf" -t "$THREADS" $args -r 1 --repack 0 -o json \
        >runs/lc-r$1-$2-$3.json 2>runs/lc-r$1-$2-$3.log
}
attamba_test() { # round, weight type, test: both kinds
    local prompt=$PROMPT512 n=1 m
    [ $3 = pp2048 ] && prompt=$PROMPT2048
    [ $3 = tg128 ] && prompt="" && n=128
    for m in tf p8; do
        [ $2 = f32 ] || m=$m-$2
        "$ATTAMBA" generate --model "$M/$m" --prompt "$prompt" -n $n --temperature 0 --warmup 1 $KV 2>&1 \
            >/dev/null | grep prefill >runs/at-r$1-$m-$3.txt
    done
}
llama_depth() {
    OMP_WAIT_POLICY=PASSIVE "$BIN/llama-bench" -m "$M/tf-f32.gguf" -t "$THREADS" -p 0 -n 32 -d 4096,16384 -r 1 \
        --repack 0 -o json >runs/lc-r$1-depth.json 2>runs/lc-r$1-depth.log
}
attamba_depth() {
    "$ATTAMBA" bench decode --contexts 4096,16384 --prefill-max 0 --steps 8 --only "transformer,attamba P=8 L=8" \
        --weight-types f32 --cache-types f32,f16 --json runs/at-r$1-depth.json >/dev/null
}
for r in $(seq 1 "$ROUNDS"); do
    say "round $r of $ROUNDS ($(uptime | sed 's/.*load/load/'))"
    i=$r
    for t in f32 f16 q8; do
        for test in pp512 pp2048 tg128; do
            i=$((i + 1))
            if [ $((i % 2)) = 0 ]; then llama_test $r $t $test; attamba_test $r $t $test
            else attamba_test $r $t $test; llama_test $r $t $test; fi
        done
    done
    if [ $((r % 2)) = 1 ]; then llama_depth $r; attamba_depth $r; else attamba_depth $r; llama_depth $r; fi
done

# 6. summary
say "summary"
"$PY" "$ROOT/bench/peers/summarize.py" --runs runs --rounds "$ROUNDS" --threads "$THREADS" --sdist "$SDIST" --out "$OUT"
