"""The one downloader: ``anonlab weights fetch`` and ``anonlab datasets fetch`` come here, and nothing else in
anonlab opens a network connection (it runs only when a user asks for a download).

:func:`fetch_verified` downloads a URL to ``.<name>.part`` beside its destination (resumed with an HTTP ``Range``
request when a partial file is there; ``file://`` URLs are read locally, also resumably), checks its sha256 and
renames it into place. A checksum mismatch deletes the partial file; an interrupted download keeps it, so the next
call resumes. Every failure is a :class:`FetchError` with one line naming the URL and the cause.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


class FetchError(RuntimeError):
    """A download or checksum failure; the message is one line naming the file and the cause.
    ``resumable``: an interrupted download whose ``.part`` file is kept for the next call."""

    def __init__(self, message: str, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def user_cache(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/anonlab/<parts>`` (``~/.cache`` without the variable): where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "anonlab", *parts)


def download(url: str, part: Path) -> None:
    """Append ``url``'s bytes to ``part`` from its current size on (a fresh download when the server ignores Range).
    Raises :class:`FetchError` (``resumable`` when the network failed mid-way)."""
    start = part.stat().st_size if part.exists() else 0
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        src = Path(urllib.request.url2pathname(parsed.path))
        try:
            with open(src, "rb") as fin, open(part, "ab") as out:
                fin.seek(start)
                shutil.copyfileobj(fin, out, 1 << 20)
        except OSError as e:
            raise FetchError(f"cannot read {url}: {e.strerror or e}") from e
        return
    req = urllib.request.Request(url, headers={"User-Agent": "anonlab"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - the user asked for this URL
            mode = "ab" if start and resp.status == 206 else "wb"  # 200: the server sent the whole file again
            with open(part, mode) as out:
                shutil.copyfileobj(resp, out, 1 << 20)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # range not satisfiable: the .part is already complete
            return
        raise FetchError(f"cannot download {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        kept = f"the partial file {part} is kept; " if part.exists() else ""
        raise FetchError(f"cannot download {url}: {reason} (offline? {kept}run fetch again to resume)",
                         resumable=True) from e


def fetch_verified(url: str, dest: Path, sha256: str, what: str) -> Path:
    """Download ``url`` to ``dest`` through ``.<dest name>.part`` beside it, verify ``sha256`` (64 hex digits) and
    rename into place; ``what`` names the download in errors. Raises :class:`FetchError`; on a checksum mismatch
    the partial file is deleted, so nothing this call wrote is left under any name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    download(url, part)
    got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise FetchError(f"{what}: {url} has sha256 {got}, expected {sha256}; the download was deleted")
    os.replace(part, dest)
    return dest
