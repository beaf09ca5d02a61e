"""Child process for tests/test_fuzz_reader.py: decodes what the parent sends, so a native crash (a segfault in a
decoder) kills this process, not the test run. Protocol on stdin/stdout: the parent writes one JSON line
``{"kind": ..., "files": {name: hex bytes}}``; the child answers one JSON line ``{"outcome": "ok" | "error" |
"unexpected", "detail": ...}``: ``error`` is an anonlab one-line error (ImageReadError, a dataset ValueError),
``unexpected`` any other exception (the property the fuzz test checks is that it never happens)."""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path


def run(kind: str, folder: Path) -> str:
    from anonlab.io.images import ImageReadError, limit_pixels, load_image

    if kind == "image":
        (f,) = [p for p in folder.iterdir()]
        with limit_pixels(4096 * 4096):
            d = load_image(f)
        img = d.image
        assert img.dtype.is_floating_point is False and img.ndim == 3 and img.shape[0] == 3, tuple(img.shape)
        return f"{tuple(img.shape)}"
    if kind == "video":
        from anonlab.io.video import VideoReader

        (f,) = [p for p in folder.iterdir()]
        with limit_pixels(4096 * 4096):
            r = VideoReader(f)
            got = 0
            for k in range(len(r)):
                try:
                    x = r.read(k)
                except ImageReadError:
                    continue
                assert tuple(x.shape[-2:]) == r.size_hw, (tuple(x.shape), r.size_hw)
                got += 1
        return f"{got}/{len(r)} frames; {r.notes}"
    if kind == "coco":
        from anonlab.datasets.folder import load_coco

        return f"{len(load_coco(folder / 'coco.json'))} images"
    if kind == "wider":
        from anonlab.datasets.wider_face import read_wider_gt

        return f"{len(read_wider_gt(folder / 'gt.txt'))} images"
    if kind == "mot":
        from anonlab.datasets.mot import read_mot_gt, read_seqinfo

        read_seqinfo(folder / "seqinfo.ini")
        return f"{len(read_mot_gt(folder / 'gt.txt'))} frames"
    raise AssertionError(kind)


def main() -> None:
    from anonlab.io.images import ImageReadError

    for line in sys.stdin:
        msg = json.loads(line)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for name, hexdata in msg["files"].items():
                (folder / name).write_bytes(bytes.fromhex(hexdata))
            try:
                out = {"outcome": "ok", "detail": run(msg["kind"], folder)}
            except (ImageReadError, ValueError, FileNotFoundError) as e:
                text = str(e)
                one_line = "\n" not in text.strip() and bool(text.strip())
                out = {"outcome": "error" if one_line else "unexpected", "detail": f"{type(e).__name__}: {text}"}
            except Exception as e:  # noqa: BLE001 - the property under test: report anything else
                out = {"outcome": "unexpected",
                       "detail": f"{type(e).__name__}: {e} | {traceback.format_exc(limit=-3)}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
