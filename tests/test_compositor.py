"""Scene compositor and the ``composite`` dataset on real Penn-Fudan pedestrians (../shared, skipped when absent)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from conftest import shared_path

from anonlab.camera.compositor import (
    Cutout,
    GroundCamera,
    Placement,
    cut_out,
    mask_boxes,
    render_scene,
    sample_placements,
)
from anonlab.datasets import DATASETS
from anonlab.datasets.mot import MOTDataset
from anonlab.datasets.pennfudan import PennFudanDataset

PENNFUDAN = "datasets/pennfudanped_penn/PennFudanPed"
PETS = "datasets/pets09_s2l1_vtest/vtest.avi"


@pytest.fixture(scope="module")
def cutouts() -> list[Cutout]:
    ds = PennFudanDataset(str(shared_path(PENNFUDAN)))
    s = ds.load(1)
    return cut_out(s.image, ds.masks(1), identities=[10 + k for k in range(len(s.gt.persons))])


@pytest.fixture(scope="module")
def composite():
    return DATASETS.build("composite", pennfudan_root=str(shared_path(PENNFUDAN)), backgrounds=str(shared_path(PETS)),
                          n_scenes=4, people_per_scene=5, max_sources=2, seed=3)


def _camera(hw=(360, 480)) -> GroundCamera:
    return GroundCamera(hw, height_m=6.0, tilt_deg=25.0, hfov_deg=70.0)


def test_cut_out_masks_span_their_crops(cutouts):
    for c in cutouts:
        assert mask_boxes(c.mask[None])[0].tolist() == [0, 0, c.mask.shape[1], c.mask.shape[0]]
        assert c.rgb.shape[1:] == c.mask.shape


def test_mask_bbox_equals_person_box_exactly(device, cutouts):
    cam = _camera()
    bg = torch.full((3, 360, 480), 100, dtype=torch.uint8, device=device)
    placement = sample_placements(cam, [c.aspect for c in cutouts], torch.Generator().manual_seed(0))
    image, t = render_scene(bg, cutouts, placement, cam)
    assert image.device == bg.device and image.dtype == torch.uint8
    assert bool(t.present.all())
    assert torch.equal(mask_boxes(t.masks), t.persons)
    assert torch.equal(t.persons, t.persons.round())
    assert t.identities.tolist() == [c.identity for c in cutouts]
    # pixels outside every mask keep the background exactly
    outside = ~t.masks.any(0)
    assert torch.equal(image[:, outside], bg[:, outside])
    assert bool((image[:, t.masks.any(0)] != 100).any())
    # visible masks: inside the full mask, boxes inside the full boxes, occlusion consistent
    assert bool((t.visible_masks <= t.masks).all())
    vis = t.visible_masks.flatten(1).sum(1).float() / t.masks.flatten(1).sum(1).float()
    assert torch.allclose(t.occlusion, 1 - vis)


def test_painters_order_nearer_instance_owns_its_pixels(device, cutouts):
    """Two real masks, solid colours, the same feet column: the nearer one's mask pixels are all its colour."""
    cam = _camera()
    a, b = cutouts[0], cutouts[1]
    red = Cutout(torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None].expand(3, *a.mask.shape).clone(),
                 a.mask, a.face, 1)
    blue = Cutout(torch.tensor([0, 0, 255], dtype=torch.uint8)[:, None, None].expand(3, *b.mask.shape).clone(),
                  b.mask, b.face, 2)
    z = torch.tensor([6.8, 6.0], dtype=torch.float64)  # red far, blue near (overlapping)
    p = Placement(torch.zeros(2, dtype=torch.float64), z, torch.tensor([1.8, 1.8], dtype=torch.float64))
    bg = torch.zeros(3, 360, 480, dtype=torch.uint8, device=device)
    for cuts, pl in (([red, blue], p), ([blue, red], Placement(p.x.flip(0), p.z.flip(0), p.height_m))):
        image, t = render_scene(bg, cuts, pl, cam)
        near = 1 if cuts[1] is blue else 0
        far = 1 - near
        assert t.order.tolist()[-1] == near
        assert bool((image[:, t.masks[near]] == torch.tensor([0, 0, 255], device=device)[:, None]).all())
        assert torch.equal(t.visible_masks[near], t.masks[near])
        overlap = t.masks[far] & t.masks[near]
        assert int(overlap.sum()) > 0 and float(t.occlusion[far]) > 0 and float(t.occlusion[near]) == 0
        assert not bool((t.visible_masks[far] & t.masks[near]).any())
        red_px = image[:, t.visible_masks[far]]
        assert bool((red_px == torch.tensor([255, 0, 0], device=device)[:, None]).all())


def test_scale_consistency_far_is_smaller_and_higher(cutouts):
    cam = _camera((576, 768))
    c = cutouts[0]
    bg = torch.zeros(3, 576, 768, dtype=torch.uint8)
    heights = []
    for z in (5.0, 8.0, 12.0, 18.0):
        p = Placement(torch.tensor([0.5], dtype=torch.float64), torch.tensor([z], dtype=torch.float64),
                      torch.tensor([1.75], dtype=torch.float64))
        _, t = render_scene(bg, [c], p, cam)
        _, y1, _, y2 = t.persons[0].tolist()
        expected = float(cam.pixel_height(z, 1.75))
        yf, yh = (float(v) for v in cam.rows(torch.tensor(z), 1.75))
        assert abs((y2 - y1) - expected) <= 1.0
        assert abs(y2 - yf) <= 0.5 and abs(y1 - yh) <= 1.0
        heights.append((y2 - y1, y2))
    assert all(h1 > h2 and b1 > b2 for (h1, b1), (h2, b2) in itertools.pairwise(heights))
    # the pinhole formula itself: f H / Z for a level camera at eye height (tilt 0, head at the horizon)
    level = GroundCamera((576, 768), height_m=2.5, tilt_deg=0.0, hfov_deg=60.0)
    f = (768 / 2) / math.tan(math.radians(30))
    assert float(level.pixel_height(10.0, 1.7)) == pytest.approx(f * 1.7 / 10.0)


def test_dataset_scenes_exact_and_deterministic(composite):
    assert len(composite) == 4 and composite.pseudo_kinds == ()
    s = composite.load(2)
    again = DATASETS.build("composite", pennfudan_root=str(composite.source.root), n_scenes=4, people_per_scene=5,
                           max_sources=2, seed=3, backgrounds=str(shared_path(PETS)))
    for i in (2, 0):
        a, b = composite.load(i), again.load(i)
        assert torch.equal(a.image, b.image)
        assert torch.equal(a.gt.persons, b.gt.persons) and torch.equal(a.gt.person_ids, b.gt.person_ids)
        assert torch.equal(a.gt.faces, b.gt.faces)
    assert not torch.equal(composite.load(1).image, s.image)
    _, t = composite.render(2)
    assert torch.equal(mask_boxes(t.masks[t.present]), s.gt.persons)
    assert s.image.shape == (3, 360, 480) and len(s.gt.persons) == 5
    assert len(set(s.gt.person_ids.tolist())) == 5
    assert set(s.gt.face_ids.tolist()) <= set(s.gt.person_ids.tolist())
    # faces derived from the panel: some bank identity has one, and a carried face lies inside its person box
    assert any(not bool(c.face.isnan().any()) for c in composite.bank)
    for k, fid in enumerate(s.gt.face_ids.tolist()):
        pb = s.gt.persons[s.gt.person_ids.tolist().index(fid)]
        fb = s.gt.faces[k]
        assert pb[0] - 1 <= fb[0] and fb[2] <= pb[2] + 1 and pb[1] - 1 <= fb[1] and fb[3] <= pb[3] + 1


def test_clip_round_trip_through_mot(composite, tmp_path: Path):
    folder = composite.write_clip(tmp_path / "seq", n_frames=12, fps=10, people=3, clip_seed=7)
    mot = MOTDataset(str(folder))
    assert len(mot) == 12
    # the same walks rendered again give the ground truth the reader must return
    from anonlab.camera.compositor import render_clip, sample_walks

    g = torch.Generator().manual_seed(7)
    chosen = [composite.bank[k] for k in torch.randperm(len(composite.bank), generator=g)[:3].tolist()]
    walks = sample_walks(composite.camera, [c.aspect for c in chosen], 12, 10, g)
    for i, (frame, t) in enumerate(render_clip(composite._backgrounds[0], chosen, walks, composite.camera)):
        s = mot.load(i)
        assert torch.equal(s.image, frame)  # lossless codec
        order = torch.argsort(t.identities[t.present])
        got = torch.argsort(s.gt.person_ids)
        assert torch.equal(s.gt.person_ids[got], t.identities[t.present][order])
        assert torch.equal(s.gt.persons[got], t.persons[t.present][order])
    # tracks move: a walking person's box changes between the first and last frame
    assert not torch.equal(mot.load(0).gt.persons, mot.load(11).gt.persons)


def test_bad_params_raise():
    with pytest.raises(ValueError, match="tilt_deg"):
        GroundCamera((360, 480), tilt_deg=95.0)
    with pytest.raises(ValueError, match="tilt_deg"):
        GroundCamera((360, 480), tilt_deg=-5.0)
    with pytest.raises(ValueError, match="height_m"):
        GroundCamera((360, 480), height_m=1.5)
    with pytest.raises(ValueError, match="pennfudan_root"):
        DATASETS.build("composite", pennfudan_root=None)
    with pytest.raises(ValueError, match="people_per_scene"):
        DATASETS.build("composite", pennfudan_root="/nonexistent", people_per_scene=0)
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        DATASETS.build("composite", pennfudan_root="/nonexistent/PennFudanPed")
    with pytest.raises(ValueError, match="min_person_px"):
        GroundCamera((60, 80)).depth_range(1.8, 200)
