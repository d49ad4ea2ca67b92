#!/usr/bin/env bash
# The benchmark suite's reports, end to end, on two one-core PoCL devices:
#  1. `bench suite` (a few steps, short times) writes one JSON report per device, report.md and the
#     roofline SVGs, and every report validates against docs/bench/schema.json (as does a single
#     benchmark's --json array);
#  2. report.md and the SVGs are a function of the JSON alone: `bench report` on a copy holding only
#     the JSON files writes byte-identical files;
#     the committed suite run in docs/bench/suite/ is likewise regenerated from its JSON alone;
#  3. `bench compare` matches every entry of the two devices' reports and prints their ratios;
#     a broken report is refused with its file named;
#  4. `bench train --profile` prints each kernel's share of a step and the zeroing + AdamW line;
#  5. `bench gemm` times every backend and layout asked for, per GEMM of a queue (--queue), with the
#     device results checked against the host BLAS.
#   tests/bench.sh ATTAMBA_BINARY SOURCE_DIR
set -euo pipefail
cli=$1
src=$2
work=$(mktemp -d /tmp/attamba-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
export POCL_DEVICES="pthread pthread" POCL_MAX_PTHREAD_COUNT=1
fail() { echo "FAIL: $*"; exit 1; }

"$cli" bench suite --devices all --only layer,ssm --seconds 0.01 --out "$work/a" > "$work/suite.log" ||
    { cat "$work/suite.log"; fail "bench suite exited with $?"; }
mapfile -t reports < <(find "$work/a" -maxdepth 1 -name '*.json' | sort)
[ "${#reports[@]}" -eq 2 ] || fail "want 2 device reports, got ${#reports[@]}"
for f in report.md "roofline-$(basename "${reports[0]}" .json).svg" "roofline-$(basename "${reports[1]}" .json).svg"; do
    [ -s "$work/a/$f" ] || fail "suite did not write $f"
done
for r in "${reports[@]}"; do
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if len(d["entries"]) >= 10 and not d["failures"] else 1)' "$r" ||
        fail "$r: too few entries or a failed step"
done

if python3 -c 'import jsonschema' 2>/dev/null; then
    "$cli" bench layer --rows 64 --copy-mib 1 --seconds 0.01 --json "$work/layer.json" > /dev/null
    python3 "$src/tests/bench_schema.py" "$src/docs/bench/schema.json" "${reports[@]}" "$work/layer.json" ||
        fail "schema validation"
    # the validator is not a rubber stamp: a report without its roofline fractions fails
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); del d["entries"][0]["roofline"]; json.dump(d, open(sys.argv[2], "w"))' \
        "${reports[0]}" "$work/broken.json"
    ! python3 "$src/tests/bench_schema.py" "$src/docs/bench/schema.json" "$work/broken.json" > /dev/null ||
        fail "a report without roofline validated"
else
    echo "SKIP schema validation: python3 jsonschema missing (scripts/setup.sh installs python3-jsonschema)"
fi

mkdir "$work/b"
cp "${reports[@]}" "$work/b/"
"$cli" bench report "$work/b" > /dev/null || fail "bench report exited with $?"
for f in "$work/a"/report.md "$work/a"/*.svg; do
    cmp "$f" "$work/b/$(basename "$f")" || fail "$(basename "$f") is not regenerated identically from the JSON"
done

mkdir "$work/docs"
cp "$src"/docs/bench/suite/*.json "$work/docs/"
"$cli" bench report "$work/docs" > /dev/null || fail "bench report of docs/bench/suite exited with $?"
for f in "$src"/docs/bench/suite/report.md "$src"/docs/bench/suite/*.svg; do
    cmp "$f" "$work/docs/$(basename "$f")" ||
        fail "docs/bench/suite/$(basename "$f") differs from what bench report makes of its JSON (regenerate it)"
done
if python3 -c 'import jsonschema' 2>/dev/null; then
    python3 "$src/tests/bench_schema.py" "$src/docs/bench/schema.json" "$src"/docs/bench/suite/*.json > /dev/null ||
        fail "docs/bench/suite does not validate"
fi

"$cli" bench compare "${reports[@]}" > "$work/compare.txt" || fail "bench compare exited with $?"
n_entries=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["entries"]))' "${reports[0]}")
# every entry of the first report appears with a ratio for the second
n_rows=$(grep -cE '[0-9]\.[0-9]+x' "$work/compare.txt" || true)
[ "$n_rows" -ge "$n_entries" ] || { cat "$work/compare.txt"; fail "compare shows $n_rows ratios for $n_entries entries"; }
echo '{"schema": "attamba-bench", "entries": 3}' > "$work/bad.json"
if "$cli" bench compare "${reports[0]}" "$work/bad.json" > /dev/null 2> "$work/bad.err"; then
    fail "compare accepted a broken report"
fi
grep -q "bad.json" "$work/bad.err" || { cat "$work/bad.err"; fail "compare's error does not name the file"; }

# 4. bench train --profile: per-step kernel shares after the warm-up, and the zeroing + AdamW line
"$cli" bench train --preset tiny --steps 2 --profile > "$work/profile.txt" || fail "bench train --profile exited with $?"
grep -q "^adamw_step .*%" "$work/profile.txt" || { cat "$work/profile.txt"; fail "no per-step row for adamw_step"; }
grep -qE "^zeroing \(fill_u32\) [0-9.]+ ms \+ AdamW \(adamw_step\) [0-9.]+ ms per step: [0-9.]+% of the [0-9.]+ ms step \(4 steps profiled\)" \
    "$work/profile.txt" || { cat "$work/profile.txt"; fail "no zeroing + AdamW line"; }

# 5. bench gemm: one entry per backend and layout, each with its queue, device results close to the host's
"$cli" bench gemm --device 0:0 --shapes 37x29x41:nn,37x29x41:nt,64x8x130:tn --rounds 2 --queue 3 --seconds 0.01 \
    --json "$work/gemm.json" > "$work/gemm.txt" || { cat "$work/gemm.txt"; fail "bench gemm exited with $?"; }
python3 - "$work/gemm.json" <<'PY' || { cat "$work/gemm.txt"; fail "bench gemm's JSON"; }
import json, sys
e = json.load(open(sys.argv[1]))
cases = {(x["M"], x["N"], x["K"], x["variant"].split()[-1]) for x in e}
assert cases == {(37, 29, 41, "nn"), (37, 29, 41, "nt"), (64, 8, 130, "tn")}, cases
assert all(x["queue"] == 3 and x["rounds"] == 2 for x in e)
device = [x for x in e if not x.get("on_host")]
assert device and all(x["max_rel_err"] < 1e-4 for x in device), device
PY
echo "bench suite, report, compare, train --profile, gemm: ok (${#reports[@]} devices, $n_entries entries each)"
