#!/usr/bin/env bash
# The one prepared GPU check: on a machine with a GPU and its vendor's OpenCL driver, build, run the
# test suite on the GPU and the benchmark suite (`bench suite --full`), and keep the logs and the
# report where they come back. CI never runs it; nothing depends on it.
#
#   scripts/gpu-check.sh --fetch      here (network): the Debian packages the build needs, into .gpu/debs
#   scripts/gpu-check.sh [OUT_DIR]    there: unpack them into .gpu/root (never into /), build, test, bench
#
# A lent GPU machine (the `device` tool) starts bare and offline, with a compiler, CMake and the
# vendor's driver, so the libraries travel as packages: `run` with carry [".gpu"] and the command
# `scripts/gpu-check.sh "$OUT"`. Results: OUT_DIR (default docs/bench/gpu) gets build.log (the
# devices first), test.log, suite.log and suite/ (a JSON report per device, report.md, SVGs): seven
# files for one GPU, within what comes back from a lent machine; copy the suite into docs/bench/.
# Environment: GPU_CHECK_DEVICES (default gpu; `cpu` tries the whole flow on PoCL),
# GPU_CHECK_TEST_SECONDS (240), GPU_CHECK_SUITE_SECONDS (300), GPU_CHECK_SUITE (full).
set -uo pipefail
cd "$(dirname "$0")/.."
here=$PWD
gpu=$here/.gpu
pkgs=(ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers opencl-clhpp-headers clinfo
      libcjson1 libcjson-dev libxxhash0 libxxhash-dev libclblast1 libclblast-dev
      check libsubunit0 libsubunit-dev pkgconf-bin libpkgconf3)

if [ "${1:-}" = "--fetch" ]; then
    mkdir -p "$gpu/debs"
    (cd "$gpu/debs" && apt-get download "${pkgs[@]}") || { echo "gpu-check: apt-get download failed"; exit 1; }
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    du -sh "$gpu/debs"
    exit 0
fi

out=$(mkdir -p "${1:-docs/bench/gpu}" && cd "${1:-docs/bench/gpu}" && pwd) || exit 1
devices=${GPU_CHECK_DEVICES:-gpu}
log() { echo "== gpu-check: $*"; }

# ---- the libraries: from .gpu/debs when carried, else what the machine has ----
root=$gpu/root
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DATTAMBA_MPI=OFF)
if compgen -G "$gpu/debs/*.deb" > /dev/null; then
    rm -rf "$root" && mkdir -p "$root"
    for f in "$gpu"/debs/*.deb; do dpkg-deb -x "$f" "$root" || exit 1; done
    lib=$root/usr/lib/x86_64-linux-gnu
    # absolute paths inside the packages' build files, pointed into the unpacked tree
    sed -i "s|/usr/lib/x86_64-linux-gnu/libOpenCL.so|$lib/libOpenCL.so|g" "$lib"/cmake/CLBlast/*.cmake
    export PKG_CONFIG_LIBDIR=$lib/pkgconfig:$root/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root
    export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} PATH=$root/usr/bin:$PATH
    cmake_args+=(-DPKG_CONFIG_EXECUTABLE="$root/usr/bin/pkgconf" -DOpenCL_INCLUDE_DIR="$root/usr/include"
                 -DOpenCL_LIBRARY="$lib/libOpenCL.so" -DCLBlast_DIR="$lib/cmake/CLBlast")
    # the ICD loader finds drivers through /etc/OpenCL/vendors; a container may mount NVIDIA's
    # library without its .icd file
    if [ ! -d /etc/OpenCL/vendors ] || [ -z "$(ls /etc/OpenCL/vendors 2>/dev/null)" ]; then
        mkdir -p "$gpu/vendors"
        for l in libnvidia-opencl.so.1 libamdocl64.so libigdrcl.so; do
            ldconfig -p | grep -q "$l" && echo "$l" > "$gpu/vendors/${l%%.so*}.icd"
        done
        export OCL_ICD_VENDORS=$gpu/vendors
    fi
fi
log "OpenCL platforms and devices"
clinfo -l 2>&1 | tee "$out/build.log"

# ---- build ----
log "build ($(nproc) cores)"
{ cmake -S . -B build-gpu "${cmake_args[@]}" && cmake --build build-gpu -j"$(nproc)"; } >> "$out/build.log" 2>&1 ||
    { tail -40 "$out/build.log"; log "build failed (build.log)"; exit 1; }
export ATTAMBA_CACHE_DIR=$here/build-gpu/kernel-cache
./build-gpu/attamba devices | tee -a "$out/build.log"

# ---- tests on the GPU (the multi-device and MPI suites need two devices / mpirun: left out) ----
export ATTAMBA_DEVICE=${devices%%,*}
log "tests on ATTAMBA_DEVICE=$ATTAMBA_DEVICE"
(cd build-gpu && timeout "${GPU_CHECK_TEST_SECONDS:-240}" ctest --output-on-failure -j4 -E 'test_multi|test_mpi') \
    > "$out/test.log" 2>&1
test_rc=$?
tail -25 "$out/test.log"

# ---- the benchmark suite ----
log "bench suite --${GPU_CHECK_SUITE:-full} --devices $devices"
timeout "${GPU_CHECK_SUITE_SECONDS:-300}" ./build-gpu/attamba bench suite "--${GPU_CHECK_SUITE:-full}" \
    --devices "$devices" --out "$out/suite" > "$out/suite.log" 2>&1
suite_rc=$?
tail -5 "$out/suite.log"
log "tests exit $test_rc, suite exit $suite_rc; results in $out"
[ "$test_rc" -eq 0 ] && [ "$suite_rc" -eq 0 ]
