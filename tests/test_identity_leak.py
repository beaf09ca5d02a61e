"""``anonlab.identity.leak.match_to_clean`` with the real dlib ResNet on a default photo (grace_hopper)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("dlib")

from anonlab.datasets.default import DATA_DIR, package_path, read_manifest
from anonlab.identity.leak import match_to_clean
from anonlab.io.images import load_image
from anonlab.recognizers import RECOGNIZERS
from anonlab.redact.core import Ensemble


def test_match_to_clean_weak_strong_and_tiny():
    """Three copies of one frame: fine pixelation (8 px cells) is still the same person to dlib (below its 0.6,
    rank 1); a solid fill is not; a 10 px box is skipped (dlib's min_face_px), never guessed."""
    photos = {e.file_name: package_path(e) for e in read_manifest(DATA_DIR / "manifest.json")}
    img = load_image(photos["grace_hopper.jpg"]).image
    box = Ensemble((("centerface", 0.5),), "cpu")(img[None]).boxes[:1]
    x1, y1, x2, y2 = box[0].round().long().tolist()
    weak, solid = img.clone(), img.clone()
    face = img[:, y1:y2, x1:x2].float()[None]
    small = torch.nn.functional.adaptive_avg_pool2d(face, ((y2 - y1) // 8, (x2 - x1) // 8))
    weak[:, y1:y2, x1:x2] = torch.nn.functional.interpolate(small, size=(y2 - y1, x2 - x1))[0].round().byte()
    solid[:, y1:y2, x1:x2] = 0
    rec = RECOGNIZERS.get("dlib_resnet")()
    clean = torch.stack([img, img, img])
    redacted = torch.stack([weak, solid, img])
    tiny = torch.tensor([[x1, y1, x1 + 10.0, y1 + 10.0]])
    boxes = torch.cat([box, box, tiny])
    m = match_to_clean(rec, clean, redacted, boxes, torch.tensor([0, 1, 2]))
    assert m.embedded.tolist() == [True, True, False] and m.n_skipped == 1
    assert m.distance[0] < rec.threshold and m.rank[0] == 1 and m.matched[0]
    assert m.distance[1] > rec.threshold and not m.matched[1]
    assert torch.isnan(m.distance[2]) and m.rank[2] == 0 and not m.matched[2]
    with pytest.raises(ValueError, match="one shape"):
        match_to_clean(rec, clean, redacted[:2], boxes, torch.tensor([0, 1, 2]))
