#!/usr/bin/env bash
# The Python package (python/) against a build: a venv of Debian's python3 under BUILD_DIR (made once,
# with the system site packages for numpy and pytest), the package pip-installed into it offline, then
# its pytest suite with ATTAMBA_LIBRARY and ATTAMBA_CLI from the build. Exits 77 (skipped) only when
# /usr/bin/python3 or its venv, numpy or pytest modules are missing (scripts/setup.sh installs them).
#   tests/python.sh BUILD_DIR [PYTEST_ARGS...]   (e.g. -k session, --durations=10)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [PYTEST_ARGS...]" >&2; exit 2; }
build=$(cd "$1" && pwd)
shift
src=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3

if [ ! -x "$py" ]; then
    echo "SKIP: $py not found (scripts/setup.sh installs python3-venv python3-numpy python3-pytest)"
    exit 77
fi
for mod in venv ensurepip numpy pytest; do
    if ! "$py" -c "import $mod" 2> /dev/null; then
        echo "SKIP: $py has no module '$mod' (scripts/setup.sh installs python3-venv python3-numpy python3-pytest)"
        exit 77
    fi
done
for f in "$build/libattamba.so" "$build/attamba"; do
    [ -e "$f" ] || { echo "FAIL: $f not built" >&2; exit 1; }
done

venv=$build/python-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import numpy, pytest" 2> /dev/null; then
    rm -rf "$venv"
    "$py" -m venv --system-site-packages "$venv"
fi

# pip builds in the source tree; build from a copy so python/ stays clean
tmp=$(mktemp -d /tmp/attamba-python-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/python" "$tmp/python"
rm -rf "$tmp/python/build" "$tmp/python"/*.egg-info
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_INDEX=1
"$venv/bin/python" -m pip install -q --no-build-isolation --no-deps --force-reinstall "$tmp/python"

export ATTAMBA_LIBRARY=$build/libattamba.so ATTAMBA_CLI=$build/attamba
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$build/pocl-cache} ATTAMBA_CACHE_DIR=${ATTAMBA_CACHE_DIR:-$build/kernel-cache}
export PYTHONDONTWRITEBYTECODE=1
cd "$tmp"  # not the source tree: the tests import the installed package
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$src/python/tests" "$@"
