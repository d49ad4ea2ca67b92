#!/usr/bin/env bash
# The examples (examples/*.c, the public API alone) run and agree with each other and the CLI:
#  1. example_train trains a tiny byte-level model on a small corpus (its held-out loss falls) and saves it;
#  2. example_greedy on that model prints what `attamba generate --temperature 0` prints;
#  3. example_batched decodes three prompts together: each prints what example_greedy prints alone.
#   tests/examples.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d /tmp/attamba-examples-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for i in $(seq 0 1999); do
    case $(( (i * 7) % 4 )) in
        0) printf 'the cat sat on the mat. ' ;; 1) printf 'a dog ran in the park. ' ;;
        2) printf 'the sun is warm today. ' ;; 3) printf 'we read a book at night. ' ;;
    esac
done > "$work/corpus.txt"

"$build/example_train" "$work/corpus.txt" "$work/model" 100 > "$work/train.txt" || fail "example_train exited $?"
cat "$work/train.txt"
first=$(grep -o 'held-out [0-9.]*' "$work/train.txt" | head -1 | cut -d' ' -f2)
last=$(grep -o 'held-out [0-9.]*' "$work/train.txt" | tail -1 | cut -d' ' -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a && b < 2.0) }' ||
    fail "held-out loss did not fall below 2: $first -> $last"
[ -f "$work/model/config.json" ] && [ -f "$work/model/model.safetensors" ] || fail "no saved model"

for p in "the cat" "a dog ran" "we"; do
    "$build/example_greedy" "$work/model" "$p" 24 > "$work/greedy.txt" 2> /dev/null || fail "example_greedy exited $?"
    "$build/attamba" generate --model "$work/model" --prompt "$p" -n 24 --temperature 0 > "$work/cli.txt" 2> /dev/null ||
        fail "attamba generate exited $?"
    cmp -s "$work/greedy.txt" "$work/cli.txt" ||
        fail "example_greedy and attamba generate differ on '$p': $(cat "$work/greedy.txt") | $(cat "$work/cli.txt")"
    head -1 "$work/greedy.txt" >> "$work/alone.txt"
done
"$build/example_batched" "$work/model" 24 "the cat" "a dog ran" "we" > "$work/batched.txt" ||
    fail "example_batched exited $?"
cat "$work/batched.txt"
grep '^\[' "$work/batched.txt" | sed 's/^\[[0-9]*\] //' > "$work/batched_texts.txt"
diff "$work/alone.txt" "$work/batched_texts.txt" > /dev/null ||
    fail "batched texts differ from the texts alone: $(diff "$work/alone.txt" "$work/batched_texts.txt")"
echo "examples: ok"
