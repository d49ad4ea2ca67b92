#!/usr/bin/env bash
# Suites on the other OpenCL implementations Debian has, besides PoCL:
#  - Oclgrind, a simulator that reports out-of-bounds accesses, data races and API misuse in the
#    kernels (it presents a GPU, so the GPU rows of the tuning table run, and CLBlast for GEMM);
#  - Mesa's rusticl on llvmpipe (a second CPU compiler and runtime), where mesa-opencl-icd is
#    installed (not by scripts/setup.sh: it registers its drivers for every process).
# Each suite must pass and exit 0 (their teardown crashed or hung at exit on both, issue 11), and
# Oclgrind must report nothing. An implementation that is not installed is skipped, and with
# neither the test is skipped (exit 77).
#   tests/other_impls.sh BUILD_DIR
set -uo pipefail
build=$1
log=$(mktemp -d /tmp/attamba-impls-XXXXXX)
trap 'rm -rf "$log"' EXIT
export CK_FORK=no CK_DEFAULT_TIMEOUT=900
ran=0
failed=0

run() { # label, then the command
    local label=$1 out="$log/$(echo "$1" | tr ' /' '__').txt"
    shift
    local t0=$SECONDS rc=0
    timeout 600 "$@" > "$out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL: $label exited with $rc"
        tail -n 20 "$out"
        failed=1
    else
        echo "ok:   $label ($((SECONDS - t0)) s): $(grep -E '^[0-9]+%: Checks' "$out" || echo 'no summary')"
    fi
    ran=1
}

if command -v oclgrind > /dev/null; then
    for t in test_elementwise test_loss test_layer; do
        report="$log/$t.oclgrind"
        run "oclgrind $t" oclgrind --check-api --data-races --log "$report" "$build/$t"
        if [ -s "$report" ]; then
            echo "FAIL: Oclgrind reported on $t:"
            head -n 40 "$report"
            failed=1
        fi
    done
else
    echo "skip: oclgrind not installed"
fi

rusticl=$(RUSTICL_ENABLE=llvmpipe "$build/attamba" devices 2> /dev/null | awk '/rusticl/ {sub(/\*$/, "", $1); print $1; exit}')
if [ -n "$rusticl" ]; then
    for t in test_elementwise test_layer test_loss; do
        RUSTICL_ENABLE=llvmpipe ATTAMBA_DEVICE=$rusticl run "rusticl $t" "$build/$t"
    done
else
    echo "skip: no rusticl device (mesa-opencl-icd)"
fi

[ "$ran" -eq 1 ] || exit 77
exit "$failed"
