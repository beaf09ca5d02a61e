"""The loader's memory bound (anonlab.loader.iter_batches docstring): frames alive at once, counted on real
images decoded from a folder."""

from __future__ import annotations

import threading
import weakref

import pytest
from images import ASTRONAUT, package_file

from anonlab.datasets.folder import FolderDataset
from anonlab.loader import iter_batches


class CountingFolder(FolderDataset):
    """A folder dataset that remembers (weakly) every frame it has decoded, to count those still alive."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._lock = threading.Lock()
        self._frames: list[weakref.ref] = []
        self.most_alive = 0

    def alive(self) -> int:
        with self._lock:
            n = sum(r() is not None for r in self._frames)
            self.most_alive = max(self.most_alive, n)
            return n

    def load(self, index: int):
        s = super().load(index)
        with self._lock:
            self._frames.append(weakref.ref(s.image))
        self.alive()
        return s


@pytest.mark.parametrize(("workers", "batch", "sizes", "n"), [(1, 4, 2, 24), (2, 1, 3, 12), (0, 3, 1, 12),
                                                               (1, 3, 6, 12)])
def test_frames_alive_at_once_stay_within_the_documented_bound(tmp_path, workers, batch, sizes, n):
    from PIL import Image

    photo = Image.open(package_file(*ASTRONAUT)).convert("RGB")
    for i in range(n):  # sizes alternate, so buckets of every size fill side by side
        photo.resize((48 + 8 * (i % sizes), 40)).save(tmp_path / f"{i:03d}.png")
    ds = CountingFolder(str(tmp_path))
    a = 2 * workers + batch + 1 if workers else 1
    bound = min(n, a + sizes * (batch - 1) + batch)
    out = []
    for b in iter_batches(ds, range(n), batch, [], print, workers=workers):
        ds.alive()
        out += [s.image_id for s in b]
        assert len({tuple(s.image.shape) for s in b}) == 1 and len(b) <= batch
    assert sorted(out) == ds.refs()  # every frame once
    assert ds.most_alive <= bound, (ds.most_alive, bound)
    if n <= sizes * (batch - 1):  # no bucket ever fills: every frame waits until the end of the call
        assert ds.most_alive == n
