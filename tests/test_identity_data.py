"""Identity datasets: AT&T faces, deepface pairs, facenet-pytorch test images, the identity folder layout, LFW's
pairs protocol (on a fixture written here, never fetched); a pair list naming a missing image fails in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import shared_path
from images import BUS, package_file

from anonlab.datasets import DATASETS
from anonlab.datasets.identity import AttFaces, DeepfacePairs, FacenetTestImages, IdentityFolder, LfwPairs


def identity_folder(tmp: Path) -> Path:
    """``tmp/people/<a|b>/{1,2}.jpg`` made of the packaged bus photo (two 'people', two images each)."""
    root = tmp / "people"
    for person in ("a", "b"):
        (root / person).mkdir(parents=True, exist_ok=True)
        for k in (1, 2):
            shutil.copy(package_file(*BUS), root / person / f"{k}.jpg")
    return root


def lfw_fixture(tmp: Path, extra_line: str = "") -> Path:
    """An LFW-layout folder: ``lfw/<name>/<name>_000N.jpg`` (the bus photo) and a one-fold ``pairs.txt``."""
    root = tmp / "lfw_root"
    for name, n in (("Ann_A", 2), ("Bob_B", 1)):
        (root / "lfw" / name).mkdir(parents=True, exist_ok=True)
        for k in range(1, n + 1):
            shutil.copy(package_file(*BUS), root / "lfw" / name / f"{name}_{k:04d}.jpg")
    (root / "pairs.txt").write_text("1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\n" + extra_line)
    return root


def test_identity_sets_are_in_the_dataset_registry() -> None:
    for name in ("att_faces", "deepface_pairs", "facenet_test_images", "identity_folder", "lfw"):
        assert name in DATASETS


def test_att_faces_40_people_10_crops_whole_frame_box() -> None:
    ds = AttFaces(str(shared_path("datasets/att_orl_faces")))
    assert len(ds) == 400 and len(ds.identities) == 40 and ds.pairs() is None
    assert [ds.identity(i) for i in (0, 9, 10, 399)] == [0, 0, 1, 39]
    assert ds.identities[:2] == ["s1", "s2"] and ds.refs()[:2] == ["s1/1.pgm", "s1/2.pgm"]
    s = ds.load(10)  # s2/1.pgm: a grey 92 x 112 PGM, decoded to RGB
    assert s.image.shape == (3, 112, 92)
    assert (s.image[0] == s.image[1]).all()
    assert s.gt.faces.tolist() == [[0.0, 0.0, 92.0, 112.0]] and s.gt.face_ids.tolist() == [1]
    assert not s.gt.pseudo_gt and ds.pseudo_kinds == ("person",)


def test_att_faces_detector_face_source_has_no_box() -> None:
    ds = AttFaces(str(shared_path("datasets/att_orl_faces")), face_source="detector")
    assert len(ds.load(0).gt.faces) == 0 and "face" in ds.pseudo_kinds
    with pytest.raises(ValueError, match="face_source must be one of image, detector"):
        AttFaces(str(shared_path("datasets/att_orl_faces")), face_source="oracle")


def test_deepface_master_pairs_match_its_readme() -> None:
    ds = DeepfacePairs(str(shared_path("datasets/deepface_unit_faces")))
    pairs = ds.pairs()
    # README: 300 pairs (38 Yes), 25 images (img1-img25) of 9 identities
    assert len(pairs) == 300 and sum(p.same for p in pairs) == 38
    assert len(ds) == 25 and len(ds.identities) == 9
    assert sorted(int(Path(r).stem[3:]) for r in ds.refs()) == list(range(1, 26))
    for p in pairs:
        assert p.same == (ds.identity(p.i) == ds.identity(p.j))
    # README's identity group {1,2,4,5,6,7,10,11}
    ids = {Path(r).stem: ds.identity(i) for i, r in enumerate(ds.refs())}
    assert len({ids[f"img{k}"] for k in (1, 2, 4, 5, 6, 7, 10, 11)}) == 1
    assert ids["img1"] != ids["img3"]


def test_deepface_pivot_pairs_match_its_readme() -> None:
    ds = DeepfacePairs(str(shared_path("datasets/deepface_unit_faces")), pairs="face-recognition-pivot.csv")
    assert len(ds.pairs()) == 280 and sum(p.same for p in ds.pairs()) == 140
    assert len(ds) == 61 and len(ds.identities) == 13


def test_pair_list_naming_a_missing_image_is_one_line_with_line_and_file(tmp_path: Path) -> None:
    src = shared_path("datasets/deepface_unit_faces")
    root = tmp_path / "deepface"
    root.mkdir()
    (root / "images").symlink_to(src / "images")
    (root / "master.csv").write_text("file_x,file_y,Decision\nimg1.jpg,img2.jpg,Yes\nimg1.jpg,img999.jpg,No\n")
    with pytest.raises(ValueError) as e:
        DeepfacePairs(str(root))
    msg = str(e.value)
    assert "\n" not in msg and "line 3" in msg and "img999.jpg" in msg and "master.csv" in msg


def test_facenet_test_images_portrait_and_crop_per_person() -> None:
    ds = FacenetTestImages(str(shared_path("datasets/facenet_pytorch_test_images")))
    assert ds.identities == ["angelina_jolie", "bradley_cooper", "kate_siegel", "paul_rudd", "shea_whigham"]
    assert len(ds) == 9  # bradley_cooper's portrait is missing (README)
    assert ds.pairs() is None and "face" in ds.pseudo_kinds


def test_identity_folder_layout_and_pairs(tmp_path: Path) -> None:
    root = identity_folder(tmp_path)
    ds = IdentityFolder(str(root))
    assert ds.identities == ["a", "b"] and [ds.identity(i) for i in range(4)] == [0, 0, 1, 1]
    (tmp_path / "pairs.csv").write_text("file_x,file_y,decision\na/1.jpg,a/2.jpg,yes\na/1.jpg,b/1.jpg,no\n")
    ds = IdentityFolder(str(root), pairs=str(tmp_path / "pairs.csv"))
    assert [(p.i, p.j, p.same) for p in ds.pairs()] == [(0, 1, True), (0, 2, False)]
    (tmp_path / "bad.csv").write_text("file_x,file_y,decision\na/1.jpg,c/9.jpg,no\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 2 names c/9.jpg"):
        IdentityFolder(str(root), pairs=str(tmp_path / "bad.csv"))


def test_lfw_pairs_protocol(tmp_path: Path) -> None:
    ds = LfwPairs(str(lfw_fixture(tmp_path)))
    assert ds.identities == ["Ann_A", "Bob_B"] and len(ds) == 3
    assert [(p.i, p.j, p.same) for p in ds.pairs()] == [(0, 1, True), (0, 2, False)]
    root = lfw_fixture(tmp_path / "bad", extra_line="Bob_B\t1\t7\n")
    with pytest.raises(ValueError, match=r"pairs.txt: line 4 names lfw/Bob_B/Bob_B_0007.jpg, which is missing"):
        LfwPairs(str(root))
