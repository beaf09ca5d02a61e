"""The one reader's cost: ``anonlab.io.images.read_image`` (header probe with Pillow, pixel cap, JPEG truncation
walk, decode, orientation, a contiguous (3, H, W) tensor) vs torchvision's ``decode_image(...).contiguous()``,
which is what the reader before issue 11 ran (it refused 16-bit files and TIFFs), per format.

    python benchmarks/reader.py --repeats 20 --out benchmarks/out/reader_cpu.json

Files are made in a temp folder from bus.jpg (shipped by ultralytics, 810x1080): the JPEG itself, and the same
pixels resized to 1920x1080 saved as JPEG (quality 90), PNG (8-bit), PNG (16-bit), TIFF (LZW) and WebP
(lossless). Each figure is the median of ``--repeats`` timed decodes after one warm-up, in one process, one
thread; both decoders run side by side in the same pass.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _report import emit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import numpy as np
    import PIL
    import torch
    import torchvision
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image

    from anonlab.io.images import read_image

    torch.set_num_threads(1)
    import importlib.util

    bus = Path(list(importlib.util.find_spec("ultralytics").submodule_search_locations)[0], "assets", "bus.jpg")
    tmp = Path(tempfile.mkdtemp())
    big = Image.open(bus).convert("RGB").resize((1920, 1080))
    files = {"bus.jpg (810x1080)": bus}
    for name, save in (("1080p.jpg", lambda p: big.save(p, quality=90)), ("1080p.png", lambda p: big.save(p)),
                       ("1080p_16bit.png", lambda p: Image.fromarray(np.asarray(big.convert("L")).astype(np.uint16)
                                                                      * 257).save(p)),
                       ("1080p_lzw.tif", lambda p: big.save(p, compression="tiff_lzw")),
                       ("1080p_lossless.webp", lambda p: big.save(p, lossless=True))):
        save(tmp / name)
        files[name] = tmp / name

    def timed(fn) -> float:
        fn()
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts) * 1e3

    rows = []
    for name, path in files.items():
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)

        def tv(data=data):
            return decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True).contiguous()

        try:
            tv()
            tv_ms = timed(tv)
        except RuntimeError:
            tv_ms = None  # torchvision cannot decode it (TIFF)
        reader_ms = timed(lambda path=path: read_image(path))
        rows.append({"file": name, "bytes": path.stat().st_size, "reader_ms": round(reader_ms, 2),
                     "torchvision_ms": None if tv_ms is None else round(tv_ms, 2),
                     "ratio": None if tv_ms is None else round(reader_ms / tv_ms, 2)})
    emit({"benchmark": "reader", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
          "device": "cpu", "cpu": platform.processor() or platform.machine(), "threads": 1,
          "load_avg": os.getloadavg(), "repeats": args.repeats,
          "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__},
          "rows": rows}, args.out)


if __name__ == "__main__":
    main()
