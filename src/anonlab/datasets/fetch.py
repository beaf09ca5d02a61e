"""``anonlab datasets fetch NAME``: download a dataset's official archive(s) into the user cache, verified.

Only :func:`fetch` touches the network, and only when called. Each :class:`DatasetArchive` names the official URL
and its sha256 *where one is published*; none of these datasets publishes one, so ``sha256`` is None and
:func:`fetch` refuses to download until the user passes the expected hash (``sha256=``, ``--sha256``) that they
obtained and trust. No hash here is invented.

Steps (:func:`anonlab.download.fetch_verified`): download to ``<dest>/.download/.<file>.part`` (resumed with an HTTP ``Range`` request when a partial file is
there; ``file://`` URLs are read locally, also resumably), verify sha256, extract into a temporary folder beside the
destination (zip or tar; members with absolute paths, ``..``, links or device files are refused), move the result
into ``<dest>`` and write a marker. A checksum mismatch or a corrupt archive removes what this call wrote (the
partial file included) and raises one line; an interrupted download keeps its ``.part`` so that the next call
resumes it. Default destination: ``$XDG_CACHE_HOME/anonlab/datasets/<NAME>/`` (``~/.cache`` without the variable).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from anonlab.download import FetchError, fetch_verified, user_cache

MARKER = ".anonlab-fetched.json"


@dataclass(frozen=True)
class DatasetArchive:
    """One downloadable file of a dataset. ``sha256`` None: no official checksum is published."""

    url: str
    sha256: str | None
    file: str  # name of the downloaded file
    kind: str = "archive"  # "archive" (zip/tar, extracted) or "file" (kept as is, e.g. a video)


@dataclass(frozen=True)
class DatasetSource:
    """What ``fetch NAME`` downloads and which folder under the destination is the dataset's ``root``."""

    name: str
    archives: tuple[DatasetArchive, ...]
    root: str  # relative to the destination folder: the value for ``dataset.root``
    licence: str
    note: str = ""


SOURCES: dict[str, DatasetSource] = {
    s.name: s
    for s in (
        DatasetSource(
            "pennfudan",
            (DatasetArchive("https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip", None, "PennFudanPed.zip"),),
            "PennFudanPed",
            "no open licence (research use; do not repost, see its readme.txt)",
        ),
        DatasetSource(
            "wider_face",
            (
                DatasetArchive("https://huggingface.co/datasets/CUHK-CSE/wider_face/resolve/main/data/WIDER_val.zip",
                               None, "WIDER_val.zip"),
                DatasetArchive(
                    "https://huggingface.co/datasets/CUHK-CSE/wider_face/resolve/main/data/wider_face_split.zip",
                    None, "wider_face_split.zip"),
            ),
            ".",
            "CC BY-NC-ND 4.0 (per the Hugging Face card); non-commercial research only",
            "validation images + official split files (the files the official site links to)",
        ),
        DatasetSource(
            "mot",
            (DatasetArchive("https://motchallenge.net/data/MOT15.zip", None, "MOT15.zip"),),
            "MOT15/train",
            "CC BY-NC-SA 3.0 (MOTChallenge)",
            "2D MOT 2015; set dataset.root to MOT15/train or one sequence folder in it",
        ),
        DatasetSource(
            "inria",
            (DatasetArchive("ftp://ftp.inrialpes.fr/pub/lear/douze/data/INRIAPerson.tar", None, "INRIAPerson.tar"),),
            "INRIAPerson",
            "research use (INRIA)",
        ),
        DatasetSource(
            "lfw",
            (DatasetArchive("https://vis-www.cs.umass.edu/lfw/lfw.tgz", None, "lfw.tgz"),
             DatasetArchive("https://vis-www.cs.umass.edu/lfw/pairs.txt", None, "pairs.txt", kind="file")),
            ".",
            "no licence stated; research use (Huang et al. 2007, University of Massachusetts, Amherst)",
            "Labeled Faces in the Wild (lfw/<name>/<name>_NNNN.jpg) and the View 2 pairs.txt (10 folds x 300 + 300)",
        ),
        DatasetSource(
            "video",
            (DatasetArchive("https://raw.githubusercontent.com/opencv/opencv/4.x/samples/data/vtest.avi", None,
                            "vtest.avi", kind="file"),),
            "vtest.avi",
            "OpenCV sample data (PETS 2009 S2.L1 footage)",
            "OpenCV's samples/data/vtest.avi",
        ),
    )
}


def cache_dir() -> Path:
    return user_cache("datasets")


def _check_member(name: str, archive: Path) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise FetchError(f"archive {archive} has an unsafe member path {name!r} (absolute or with '..'); refused")


def _extract(archive: Path, into: Path) -> None:
    """Extract a zip or tar into ``into`` (which exists and is empty); refuses unsafe members."""
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    _check_member(info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise FetchError(f"archive {archive} has a symbolic link {info.filename!r}; refused")
                z.extractall(into)  # CRCs are checked while reading
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
            raise FetchError(f"archive {archive} is corrupt: {e}") from e
        return
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError:
        is_tar = False
    if not is_tar:
        raise FetchError(f"archive {archive} is corrupt or not a zip/tar file")
    try:
        with tarfile.open(archive, "r:*") as t:
            members = t.getmembers()
            for m in members:
                _check_member(m.name, archive)
                if not (m.isfile() or m.isdir()):
                    raise FetchError(f"archive {archive} has a link or special file {m.name!r}; refused")
            t.extractall(into, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise FetchError(f"archive {archive} is corrupt: {e}") from e


def _sha_list(source: DatasetSource, sha256: str | list[str] | None) -> list[str]:
    given = [sha256] if isinstance(sha256, str) else list(sha256 or [])
    if given and len(given) != len(source.archives):
        raise ValueError(f"{source.name} has {len(source.archives)} archive(s) "
                         f"({', '.join(a.file for a in source.archives)}); got {len(given)} sha256 value(s)")
    out = []
    for i, a in enumerate(source.archives):
        h = (given[i] if given else a.sha256 or "").strip().lower()
        if not h:
            raise ValueError(f"{source.name}: no official sha256 is published for {a.url}; refusing to download "
                             f"unverified data. Pass the expected hash explicitly (sha256=... / --sha256) once you "
                             f"have obtained it from a source you trust")
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ValueError(f"{source.name}: sha256 for {a.file} must be 64 hex digits, got {h!r}")
        out.append(h)
    return out


def fetch(name: str, dest: str | Path | None = None, url: str | list[str] | None = None,
          sha256: str | list[str] | None = None) -> Path:
    """Download, verify and extract dataset ``name``; return the folder to use as ``dataset.root``.

    dest: destination folder (default ``cache_dir() / name``). url: override the archive URL(s) (a mirror, or
    ``file://`` in tests), one per archive. sha256: the expected hash(es), one per archive, required where the
    spec has none. A destination already fetched with the same hashes is returned without downloading.
    Raises ``ValueError`` (unknown name, missing/malformed hash) or :class:`FetchError` (network, checksum,
    corrupt or unsafe archive); on a checksum or archive failure nothing this call wrote is left behind.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown dataset archive {name!r}; valid: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    hashes = _sha_list(source, sha256)
    urls = [url] if isinstance(url, str) else list(url or [])
    if urls and len(urls) != len(source.archives):
        raise ValueError(f"{name} has {len(source.archives)} archive(s); got {len(urls)} url(s)")
    urls = urls or [a.url for a in source.archives]
    dest = Path(dest).expanduser() if dest is not None else cache_dir() / name
    root = dest / source.root
    marker = dest / MARKER
    if marker.is_file():
        try:
            done = json.loads(marker.read_text()).get("sha256")
        except (OSError, ValueError):
            done = None
        if done == hashes and root.exists():
            return root

    created = not dest.exists()
    dl = dest / ".download"
    dl.mkdir(parents=True, exist_ok=True)
    staging: Path | None = None
    try:
        files = []
        for a, u, h in zip(source.archives, urls, hashes):  # dl/.<file>.part until verified, then dl/<file>
            files.append((a, fetch_verified(u, dl / a.file, h, name)))
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        for a, part in files:
            if a.kind == "file":
                os.replace(part, staging / a.file)
            else:
                _extract(part, staging)
        if not (staging / source.root).exists():
            raise FetchError(f"{name}: the archive(s) did not contain {source.root!r}")
        for item in sorted(staging.iterdir()):
            target = dest / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(item, target)
        marker.write_text(json.dumps({"name": name, "urls": urls, "sha256": hashes}, indent=1))
        for _, part in files:
            part.unlink(missing_ok=True)
        return root
    except FetchError as e:
        if not e.resumable:  # checksum / archive failure: leave no trace of this call
            for a in source.archives:
                (dl / f".{a.file}.part").unlink(missing_ok=True)
                (dl / a.file).unlink(missing_ok=True)
        raise
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging)
        if dl.is_dir() and not any(dl.iterdir()):
            dl.rmdir()
        if created and dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
