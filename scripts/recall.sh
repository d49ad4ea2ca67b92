#!/usr/bin/env bash
# What compression costs in recall (issue 16; docs/recall.md): every model trains with the same budget
# on seeded synthetic tasks (`attamba data mqar|passkey`), then `attamba eval --task` scores exact-match
# accuracy on held-out seeds: MQAR by number of pairs, by the pair's offset in its chunk and by
# distance, at the training length and beyond it; passkey by depth; the central Attamba models also
# with P and L changed at test time. Rerunnable and resumable: a finished run is skipped, an
# interrupted one resumes from its checkpoint.
#
#   scripts/recall.sh            the study (about 2.5 hours on two cores), then build/recall/table.md
#   scripts/recall.sh --quick    a reduced version (3 models, short runs: minutes)
#   ONLY="attamba-p8-l4 transformer" scripts/recall.sh     selected models
#   STEPS=, BATCH=, SEQ=, OUT= override the budget and the place; TASKS="mqar" one task; CENTRAL=
#   (the models trained with a second seed) and PASSKEY_MODELS= other lists; RESTORE=docs/recall/results.json
#   first writes the committed runs back into OUT, so a fresh checkout trains only what they lack
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
if [ $quick = 1 ]; then
  STEPS=${STEPS:-120} BATCH=${BATCH:-16} SEQ=${SEQ:-64} OUT=${OUT:-build/recall-quick}
  PAIRS=${PAIRS:-2,4,8} TRAIN_EXAMPLES=4000 TEST_EXAMPLES=100 TASKS=${TASKS:-"mqar passkey"}
else
  STEPS=${STEPS:-1500} BATCH=${BATCH:-32} SEQ=${SEQ:-128} OUT=${OUT:-build/recall}
  PAIRS=${PAIRS:-2,4,8,16} TRAIN_EXAMPLES=60000 TEST_EXAMPLES=500 TASKS=${TASKS:-"mqar passkey"}
fi
# passkey examples are 4x longer (the needle and the question take ~100 bytes), in 4x fewer rows
PSEQ=$((SEQ * 4)) PBATCH=$(( BATCH / 4 > 0 ? BATCH / 4 : 1 ))
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$PWD/build/pocl-cache}
scripts/corpus.sh build/corpus >/dev/null
A=build/attamba
mkdir -p "$OUT/data"
[ -n "${RESTORE:-}" ] && python3 tools/recall_report.py --restore "$RESTORE" "$OUT"

# The base: d=64, 2 layers, 4 heads of 16, byte-sized vocabulary (258), SSMs E=32, nh=4, N=8 (the tiny preset).
base='"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "head_dim": 16, "ffn_dim": 128,
      "ssm_inner": 32, "ssm_heads": 4, "ssm_state": 8, "ssm_groups": 1, "ssm_conv": 4'
# name | JSON fields on top of the base. The sliding window keeps as many K/V rows as Attamba P=8
# L=32 at the training length (SEQ/8 boundaries + 33); the narrow transformers match the KV bytes of
# P=4 (width 16) and P=8 (width 8).
models=(
  'transformer|"kind": "transformer"'
  "transformer-swa-L$((SEQ / 8 + 33))|\"kind\": \"transformer-swa\", \"window\": $((SEQ / 8 + 33))"
  'transformer-width16|"kind": "transformer", "n_heads": 2, "n_kv_heads": 2, "head_dim": 8'
  'transformer-width8|"kind": "transformer", "n_heads": 1, "n_kv_heads": 1, "head_dim": 8'
)
for p in 2 4 8 16 32; do for l in 4 32; do models+=("attamba-p$p-l$l|\"chunk\": $p, \"window\": $l"); done; done
models+=('attamba-p8-l4-uniform|"chunk": 8, "window": 4, "boundaries": "uniform"'
         'attamba-p8-l4-pseudo|"chunk": 8, "window": 4, "pseudo": true')
# trained with a second seed; trained on passkey too
central=${CENTRAL-"transformer attamba-p8-l4"}
passkey_models=${PASSKEY_MODELS-"transformer transformer-swa-L$((SEQ / 8 + 33)) attamba-p8-l4 attamba-p8-l32 attamba-p32-l32"}
if [ $quick = 1 ]; then
  models=("${models[0]}" "${models[1]}" 'attamba-p8-l4|"chunk": 8, "window": 4')
  central=${CENTRAL-} passkey_models=${PASSKEY_MODELS-"transformer attamba-p8-l4"}
fi

# Held-out data: seeds 1 (train) and 1001+ (test); passkey filler from the training / validation text.
data() { # FILE args...: generates FILE once
  local f=$1; shift
  [ -f "$f" ] || $A data "$@" --out "$f" > /dev/null
}
data "$OUT/data/mqar-train.task" mqar --seq "$SEQ" --pairs "$PAIRS" --examples $TRAIN_EXAMPLES --seed 1
data "$OUT/data/mqar-test.task" mqar --seq "$SEQ" --pairs "$PAIRS" --examples $TEST_EXAMPLES --seed 1001
for mult in 2 4; do # beyond the training length: the same pair counts, longer gaps
  data "$OUT/data/mqar-test-x$mult.task" mqar --seq $((SEQ * mult)) --pairs "$PAIRS" --examples $TEST_EXAMPLES --seed $((1001 + mult))
done
data "$OUT/data/passkey-train.task" passkey --seq "$PSEQ" --digits 4 --examples $((TRAIN_EXAMPLES / 4)) --seed 1 \
  --filler build/corpus/kjv-train.txt
data "$OUT/data/passkey-test.task" passkey --seq "$PSEQ" --digits 4 --examples $TEST_EXAMPLES --seed 1001 \
  --depth 0,0.25,0.5,0.75,1 --filler build/corpus/kjv-valid.txt

run() { # TASK NAME SEED FIELDS
  local task=$1 name=$2 seed=$3 fields=$4 dir=$OUT/$1/$2-s$3
  mkdir -p "$dir"
  if [ -f "$dir/done" ]; then echo "recall: $task $name seed $seed done"; return; fi
  printf '{%s, %s}\n' "$base" "$fields" > "$dir/recall-config.json"
  local seq=$SEQ batch=$BATCH
  [ "$task" = passkey ] && seq=$PSEQ batch=$PBATCH
  local args=(--config "$dir/recall-config.json" --data "$OUT/data/$task-train.task" --val-frac 0.02
              --steps "$STEPS" --batch "$batch" --seq "$seq" --seed "$seed" --val-every $((STEPS / 5))
              --val-windows 32 --ckpt-every 250 --out "$dir")
  [ -f "$dir/latest" ] && args+=(--resume)
  echo "recall: training $task $name seed $seed"
  local t0=$SECONDS
  $A train "${args[@]}" 2>&1 | tail -n 1
  echo $((SECONDS - t0)) > "$dir/train-seconds"
  if [ "$task" = mqar ]; then
    $A eval --model "$dir" --task mqar --data "$OUT/data/mqar-test.task" --batch 16 --json "$dir/eval.json" > "$dir/eval.txt"
    for mult in 2 4; do
      $A eval --model "$dir" --task mqar --data "$OUT/data/mqar-test-x$mult.task" --batch 8 \
        --json "$dir/eval-x$mult.json" > /dev/null
    done
    if [[ $name == attamba-p8-* && $name != *pseudo* ]]; then # P and L changed at test time
      for p in 2 4 8 16 32; do for l in 4 32; do
        $A eval --model "$dir" --task mqar --data "$OUT/data/mqar-test.task" --batch 16 --chunk $p --window $l \
          --json "$dir/eval-p$p-l$l.json" > /dev/null
      done; done
    fi
  else
    $A eval --model "$dir" --task passkey --data "$OUT/data/passkey-test.task" --batch 16 --json "$dir/eval.json" > "$dir/eval.txt"
  fi
  touch "$dir/done"
}

for entry in "${models[@]}"; do
  name=${entry%%|*} fields=${entry#*|}
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  for task in $TASKS; do
    if [ "$task" = passkey ] && [[ " $passkey_models " != *" $name "* ]]; then continue; fi
    run "$task" "$name" 1 "$fields"
    if [[ " $central " == *" $name "* ]]; then run "$task" "$name" 2 "$fields"; fi
  done
done

python3 tools/recall_report.py "$OUT" "$STEPS" "$BATCH" "$SEQ"
echo "recall: tables in $OUT/table.md, plot in $OUT/recall-vs-kv.svg"
