#!/usr/bin/env bash
# The small-scale reproduction of the paper's comparison (docs/results.md). Every model gets the same
# budget (STEPS optimiser steps of BATCH x SEQ bytes) on the bundled corpus, then is evaluated on the
# held-out text. Rerunnable and resumable: a finished model is skipped, an interrupted one resumes
# from its last checkpoint (`attamba train --resume`).
#
#   scripts/study.sh                 all models, then docs/results.md and docs/study-curves.svg
#   STEPS=300 scripts/study.sh       a shorter budget
#   ONLY="attamba-p8-l8" scripts/study.sh   selected models
#   SEQ=, BATCH=, SEED=, OUT= another length, budget, seed or place; CURVES= where the plot goes
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-500} BATCH=${BATCH:-8} SEQ=${SEQ:-128} SEED=${SEED:-1} OUT=${OUT:-build/study}
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$PWD/build/pocl-cache}
scripts/corpus.sh build/corpus >/dev/null
mkdir -p "$OUT"

# The base: the `small` preset (d=128, 4 layers, 4 heads of 32, FFN 384, byte-level; SSMs E=64, nh=4, N=16).
base='"dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 4, "head_dim": 32, "ffn_dim": 384,
      "ssm_inner": 64, "ssm_heads": 4, "ssm_state": 16, "ssm_groups": 1, "ssm_conv": 4'
# name | JSON fields on top of the base. The sliding-window transformer keeps as many K/V rows as
# Attamba P=4 L=4 at the training length (SEQ/4 boundaries + L + 1).
models=(
  'transformer|"kind": "transformer"'
  'transformer-width32|"kind": "transformer", "n_heads": 4, "n_kv_heads": 4, "head_dim": 8'
  'transformer-width16|"kind": "transformer", "n_heads": 2, "n_kv_heads": 2, "head_dim": 8'
  "transformer-swa-L$((SEQ / 4 + 5))|\"kind\": \"transformer-swa\", \"window\": $((SEQ / 4 + 5))"
  'attamba-p4-l4|"chunk": 4, "window": 4'
  'attamba-p4-l32|"chunk": 4, "window": 32'
  'attamba-p8-l8|"chunk": 8, "window": 8'
  'attamba-p8-l32|"chunk": 8, "window": 32'
  'attamba-p8-l8-uniform|"chunk": 8, "window": 8, "boundaries": "uniform"'
  'attamba-p8-l8-random|"chunk": 8, "window": 8, "boundaries": "random:1"'
  'attamba-p8-l8-pseudo|"chunk": 8, "window": 8, "pseudo": true'
)

for entry in "${models[@]}"; do
  name=${entry%%|*} fields=${entry#*|}
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  dir=$OUT/$name
  mkdir -p "$dir"
  if [ -f "$dir/done" ]; then echo "study: $name done"; continue; fi
  printf '{%s, %s}\n' "$base" "$fields" > "$dir/study-config.json"
  args=(--config "$dir/study-config.json" --data build/corpus/kjv.txt --val-frac 0.05 --steps "$STEPS"
        --batch "$BATCH" --seq "$SEQ" --seed "$SEED" --val-every $((STEPS / 6)) --val-windows 64
        --ckpt-every 100 --out "$dir")
  [ -f "$dir/latest" ] && args+=(--resume)
  echo "study: training $name"
  build/attamba train "${args[@]}" 2>&1 | tail -n 2
  build/attamba eval --model "$dir" --data build/corpus/kjv-valid.txt --seq "$SEQ" --batch 8 > "$dir/eval.txt"
  build/attamba info --model "$dir" --context "$SEQ" --json > "$dir/info-$SEQ.json"
  build/attamba info --model "$dir" --context 4096 --json > "$dir/info-4096.json"
  touch "$dir/done"
done

python3 - "$OUT" "$STEPS" "$BATCH" "$SEQ" "$SEED" <<'PY'
import json, os, re, sys, subprocess, platform
out, steps, batch, seq, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = []
for name in sorted(os.listdir(out)):
    d = os.path.join(out, name)
    if not os.path.exists(os.path.join(d, "done")):
        continue
    ev = open(os.path.join(d, "eval.txt")).read()
    m = re.search(r"loss ([\d.]+)\s+perplexity ([\d.]+)\s+bits/byte ([\d.]+)", ev)
    i1 = json.load(open(os.path.join(d, f"info-{seq}.json")))
    i4 = json.load(open(os.path.join(d, "info-4096.json")))
    c1, c4 = i1["contexts"][0], i4["contexts"][0]
    secs = None
    for line in open(os.path.join(d, "metrics.jsonl")):
        r = json.loads(line)
        if "seconds" in r:
            secs = r["seconds"]
    rows.append(dict(name=name, params=i1["parameters"], ppl=float(m.group(2)), bpb=float(m.group(3)),
                     cache=c1["cache_bytes"], cache_full=c1["cache_bytes_full_attention"], cache4k=c4["cache_bytes"],
                     flops=c1["attention_flops_per_token"], flops4k=c4["attention_flops_per_token"], secs=secs))
json.dump(rows, open(os.path.join(out, "results.json"), "w"), indent=1)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
ref = {r["name"]: r for r in rows}.get("transformer")
lines = [f"| model | params | val ppl | bits/byte | KV cache @{seq} (vs full) | KV cache @4K | attn FLOP/token @{seq} | @4K | train s |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    rel = f" (1/{r['cache_full']/r['cache']:.1f})" if r["cache"] else ""
    lines.append(f"| {r['name']} | {r['params']:,} | {r['ppl']:.3f} | {r['bpb']:.4f} | {r['cache']:,}{rel} | "
                 f"{r['cache4k']:,} | {r['flops']:.3g} | {r['flops4k']:.3g} | {r['secs'] or 0:.0f} |")
table = "\n".join(lines)
open(os.path.join(out, "table.md"), "w").write(
    f"Budget: {steps} steps x {batch} x {seq} bytes = {steps*batch*seq/1e6:.1f}M training bytes per model, seed {seed}; "
    f"commit {commit}; {cpu}, {os.cpu_count()} cores, PoCL.\n\n{table}\n")
print(table)
PY
args=()
for d in "$OUT"/*/; do n=$(basename "$d"); [ -f "$d/done" ] && args+=("$n=$d/metrics.jsonl"); done
CURVES=${CURVES:-docs/study-curves.svg}
python3 tools/plot_curves.py "$CURVES" "${args[@]}"
echo "study: table in $OUT/table.md, curves in $CURVES"
