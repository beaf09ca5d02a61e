#!/usr/bin/env bash
# Prepare what travels to the device machine, here (with network), into the ignored folder .whl/:
#   .whl/*.whl       CPython 3.12 manylinux x86_64 wheels of benchmarks/device/wheels.txt (no deps: the list is
#                    complete; the device image has the rest, see benchmarks/device/README.md)
#   .whl/shared/     the part of ../shared ($ANONLAB_SHARED) that the GPU tests and CUDA benchmarks read,
#                    copied (never committed: .whl/ is ignored). On the device ANONLAB_SHARED points here.
# Then checks that the working tree that travels (tracked + untracked-not-ignored files + .whl/) stays under the
# device tool's limit of 64 MiB (its README, "Limits"). Exit 1 naming the cause when a wheel cannot be had, a
# shared path is missing, or the total is over.
#
#   bash benchmarks/device/wheels.sh          # idempotent: keeps wheels already there, drops stale ones
#
# Then, on the device: run(command="bash benchmarks/device/check.sh", carry=[".whl"], timeout_s=540).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEST=$ROOT/.whl
LIST=$ROOT/benchmarks/device/wheels.txt
LIMIT=$((64 * 1024 * 1024))   # the device tool's travel limit for the working tree, bytes
PY=${PYTHON:-python3}
SHARED_SRC=${ANONLAB_SHARED:-$ROOT/../shared}
# shared/ paths the device run reads (each a file or folder under $SHARED_SRC); what is left out, and why:
#   datasets/pennfudanped_penn (30 MB of PNGs) and pets09's stills (4 MB; its vtest.avi travels): over the limit beside av; the compositor's GPU
#   tests skip (shared_path) and precision.py measures YOLOX on the default set only. The open models (YuNet,
#   UltraFace, YOLOX-nano, NanoDet-m) travel inside the package (src/anonlab/models), not here.
SHARED=(
    datasets/widerface_val_parade_subset
    datasets/pets09_s2l1_vtest/vtest.avi    # 2.9 MB: benchmarks/redact.py --device cuda (PETS09 coverage, frames/s)
)
# the device's platform tags (device README, "Notes"): pip matches each manylinux tag exactly
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

die() { echo "wheels.sh: $*" >&2; exit 1; }

mkdir -p "$DEST"
grep -qxF '/.whl/' .gitignore || die ".gitignore lacks /.whl/: the wheels would be committed"

mapfile -t SPECS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$LIST" | grep -v '^$')
[ "${#SPECS[@]}" -gt 0 ] || die "$LIST names no wheel"
keep=()
for spec in "${SPECS[@]}"; do
    [[ $spec == *==* ]] || die "$LIST: '$spec' is not name==version"
    name=${spec%%==*}; ver=${spec#*==}
    norm=$(echo "$name" | tr 'A-Z-.' 'a-z__')   # a wheel file's name part (PEP 427)
    have=$(find "$DEST" -maxdepth 1 -iname "${norm}-${ver}-*.whl" | head -1)
    if [ -z "$have" ]; then
        if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                "${PLAT[@]}" -d "$DEST" "$spec" 2>/tmp/wheels_sh_err.$$; then
            # no wheel on PyPI (antlr4-python3-runtime 4.9.3 is an sdist): build one, accepted only if pure Python
            "$PY" -m pip wheel -q --no-deps --no-binary "$name" -w "$DEST" "$spec" >/dev/null 2>>/tmp/wheels_sh_err.$$ \
                || die "no CPython 3.12 manylinux wheel of $spec, and building one failed: $(tail -1 /tmp/wheels_sh_err.$$)"
        fi
        rm -f /tmp/wheels_sh_err.$$
        have=$(find "$DEST" -maxdepth 1 -iname "${norm}-${ver}-*.whl" | head -1)
        [ -n "$have" ] || die "pip gave no ${norm}-${ver}-*.whl for $spec"
        case $(basename "$have") in
            *-py3-none-any.whl|*-py2.py3-none-any.whl|*-cp312-*manylinux*x86_64*.whl|*-abi3-*manylinux*x86_64*.whl) ;;
            *) rm -f "$have"; die "$(basename "$have") does not run on the device (CPython 3.12, manylinux x86_64)" ;;
        esac
    fi
    keep+=("$(basename "$have")")
done
# one version of each package only: two stop the whole install there
for f in "$DEST"/*.whl; do
    [ -e "$f" ] || continue
    printf '%s\n' "${keep[@]}" | grep -qxF "$(basename "$f")" || { echo "wheels.sh: removing stale $(basename "$f")"; rm -f "$f"; }
done

rm -rf "$DEST/shared"
for rel in "${SHARED[@]}"; do
    [ -e "$SHARED_SRC/$rel" ] || die "$SHARED_SRC/$rel not found: set ANONLAB_SHARED or place shared/ beside the checkout"
    mkdir -p "$DEST/shared/$(dirname "$rel")"
    cp -r "$SHARED_SRC/$rel" "$DEST/shared/$rel"
done
chmod -R u+w "$DEST/shared"

# what the device tool sends: tracked and untracked-not-ignored files, plus the carried .whl/
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -L -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
whl=$(find "$DEST" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "wheels.sh: ${#keep[@]} wheels $(mib "$(find "$DEST" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s+=$1} END {print s+0}')"), shared $(mib "$(du -sb "$DEST/shared" | cut -f1)"), working tree $(mib "$tree"): $(mib $((tree + whl))) of $(mib $LIMIT)"
[ $((tree + whl)) -le $LIMIT ] || die "what travels is $(mib $((tree + whl))), over the device limit of $(mib $LIMIT): drop a wheel or a shared path"
