"""Clean verification accuracy of the face recognizers on the deepface pairs (``datasets/deepface_unit_faces``
``master.csv``: 300 pairs, 38 same-person, over 25 photos of 9 people; issue 13 asks for >= 95 %).

Faces are located by YuNet (the largest face of each photo), aligned and embedded by the recognizer under test.
Accuracy is measured two ways: at the recognizer's published threshold where it has one, and with the threshold
chosen by 10-fold cross-validation (LFW's protocol: the best threshold on 9 folds scores the 10th; folds are the
pair index mod 10). Both must reach 95 %; the all-"different" answer alone would score 262 / 300 = 87 %.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import require_packages, shared_path
from scipy.stats import mannwhitneyu

from anonlab.detectors import DETECTORS
from anonlab.io.images import read_image
from anonlab.recognizers import RECOGNIZERS


def _pairs():
    root = shared_path("datasets/deepface_unit_faces")
    with open(root / "master.csv", newline="") as f:
        rows = [(r["file_x"], r["file_y"], r["Decision"].strip() == "Yes") for r in csv.DictReader(f)]
    return root / "images", rows


def cv_accuracy(dist: np.ndarray, same: np.ndarray, folds: int = 10) -> float:
    """Mean test-fold accuracy of ``dist < t`` with ``t`` the best threshold on the other folds (LFW protocol)."""
    idx = np.arange(len(dist))
    accs = []
    for k in range(folds):
        train, test = idx % folds != k, idx % folds == k
        cand = np.unique(dist[train])
        cand = np.concatenate([[cand[0] - 1e-6], (cand[:-1] + cand[1:]) / 2, [cand[-1] + 1e-6]])
        train_acc = [((dist[train] < t) == same[train]).mean() for t in cand]
        t = cand[int(np.argmax(train_acc))]
        accs.append(((dist[test] < t) == same[test]).mean())
    return float(np.mean(accs))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "landmarks"), [("mobilefacenet", "yunet"), ("mobilefacenet", "mtcnn"),
                                               ("mobilefacenet", "dlib68"), ("dlib_resnet", None)])
def test_clean_verification_on_the_deepface_pairs(name, landmarks):
    require_packages(name if landmarks != "dlib68" else "dlib_resnet")
    if name == "mobilefacenet":
        shared_path("models/mobilefacenet_foamliu.onnx")
    images, pairs = _pairs()
    rec = RECOGNIZERS.build(name, **({"landmarks": landmarks} if landmarks else {}))
    det = DETECTORS.build("yunet")
    files = sorted({f for a, b, _ in pairs for f in (a, b)})
    emb, n_aligned = {}, 0
    with torch.no_grad():
        for f in files:
            img = read_image(images / f)[None]
            d = det(img).above(det.threshold)
            assert len(d) > 0, f"YuNet finds no face in {f}"
            area = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
            k = int(area.argmax())
            crops, aligned = rec.crop(img, d.boxes[k : k + 1], d.batch_idx[k : k + 1])
            n_aligned += int(aligned.sum())
            emb[f] = rec.embed(crops)
    dist = np.array([rec.pairwise_distance(emb[a], emb[b]).item() for a, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    acc_cv = cv_accuracy(dist, same)
    auc = mannwhitneyu(-dist[same], -dist[~same]).statistic / (same.sum() * (~same).sum())  # ROC AUC
    print(f"{name} ({landmarks or 'own'} landmarks): {len(files)} photos, {n_aligned} landmark-aligned; "
          f"AUC {auc:.4f}; 10-fold accuracy {acc_cv:.4f}"
          + (f"; at the published threshold {rec.threshold}: {((dist < rec.threshold) == same).mean():.4f}"
             if rec.threshold is not None else ""))
    assert acc_cv >= 0.95
    if rec.threshold is not None:
        assert ((dist < rec.threshold) == same).mean() >= 0.95
