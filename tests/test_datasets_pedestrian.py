"""Pedestrian datasets in their original formats: pennfudan, wider_face, mot, video, inria, and ``fetch``.

Real data from ../shared (skipped when absent); format fixtures in tests/fixtures with synthetic images made here.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path
from torchvision.io import write_jpeg, write_png

from anonlab.datasets import DATASETS
from anonlab.datasets.fetch import SOURCES, FetchError, fetch
from anonlab.datasets.inria import InriaPersonDataset
from anonlab.datasets.mot import MOTDataset
from anonlab.datasets.pennfudan import PennFudanDataset, parse_pascal_v1
from anonlab.datasets.video import VideoDataset, VideoReader
from anonlab.datasets.wider_face import WiderFaceDataset

FIXTURES = Path(__file__).parent / "fixtures"


def synthetic(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def test_registered_with_pseudo_kinds():
    expect = {"pennfudan": ("face",), "wider_face": ("person",), "mot": ("face",), "inria": ("face",),
              "video": ("face", "person")}
    for name, kinds in expect.items():
        assert DATASETS.get(name).name == name and DATASETS.get(name).pseudo_kinds == kinds


# --- pennfudan -------------------------------------------------------------------------------------------------


def test_pennfudan_real_boxes_agree_with_masks():
    d = PennFudanDataset(str(shared_path("datasets/pennfudanped_penn/PennFudanPed")))
    assert len(d) == 96 and d.refs()[0] == "PennPed00001" and d.annotated
    n, exact = 0, 0
    for i in range(len(d)):
        s = d.load(i)
        m = d.masks(i)
        boxes = s.gt.persons
        assert not s.gt.pseudo_gt and len(s.gt.faces) == 0 and (s.gt.person_ids == -1).all()
        assert m.dtype == torch.bool and m.shape == (len(boxes), *s.image.shape[1:])
        ys, xs = torch.meshgrid(torch.arange(m.shape[1]), torch.arange(m.shape[2]), indexing="ij")
        big = torch.tensor(10**6)
        tight = torch.stack([torch.where(m, xs, big).flatten(1).min(1).values,
                             torch.where(m, ys, big).flatten(1).min(1).values,
                             torch.where(m, xs, -1).flatten(1).max(1).values + 1,
                             torch.where(m, ys, -1).flatten(1).max(1).values + 1], 1).float()
        # every mask lies inside its box (1-based inclusive -> 0-based edges), most fit it exactly
        assert (tight[:, :2] >= boxes[:, :2]).all() and (tight[:, 2:] <= boxes[:, 2:]).all(), s.image_id
        n += len(boxes)
        exact += int((tight == boxes).all(1).sum())
    assert n == 263 and exact >= 245  # measured: 248 of 263 exact, the rest within 6 px inside


def test_pascal_parser_errors(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text('Image filename : "x.png"\nObjects with ground truth : 2 { "P" "P" }\n'
                 'Bounding box for object 1 "P" (Xmin, Ymin) - (Xmax, Ymax) : (1, 1) - (5, 5)\n')
    with pytest.raises(ValueError, match="says 2 but 1"):
        parse_pascal_v1(f)
    f.write_text('Image filename : "x.png"\n'
                 'Bounding box for object 1 "P" (Xmin, Ymin) - (Xmax, Ymax) : (1, 1) - (5, 5)\n')
    assert parse_pascal_v1(f).boxes.tolist() == [[0, 0, 5, 5]]  # default origin (1, 1)


# --- wider_face ------------------------------------------------------------------------------------------------


def test_wider_face_real_counts_and_filters():
    root = shared_path("datasets/widerface_val_parade_subset")
    d = WiderFaceDataset(str(root))
    assert len(d) == 40 and all(r.startswith("0--Parade/") for r in d.refs())
    gts = [d.ground_truth(i) for i in range(len(d))]
    assert sum(len(g.faces) for g in gts) == 1829
    assert sum(int((~g.ignore_faces).sum()) for g in gts) == 1739
    big = WiderFaceDataset(str(root), min_face=20)
    assert sum(int((~big.ground_truth(i).ignore_faces).sum()) for i in range(40)) == 597  # 593 in 20-100 px + 4 larger
    assert len(WiderFaceDataset(str(root), events=["parade"])) == 40
    with pytest.raises(ValueError, match="match no event.*0--Parade"):
        WiderFaceDataset(str(root), events=["Street"])
    s = d.load(3)
    h, w = s.image.shape[-2:]
    assert w == 1024 and s.gt.faces.shape[1] == 4 and len(s.gt.persons) == 0
    assert (s.gt.faces[:, 2] <= w).all() and (s.gt.faces[:, 3] <= h).all() and (s.gt.faces >= 0).all()


def test_wider_face_format_fixture(tmp_path):
    (tmp_path / "wider_face_split").mkdir()
    shutil.copy(FIXTURES / "wider" / "wider_face_val_bbx_gt.txt", tmp_path / "wider_face_split")
    names = ["0--Parade/0_Parade_Parade_0_1.jpg", "12--Group/12_Group_Group_12_2.jpg",
             "33--Running/33_Running_Running_33_3.jpg"]
    for i, n in enumerate(names[:2]):
        (tmp_path / "WIDER_val" / "images" / n).parent.mkdir(parents=True)
        write_jpeg(synthetic(48, 64, i), str(tmp_path / "WIDER_val" / "images" / n))
    with pytest.raises(FileNotFoundError, match="wider_face_val_bbx_gt.txt names image '33--Running/.*missing"):
        WiderFaceDataset(str(tmp_path))
    d = WiderFaceDataset(str(tmp_path), events=["parade", "GROUP"], min_face=8)
    assert d.refs() == names[:2]
    s0, s1 = d.load(0), d.load(1)
    assert s0.gt.faces.tolist() == [[2, 3, 12, 15], [20, 4, 25, 10], [30, 20, 55, 40]]
    assert s0.gt.ignore_faces.tolist() == [False, True, False]  # invalid=1, and 6 px < min_face=8
    assert len(s1.gt.faces) == 0 and s1.image.shape == (3, 48, 64)


# --- mot -------------------------------------------------------------------------------------------------------


def test_mot_real_stills_and_video_agree():
    root = shared_path("datasets/pets09_s2l1_vtest")
    d = MOTDataset(str(root), stride=10)
    assert len(d) == 80 and d.refs()[:2] == ["PETS09-S2L1/000001", "PETS09-S2L1/000011"]
    gt = d._seqs[0].gt
    assert len(gt) == 795 and sum(int((~g[2]).sum()) for g in gt.values()) == 4476  # 4650 rows - 174 with conf 0
    assert sorted({int(i) for g in gt.values() for i in g[1]}) == list(range(1, 20))
    still = d.load(29)  # frame 291, a still at 768x576
    video = d.load(30)  # frame 301: no still, decoded from the 480x360 video
    assert still.image.shape == (3, 576, 768) and still.path.endswith("000291.jpg")
    assert video.image.shape == (3, 360, 480) and video.path.endswith("vtest.avi#300")
    dv = MOTDataset(str(root), source="video", stride=10, max_frames=30)
    assert dv.refs() == d.refs()[:30]
    for i in (0, 15, 29):
        a, b = d.load(i), dv.load(i)
        assert b.image.shape == (3, 360, 480)
        assert torch.allclose(b.gt.persons, a.gt.persons * 0.625, atol=1e-4)
        assert torch.equal(a.gt.person_ids, b.gt.person_ids)
        small = F.interpolate(a.image[None].float(), size=(360, 480), mode="area")[0]
        corr = np.corrcoef(small.flatten().numpy(), b.image.float().flatten().numpy())[0, 1]
        assert corr > 0.9, (i, corr)
        # the neighbouring video frame fits worse: the indices line up
        other = dv._seqs[0].reader.read(int(a.image_id[-6:]) + 2)
        assert corr > np.corrcoef(small.flatten().numpy(), other.float().flatten().numpy())[0, 1]
    with pytest.raises(FileNotFoundError, match="frame 2 has no still"):
        MOTDataset(str(root), source="images", max_frames=3)


def test_mot17_format_fixture(tmp_path):
    seq = tmp_path / "seqs" / "SEQ-01"
    shutil.copytree(FIXTURES / "mot17" / "SEQ-01", seq)
    (seq / "img1").mkdir()
    for f in range(1, 5):
        write_jpeg(synthetic(48, 64, f), str(seq / "img1" / f"{f:06d}.jpg"))
    d = MOTDataset(str(tmp_path / "seqs"))  # a folder of sequences
    assert d.refs() == [f"SEQ-01/{f:06d}" for f in range(1, 5)]
    g1, g2, g3, g4 = (d.load(i).gt for i in range(4))
    assert g1.person_ids.tolist() == [1, 2, 4]  # id 3: a car with conf 0; id 4: static person
    assert g1.ignore_persons.tolist() == [False, False, True]
    assert g1.persons[0].tolist() == [10, 5, 18, 25]
    assert g2.person_ids.tolist() == [1, 2] and g2.persons[1].tolist() == pytest.approx([0, 6, 4, 28])  # clipped
    assert g3.person_ids.tolist() == [6, 8] and g3.persons[0].tolist() == [60, 40, 64, 48]  # id 7 wholly outside
    assert g3.ignore_persons.tolist() == [False, True]  # class 12 reflection
    assert len(g4.persons) == 0
    (seq / "img1" / "000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="frame 3 has no still.*no video"):
        MOTDataset(str(seq))
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        MOTDataset(str(seq), stride=0)


# --- video -----------------------------------------------------------------------------------------------------


def make_video(path: Path, n: int, h: int = 64, w: int = 96) -> list[torch.Tensor]:
    """A synthetic mpeg4 clip (key frame every 8, B-frames) whose frame k is a distinct flat colour with a bar."""
    import av

    frames = []
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = 8
        s.codec_context.max_b_frames = 2
        for k in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[:] = (k * 37) % 200 + 20, (k * 11) % 200 + 20, 128
            img[:, (k * 3) % w: (k * 3) % w + 6] = 255
            frames.append(torch.from_numpy(img).permute(2, 0, 1))
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return frames


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_reader_random_access(tmp_path, suffix):
    truth = make_video(tmp_path / f"clip{suffix}", 40)
    r = VideoReader(tmp_path / f"clip{suffix}")
    assert len(r) == 40 and r.size_hw == (64, 96)

    def nearest(img):
        return int(torch.stack([(img.float() - t.float()).abs().mean() for t in truth]).argmin())

    for k in [0, 1, 39, 17, 16, 5, 33, 34, 8, 0]:  # forward, backward, across key frames
        assert nearest(r.read(k)) == k
    with pytest.raises(IndexError, match="out of range"):
        r.read(40)


def test_video_dataset_file_and_folder(tmp_path):
    make_video(tmp_path / "cam.mp4", 25)
    d = VideoDataset(str(tmp_path / "cam.mp4"), stride=4, max_frames=5)
    assert not d.annotated and d.refs() == [f"cam/{k:06d}" for k in (0, 4, 8, 12, 16)]
    s = d.load(2)
    assert s.image.shape == (3, 64, 96) and s.gt.pseudo_gt and len(s.gt.faces) == len(s.gt.persons) == 0
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        write_png(synthetic(20, 30, k), str(frames / f"f{k}.png"))
    d = VideoDataset(str(frames), stride=2)
    assert d.refs() == ["f0.png", "f2.png"] and torch.equal(d.load(1).image, synthetic(20, 30, 2))
    with pytest.raises(FileNotFoundError, match="neither a video file nor a frame folder"):
        VideoDataset(str(tmp_path / "nope.mp4"))


# --- inria -----------------------------------------------------------------------------------------------------


def inria_fixture(tmp_path: Path, complete: bool = True) -> Path:
    """The official-format INRIA annotation fixture with synthetic images written beside it."""
    root = tmp_path / "INRIAPerson"
    shutil.copytree(FIXTURES / "inria" / "INRIAPerson", root)
    (root / "Test" / "pos").mkdir()
    write_png(synthetic(48, 64, 0), str(root / "Test" / "pos" / "crop_000001.png"))
    if complete:
        write_png(synthetic(40, 32, 1), str(root / "Test" / "pos" / "person_002.png"))
    return root


def test_inria_format_fixture(tmp_path):
    root = inria_fixture(tmp_path, complete=False)
    with pytest.raises(FileNotFoundError, match="person_002.txt names image 'Test/pos/person_002.png'.*missing"):
        InriaPersonDataset(str(root))
    write_png(synthetic(40, 32, 1), str(root / "Test" / "pos" / "person_002.png"))
    d = InriaPersonDataset(str(root), split="test")
    assert d.refs() == ["Test/crop_000001", "Test/person_002"]
    s = d.load(0)
    assert s.gt.persons.tolist() == [[10, 4, 22, 40], [40, 8, 54, 46]]  # origin (0, 0), inclusive corners
    assert d.load(1).gt.persons.tolist() == [[0, 0, 32, 40]]  # the whole 32x40 image
    assert len(InriaPersonDataset(str(root / "Test"))) == 2  # a split folder as root


# --- fetch -----------------------------------------------------------------------------------------------------


def pennfudan_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tiny_pennfudan(missing_image: bool = False) -> dict[str, bytes]:
    img, mask = synthetic(40, 30, 0), torch.zeros(1, 40, 30, dtype=torch.uint8)
    mask[0, 5:35, 4:20] = 1
    ann = ('# Compatible with PASCAL Annotation Version 1.00\nImage filename : "PennFudanPed/PNGImages/PennPed00001.png"\n'
           'Image size (X x Y x C) : 30 x 40 x 3\nObjects with ground truth : 1 { "PASpersonWalking" }\n'
           '# Top left pixel co-ordinates : (1, 1)\n'
           'Bounding box for object 1 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : (5, 6) - (20, 35)\n')
    from torchvision.io import encode_png

    out = {"PennFudanPed/Annotation/PennPed00001.txt": ann.encode(),
           "PennFudanPed/PedMasks/PennPed00001_mask.png": encode_png(mask).numpy().tobytes()}
    if not missing_image:
        out["PennFudanPed/PNGImages/PennPed00001.png"] = encode_png(img).numpy().tobytes()
    return out


def test_fetch_verifies_extracts_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = pennfudan_zip(tiny_pennfudan())
    archive = tmp_path / "PennFudanPed.zip"
    archive.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError, match="no official sha256 is published.*--sha256"):
        fetch("pennfudan", url=archive.as_uri())
    assert all(a.sha256 is None for s in SOURCES.values() for a in s.archives)  # nothing invented
    with pytest.raises(ValueError, match="unknown dataset archive 'penfudan'"):
        fetch("penfudan")
    cache = tmp_path / "cache" / "anonlab" / "datasets" / "pennfudan"
    # a half-finished download is resumed from its .part file
    (cache / ".download").mkdir(parents=True)
    (cache / ".download" / ".PennFudanPed.zip.part").write_bytes(data[: len(data) // 2])
    root = fetch("pennfudan", url=archive.as_uri(), sha256=sha)
    assert root == cache / "PennFudanPed" and not (cache / ".download").exists()
    d = PennFudanDataset(str(root))
    assert d.load(0).gt.persons.tolist() == [[4, 5, 20, 35]] and d.masks(0).sum() == 30 * 16
    archive.unlink()  # already fetched: no download
    assert fetch("pennfudan", url=archive.as_uri(), sha256=sha) == root


def test_fetch_failures_leave_cache_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "anonlab" / "datasets" / "pennfudan"
    data = pennfudan_zip(tiny_pennfudan())
    archive = tmp_path / "a.zip"
    archive.write_bytes(data)
    with pytest.raises(FetchError, match=f"has sha256 {hashlib.sha256(data).hexdigest()}, expected 0{{64}}"):
        fetch("pennfudan", url=archive.as_uri(), sha256="0" * 64)
    assert not cache.exists()
    corrupt = data[:40] + b"\0" * 64 + data[104:]  # a damaged member
    archive.write_bytes(corrupt)
    with pytest.raises(FetchError, match="is corrupt"):
        fetch("pennfudan", url=archive.as_uri(), sha256=hashlib.sha256(corrupt).hexdigest())
    assert not cache.exists()
    evil = pennfudan_zip({"../evil.txt": b"x", **tiny_pennfudan()})
    archive.write_bytes(evil)
    with pytest.raises(FetchError, match="unsafe member path '../evil.txt'"):
        fetch("pennfudan", url=archive.as_uri(), sha256=hashlib.sha256(evil).hexdigest())
    assert not cache.exists() and not (tmp_path / "cache" / "anonlab" / "datasets" / "evil.txt").exists()
    with pytest.raises(FetchError, match="cannot download http://127.0.0.1:9/x.zip.*offline"):
        fetch("pennfudan", url="http://127.0.0.1:9/x.zip", sha256="0" * 64)
    # an archive whose annotation names a missing image: fetched, then the loader names both
    broken = pennfudan_zip(tiny_pennfudan(missing_image=True))
    archive.write_bytes(broken)
    root = fetch("pennfudan", url=archive.as_uri(), sha256=hashlib.sha256(broken).hexdigest())
    with pytest.raises(FileNotFoundError, match="PennPed00001.txt names image 'PennFudanPed/PNGImages/"
                                                "PennPed00001.png', which is missing"):
        PennFudanDataset(str(root))
