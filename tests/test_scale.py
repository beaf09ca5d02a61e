"""Face-size normalisation (scene.face_px) on the embedded default dataset."""

from __future__ import annotations

import pytest

from anonlab.camera.scale import median_face_height, rescale_to_face
from anonlab.datasets import DATASETS


@pytest.mark.parametrize("face_px", [12, 24, 96])
def test_rescale_gives_the_face_height_within_one_pixel(face_px):
    ds = DATASETS.build("default")
    for i in range(len(ds)):
        s = rescale_to_face(ds.load(i), face_px)
        assert s is not None
        assert abs(median_face_height(s.gt) - face_px) <= 1.0
        h, w = s.image.shape[-2:]
        assert (s.gt.persons[:, 2] <= w + 1e-3).all() and (s.gt.persons[:, 3] <= h + 1e-3).all()


def test_rescale_needs_faces_and_a_positive_height():
    ds = DATASETS.build("default")
    s = ds.load(0)
    with pytest.raises(ValueError, match="face_px must be a number > 0"):
        rescale_to_face(s, 0)
    from dataclasses import replace

    from anonlab.types import GroundTruth

    assert rescale_to_face(replace(s, gt=GroundTruth(persons=s.gt.persons)), 24) is None
