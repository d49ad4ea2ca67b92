#!/usr/bin/env bash
# The one place dependencies arrive: Debian packages only.
# As root it installs what is missing with apt-get; otherwise it prints the command to run.
#   scripts/setup.sh            build + test dependencies
#   scripts/setup.sh --torch    also python3-torch (only to regenerate golden vectors)
set -euo pipefail

pkgs=(build-essential cmake pkg-config
      ocl-icd-opencl-dev opencl-c-headers ocl-icd-libopencl1 pocl-opencl-icd clinfo
      libclblast-dev check libcjson-dev libopenblas-dev libxxhash-dev bible-kjv
      clang-15   # PoCL's kernel compiler, libFuzzer for scripts/fuzz.sh, offline GPU compiles
      rocm-device-libs  # AMD GPU builtins for scripts/portability.py
      libclc-15  # OpenCL builtins for nvptx: scripts/portability.py links them (PTX that ptxas accepts)
      openmpi-bin libopenmpi-dev   # training across processes and machines (mpirun)
      libsentencepiece-dev         # SentencePiece tokenizers (optional: CMake builds without them)
      python3-jsonschema           # tests: benchmark reports against docs/bench/schema.json
      python3-venv python3-pip python3-setuptools python3-numpy python3-pytest  # python/ bindings, tests/python.sh
      oclgrind)                    # tests: a few suites on the Oclgrind simulator
[ "${1:-}" = "--torch" ] && pkgs+=(python3-torch python3-numpy)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all dependencies present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}"
  echo "run:   sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
