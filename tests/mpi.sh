#!/usr/bin/env bash
# Training under mpirun (two ranks on this machine, one one-core device each):
#  1. the losses of `mpirun -np 2 attamba train` equal the one-process run's within 1e-5 relative;
#  2. killing one rank (kill -9) ends the whole job within seconds, with mpirun's message;
#  3. the last checkpoint loads, and --resume (two ranks again) continues the loss curve: every
#     step's loss equals the uninterrupted run's within 1e-5 relative.
#   tests/mpi.sh ATTAMBA_BINARY
set -euo pipefail
cli=$1
work=$(mktemp -d /tmp/attamba-mpi-XXXXXX)
trap 'rm -rf "$work"' EXIT
export POCL_MAX_PTHREAD_COUNT=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# Under a sanitizer build the ranks skip the leak check: Open MPI unloads its plugins at MPI_Finalize,
# so their leaks have no module to suppress by (the one-process runs are still checked).
mpi=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun -np 2 --oversubscribe --allow-run-as-root)

# a small fixed corpus: a few sentences repeated with variations
for i in $(seq 0 1999); do
    case $(( (i * 7) % 4 )) in
        0) printf 'the cat sat on the mat. ' ;; 1) printf 'a dog ran in the park. ' ;;
        2) printf 'the sun is warm today. ' ;; 3) printf 'we read a book at night. ' ;;
    esac
done > "$work/corpus.txt"
train=("$cli" train --preset tiny --data "$work/corpus.txt" --batch 6 --seq 128 --val-every 0 --val-windows 4
       --seed 5)

losses() { grep -o '"loss": [-0-9.e]*' "$1/metrics.jsonl" | cut -d' ' -f2; }
# same_losses A B N: both logged N losses, pairwise within 1e-5 relative
same_losses() {
    paste <(losses "$1") <(losses "$2") | awk -v n="$3" -v what="$4" '
        { d = $1 - $2; if (d < 0) d = -d; a = $1 < 0 ? -$1 : $1
          if (NF != 2 || d > 1e-5 * a) { printf "%s: step %d: %s vs %s\n", what, NR, $1, $2; bad = 1 } }
        END { if (NR != n) { printf "%s: %d losses, want %d\n", what, NR, n; bad = 1 } exit bad }'
}

echo "== one process, then two ranks, 40 steps"
"${train[@]}" --steps 40 --out "$work/one" > /dev/null 2>&1
"${mpi[@]}" "${train[@]}" --steps 40 --out "$work/two" > "$work/two.log" 2>&1 || { cat "$work/two.log"; exit 1; }
grep -q "rank 1/2" "$work/two.log" || { echo "no second rank in:"; cat "$work/two.log"; exit 1; }
same_losses "$work/one" "$work/two" 40 "two ranks vs one process"

echo "== kill -9 one rank of a running job"
"${mpi[@]}" "${train[@]}" --steps 40 --ckpt-every 2 --out "$work/cut" > "$work/cut.log" 2>&1 &
job=$!
for _ in $(seq 1 600); do # until a checkpoint and a few steps exist (at most 60 s)
    [ -e "$work/cut/latest" ] && [ "$(losses "$work/cut" 2>/dev/null | wc -l)" -ge 5 ] && break
    sleep 0.1
done
victim=$(pgrep -n -f "^$cli train .*--out $work/cut" || true)
[ -n "$victim" ] || { echo "no rank to kill (the job ended early?)"; cat "$work/cut.log"; exit 1; }
killed_at=$(date +%s.%N)
kill -9 "$victim"
rc=0
wait "$job" || rc=$?
ended=$(awk -v a="$killed_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "job ended $ended s after the kill, exit code $rc"
[ "$rc" -ne 0 ] || { echo "the job reported success after losing a rank"; exit 1; }
awk -v t="$ended" 'BEGIN { exit !(t < 30) }' || { echo "the job took $ended s to end"; exit 1; }
grep -qi "signal 9\|killed\|aborted" "$work/cut.log" || { echo "no message about the lost rank:"; cat "$work/cut.log"; exit 1; }
ckpt=$(cat "$work/cut/latest")
"$cli" generate --model "$work/cut/$ckpt" --prompt "the " -n 4 > "$work/gen.log" 2>&1 ||
    { echo "the last checkpoint $ckpt does not load:"; cat "$work/gen.log"; exit 1; }

echo "== resume on two ranks from $ckpt"
"${mpi[@]}" "${train[@]}" --steps 40 --resume --out "$work/cut" > "$work/resume.log" 2>&1 || { cat "$work/resume.log"; exit 1; }
grep -q "resuming" "$work/resume.log" || { echo "did not resume:"; cat "$work/resume.log"; exit 1; }
same_losses "$work/one" "$work/cut" 40 "killed + resumed vs uninterrupted"
echo "mpi: ok"
