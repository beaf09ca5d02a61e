"""Five-point face landmarks for given face boxes, the similarity transform to the ArcFace template, and a
batched, differentiable warp: how the ``arcface5`` recognizers (``mobilefacenet``, ``facenet``) turn detections
into aligned crops.

Coordinate frames. Boxes are anonlab's: float32 xyxy pixels where pixel ``i`` covers ``[i, i + 1)``. Landmarks and
transforms use OpenCV's frame, where pixel ``i``'s centre is at ``i`` (the frame ``cv2.FaceDetectorYN`` reports
landmarks in and ``cv2.warpAffine`` / insightface's ``norm_crop`` use with the template). A box edge ``x`` is at
``x - 0.5`` in that frame.

Landmark order (5 points, ``(x, y)``): image-left eye (the subject's right), image-right eye, nose tip, image-left
mouth corner, image-right mouth corner: YuNet's order and the template's.

Sources (``LANDMARK_SOURCES``):

- ``yunet``: the OpenCV Zoo YuNet 2023mar detector (:mod:`anonlab.detectors.yunet`, bundled, MIT) run on a square
  region around each box (``region_scale`` x the box's longer side, resampled to ``region_px`` pixels with
  :func:`torchvision.ops.roi_align`), all boxes in one batch. Its landmark decode is ``FaceDetectorYN``'s (OpenCV
  ``modules/objdetect/src/face_detect.cpp``): ``((c + kps[2k]) * s, (r + kps[2k + 1]) * s)`` per stride ``s`` and
  anchor (row ``r``, column ``c``). The face kept is the best-scoring anchor whose box centre lies inside the given
  box; its landmarks are "found" when its score reaches ``min_score`` (YuNet's default threshold 0.6 in anonlab).
- ``mtcnn``: facenet-pytorch's MTCNN (Zhang et al. 2016; P/R/O-Net weights ship in its wheel) on the same kind of
  region, all regions in one call of its ``detect_face`` pipeline (stage thresholds 0.6, 0.7 and ``min_score`` 0.9 for
  O-Net, anonlab's MTCNN detector threshold; smallest face 20 px of the region). O-Net's 5 points come in the
  template's order (insightface aligns MTCNN's points to ``arcface_dst`` as they are). The face kept is the most
  probable one whose box centre lies inside the given box; found when there is one.
- ``dlib68``: dlib's 68-point shape predictor (``shape_predictor_68_face_landmarks.dat`` of
  ``face-recognition-models``, CC0-1.0) inside the box: eye centres are the means of points 36-41 and 42-47, the
  nose tip point 30, the mouth corners points 48 and 54 (the iBUG 300-W markup). dlib always places 68 points in
  the box, so every face counts as found. CPU, a host round trip per batch. (dlib's 5-point model has no mouth
  corners, so it cannot be fitted to this template; ``dlib_resnet`` uses it with dlib's own chip instead.)

A face whose landmarks are not found is aligned from its box (the box resized to the crop: :func:`box_transform`)
and its ``aligned`` flag is False, so the evaluation counts the fallback.

Template: insightface ``python-package/insightface/utils/face_align.py`` ``arcface_dst`` (112 x 112), the same
points as the MobileFaceNet MANIFEST section and foamliu/MobileFaceNet's ``get_reference_facial_points((112, 112),
0.25, (0, 0), True)``; other crop sizes scale it by ``size / 112``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from anonlab import weights
from anonlab._checks import check_choice, check_int, check_range
from anonlab.recognizers.base import RecognizerBase

#: insightface ``arcface_dst``: (x, y) in a 112 x 112 crop, OpenCV frame (pixel centres at integers)
ARCFACE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
LANDMARK_SOURCES = ("yunet", "mtcnn", "dlib68")
SHAPE68_FILE = ("face_recognition_models", "models", "shape_predictor_68_face_landmarks.dat")
#: cap on the (crops x H x W x 3) float32 elements gathered at once by :func:`warp_affine`
_WARP_BUDGET = 1 << 26


def arcface_template(size_hw: tuple[int, int] = (112, 112)) -> Tensor:
    """``float32 (5, 2)`` ArcFace template points for a ``size_hw`` crop (``ARCFACE_112`` scaled per axis)."""
    h, w = size_hw
    return torch.tensor(ARCFACE_112, dtype=torch.float32) * torch.tensor([w / 112.0, h / 112.0])


def similarity_transform(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping ``src`` onto ``dst``:
    Umeyama's closed form (IEEE TPAMI 13(4), 1991, eqs. 38-42), as ``skimage.transform.SimilarityTransform``
    estimates it, batched.

    ``src (N, K, 2)``, ``dst (N, K, 2)`` or ``(K, 2)`` points, K >= 2; returns ``float32 (N, 2, 3)`` matrices ``M``
    with ``dst ~ M[:, :, :2] @ p + M[:, :, 2]``. Computed in float64 on the points' device.
    """
    if src.ndim != 3 or src.shape[-1] != 2 or src.shape[1] < 2:
        raise ValueError(f"similarity_transform: src must be (N, K >= 2, 2) points, got {tuple(src.shape)}")
    s = src.double()
    d = dst.double().to(s.device).expand_as(s)
    k = s.shape[1]
    mu_s, mu_d = s.mean(1, keepdim=True), d.mean(1, keepdim=True)
    sc, dc = s - mu_s, d - mu_d
    var_s = (sc**2).sum((1, 2)) / k
    cov = dc.transpose(1, 2) @ sc / k
    u, sv, vh = torch.linalg.svd(cov)
    sign = torch.ones_like(sv)
    sign[:, 1] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    sign[sign == 0] = 1.0
    rot = u @ torch.diag_embed(sign) @ vh
    scale = (sv * sign).sum(1) / var_s.clamp_min(1e-12)
    lin = scale[:, None, None] * rot
    t = mu_d.transpose(1, 2) - lin @ mu_s.transpose(1, 2)
    return torch.cat([lin, t], dim=2).float()


def box_transform(boxes: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """``float32 (N, 2, 3)`` affine maps (OpenCV frame) taking each xyxy box (anonlab frame) onto a whole
    ``size_hw`` crop, edges to edges, aspect not kept: the fallback when no landmarks are found."""
    h, w = size_hw
    b = boxes.float()
    sx = w / (b[:, 2] - b[:, 0]).clamp_min(1e-3)
    sy = h / (b[:, 3] - b[:, 1]).clamp_min(1e-3)
    m = b.new_zeros((len(b), 2, 3))
    # u = (X - (x1 - 0.5)) * sx - 0.5 with X in the OpenCV frame (pixel centres at integers)
    m[:, 0, 0], m[:, 0, 2] = sx, (0.5 - b[:, 0]) * sx - 0.5
    m[:, 1, 1], m[:, 1, 2] = sy, (0.5 - b[:, 1]) * sy - 0.5
    return m


def warp_affine(x: Tensor, batch_idx: Tensor, m: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """``cv2.warpAffine`` (bilinear, zero border) of image ``batch_idx[i]`` of float ``x (B, C, H, W)`` by
    ``m[i]`` (``(N, 2, 3)`` image -> crop, OpenCV frame) into ``(N, C, *size_hw)`` float crops, with
    :func:`torch.nn.functional.grid_sample`: differentiable w.r.t. ``x``. The source images are gathered in chunks
    of at most ``_WARP_BUDGET`` elements."""
    n = len(m)
    h, w = size_hw
    if n == 0:
        return x.new_zeros((0, x.shape[1], h, w))
    full = torch.cat([m.to(x.device, torch.float64), m.new_tensor([0.0, 0.0, 1.0]).to(x.device, torch.float64)
                      .expand(n, 1, 3)], dim=1)
    inv = torch.linalg.inv(full)[:, :2].float()  # crop -> image
    vv, uu = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float32),
                            torch.arange(w, device=x.device, dtype=torch.float32), indexing="ij")
    uv1 = torch.stack([uu, vv, torch.ones_like(uu)], dim=-1).reshape(1, -1, 3)  # (1, h*w, 3)
    src = uv1 @ inv.transpose(1, 2)  # (N, h*w, 2) image coordinates, OpenCV frame
    ih, iw = x.shape[-2:]
    grid = torch.stack([(2 * src[..., 0] + 1) / iw - 1, (2 * src[..., 1] + 1) / ih - 1], dim=-1).reshape(n, h, w, 2)
    chunk = max(1, _WARP_BUDGET // max(1, x.shape[1] * ih * iw))
    idx = batch_idx.to(x.device).clone()  # a normal tensor: autograd cannot save an inference-mode index
    out = [F.grid_sample(x[idx[i : i + chunk]], grid[i : i + chunk], mode="bilinear", padding_mode="zeros",
                         align_corners=False) for i in range(0, n, chunk)]
    return torch.cat(out)


class YuNetLandmarks(nn.Module):
    """5 landmarks per given face box from YuNet run on a ``region_px`` square region around it (module docstring).

    ``forward(images uint8 (B, 3, H, W) RGB, boxes float32 (N, 4) xyxy, batch_idx (N,))`` -> ``(points float32
    (N, 5, 2)`` in the images' OpenCV frame, ``found bool (N,))``; points of faces not found are zeros.
    """

    def __init__(self, region_scale: float = 2.0, region_px: int = 192, min_score: float = 0.6) -> None:
        super().__init__()
        from anonlab.detectors.yunet import YuNet

        self.region_scale = check_range("region_scale", region_scale, 1.0, where="yunet landmarks")
        self.region_px = check_int("region_px", region_px, 32, where="yunet landmarks", note="pixels")
        if region_px % 32:
            raise ValueError(f"yunet landmarks: region_px must be a multiple of 32, got {region_px}")
        self.min_score = check_range("min_score", min_score, 0.0, 1.0, where="yunet landmarks")
        self.yunet = YuNet()

    @torch.no_grad()
    def forward(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        n, r = len(boxes), self.region_px
        if n == 0:
            return boxes.new_zeros((0, 5, 2)), torch.zeros(0, dtype=torch.bool, device=boxes.device)
        b = boxes.float()
        region, bin_px = _regions(b, self.region_scale, r)  # (N, 4) anonlab frame, (N, 1)
        rois = torch.cat([batch_idx.to(b.dtype)[:, None], region], dim=1)
        # adaptive sampling (sampling_ratio=-1) averages ceil(bin) samples per output pixel: an area-like downscale
        patches = roi_align(images.float(), rois, (r, r), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        x = patches.flip(1)  # RGB -> BGR, 0..255, as FaceDetectorYN feeds the graph
        outputs = self.yunet.net(x)
        scores, fboxes, kps = _decode_yunet(outputs, n, (r, r))
        # the face of this box: best score among anchors whose box centre lies inside the given box
        def to_img(p: Tensor) -> Tensor:  # region pixels (OpenCV frame) -> image pixels (OpenCV frame)
            return region[:, None, :2] - 0.5 + (p + 0.5) * bin_px[:, :, None]

        fc = to_img((fboxes[..., :2] + fboxes[..., 2:]) / 2)  # (N, A, 2) OpenCV frame
        inside = ((fc[..., 0] >= b[:, None, 0] - 0.5) & (fc[..., 0] <= b[:, None, 2] - 0.5)
                  & (fc[..., 1] >= b[:, None, 1] - 0.5) & (fc[..., 1] <= b[:, None, 3] - 0.5))
        best = torch.where(inside, scores, torch.full_like(scores, -1.0)).argmax(1)
        pick = torch.arange(n, device=b.device)
        found = inside[pick, best] & (scores[pick, best] >= self.min_score)
        pts = to_img(kps[pick, best])  # (N, 5, 2)
        return torch.where(found[:, None, None], pts, torch.zeros_like(pts)), found


def _decode_yunet(outputs: tuple[Tensor, ...], batch: int, size_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """YuNet's 12 outputs -> scores ``(B, A)``, boxes ``(B, A, 4)`` and landmarks ``(B, A, 5, 2)`` in network-input
    pixels (OpenCV's ``FaceDetectorYN`` decode; scores and boxes by :func:`anonlab.detectors.yunet.decode`)."""
    from anonlab.detectors.yunet import STRIDES, decode

    scores, boxes = decode(outputs, batch, size_hw)
    h, w = size_hw
    n = len(STRIDES)
    kps = []
    for i, s in enumerate(STRIDES):
        k = outputs[i + 3 * n].reshape(batch, -1, 5, 2)
        rows, cols = h // s, w // s
        gy, gx = torch.meshgrid(torch.arange(rows, device=k.device, dtype=k.dtype),
                                torch.arange(cols, device=k.device, dtype=k.dtype), indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)[None, :, None, :]  # (1, A_s, 1, 2)
        kps.append((k + grid) * s)
    return scores, boxes, torch.cat(kps, dim=1)


class MTCNNLandmarks(nn.Module):
    """5 landmarks per given face box from facenet-pytorch's MTCNN on a ``region_px`` square region around it
    (module docstring). Same call and return as :class:`YuNetLandmarks`."""

    def __init__(self, region_scale: float = 2.0, region_px: int = 192, min_score: float = 0.9) -> None:
        super().__init__()
        from facenet_pytorch import MTCNN

        self.region_scale = check_range("region_scale", region_scale, 1.0, where="mtcnn landmarks")
        self.region_px = check_int("region_px", region_px, 24, where="mtcnn landmarks", note="pixels")
        self.min_score = check_range("min_score", min_score, 0.0, 1.0, where="mtcnn landmarks")
        self.net = MTCNN(keep_all=True, device=None).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        n, r = len(boxes), self.region_px
        pts = boxes.new_zeros((n, 5, 2))
        found = torch.zeros(n, dtype=torch.bool, device=boxes.device)
        if n == 0:
            return pts, found
        region, bin_px = _regions(boxes, self.region_scale, r)
        rois = torch.cat([batch_idx.to(region.dtype)[:, None], region], dim=1)
        patches = roi_align(images.float(), rois, (r, r), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        dev = self.net.pnet.conv1.weight.device
        fboxes, fpts = detect_face(patches.round().clamp(0, 255).permute(0, 2, 3, 1).to(dev), 20, self.net.pnet,
                                   self.net.rnet, self.net.onet, [0.6, 0.7, self.min_score], 0.709, dev)
        b = boxes.float().cpu().numpy()
        for i in range(n):
            fb = np.asarray(fboxes[i], dtype=np.float64).reshape(-1, 5)
            if len(fb) == 0:
                continue
            scale, x0, y0 = float(bin_px[i, 0]), float(region[i, 0]), float(region[i, 1])
            # MTCNN's coordinates: pixel index units of the region; to the image's OpenCV frame as for YuNet
            cx = x0 - 0.5 + ((fb[:, 0] + fb[:, 2]) / 2 + 0.5) * scale
            cy = y0 - 0.5 + ((fb[:, 1] + fb[:, 3]) / 2 + 0.5) * scale
            inside = (cx >= b[i, 0] - 0.5) & (cx <= b[i, 2] - 0.5) & (cy >= b[i, 1] - 0.5) & (cy <= b[i, 3] - 0.5)
            if not inside.any():
                continue
            k = int(np.argmax(np.where(inside, fb[:, 4], -1.0)))
            p = np.asarray(fpts[i], dtype=np.float64).reshape(-1, 5, 2)[k]
            pts[i] = torch.from_numpy(np.stack([x0 - 0.5 + (p[:, 0] + 0.5) * scale,
                                                y0 - 0.5 + (p[:, 1] + 0.5) * scale], 1)).to(pts)
            found[i] = True
        return pts, found


def _regions(boxes: Tensor, region_scale: float, region_px: int) -> tuple[Tensor, Tensor]:
    """Square regions ``(N, 4)`` xyxy (anonlab frame) of ``region_scale`` x each box's longer side about its centre,
    and ``(N, 1)`` image pixels per region pixel when resampled to ``region_px``."""
    b = boxes.float()
    centre = (b[:, :2] + b[:, 2:]) / 2
    side = (b[:, 2:] - b[:, :2]).amax(1, keepdim=True).clamp_min(1.0) * region_scale
    return torch.cat([centre - side / 2, centre + side / 2], dim=1), side / region_px


class Dlib68Landmarks(nn.Module):
    """5 landmarks per given face box from dlib's 68-point shape predictor (module docstring); always found."""

    #: 68-point indices (iBUG 300-W) of: image-left eye, image-right eye, nose tip, mouth corners
    LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_L, MOUTH_R = range(36, 42), range(42, 48), 30, 48, 54

    def __init__(self) -> None:
        super().__init__()
        import dlib

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(weights.package_file(*SHAPE68_FILE)))

    @torch.no_grad()
    def forward(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        from anonlab.detectors._common import host_rgb

        host = host_rgb(images)
        out = np.zeros((len(boxes), 5, 2), dtype=np.float32)
        for i, ((x1, y1, x2, y2), b) in enumerate(zip(boxes.detach().cpu().tolist(), batch_idx.cpu().tolist())):
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            p = np.array([(q.x, q.y) for q in self._shape(host[b], rect).parts()], dtype=np.float32)
            out[i] = [p[list(self.LEFT_EYE)].mean(0), p[list(self.RIGHT_EYE)].mean(0), p[self.NOSE],
                      p[self.MOUTH_L], p[self.MOUTH_R]]
        return (torch.from_numpy(out).to(boxes.device),
                torch.ones(len(boxes), dtype=torch.bool, device=boxes.device))


def build_landmarks(source: str) -> nn.Module:
    """The landmark module named ``source`` (one of ``LANDMARK_SOURCES``); ``ValueError`` listing them otherwise."""
    check_choice("landmarks", source, LANDMARK_SOURCES, where="align")
    return {"yunet": YuNetLandmarks, "mtcnn": MTCNNLandmarks, "dlib68": Dlib68Landmarks}[source]()


class ArcFaceAligner(nn.Module):
    """Detections -> crops aligned to the ArcFace template of ``size_hw`` (``arcface5`` alignment).

    :meth:`transforms` gives the image -> crop matrices (landmarks from ``landmarks``, box fallback where none are
    found); :meth:`warp` applies them to float images differentiably; ``forward`` does both on uint8 images and
    returns ``(uint8 (N, 3, *size_hw) crops, bool (N,) aligned)`` as :meth:`RecognizerBase.crop` does.
    """

    alignment: ClassVar[str] = "arcface5"

    def __init__(self, size_hw: tuple[int, int], landmarks: str = "yunet") -> None:
        super().__init__()
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self.source = landmarks
        self.landmarks = build_landmarks(landmarks)
        self.register_buffer("template", arcface_template(self.size_hw), persistent=False)

    def transforms(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        """``(float32 (N, 2, 3)`` image -> crop matrices in the OpenCV frame, ``bool (N,)`` landmark-aligned)."""
        pts, found = self.landmarks(images, boxes, batch_idx)
        m = box_transform(boxes, self.size_hw)
        if bool(found.any()):
            m[found] = similarity_transform(pts[found], self.template.to(pts.device)).to(m.device)
        return m, found

    def warp(self, x: Tensor, batch_idx: Tensor, m: Tensor) -> Tensor:
        """Float ``x (B, 3, H, W)`` -> float ``(N, 3, *size_hw)`` crops by :func:`warp_affine`; differentiable."""
        return warp_affine(x, batch_idx, m, self.size_hw)

    def forward(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        m, found = self.transforms(images, boxes, batch_idx)
        crops = self.warp(images.float(), batch_idx, m)
        return crops.round().clamp(0, 255).to(torch.uint8), found


class ArcFaceAlignedRecognizer(RecognizerBase):
    """Base of the recognizers that crop by :class:`ArcFaceAligner` (5 landmarks, similarity transform to the
    ArcFace template scaled to ``input_size_hw``) and embed differentiably: a subclass sets ``self.aligner`` and
    implements :meth:`embed_float`; ``crop``, ``embed`` and ``crop_float`` are the same for all of them."""

    aligner: ArcFaceAligner

    def crop(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        return self.aligner(images, boxes, batch_idx)

    def embed(self, crops: Tensor) -> Tensor:
        self.check_crops(crops)
        with torch.no_grad():
            return self.embed_float(crops.float() / 255.0)

    def embed_float(self, x: Tensor) -> Tensor:
        """Differentiable: float ``(N, 3, *input_size_hw)`` RGB in [0, 1] -> ``float32 (N, embedding_dim)``."""
        raise NotImplementedError

    def crop_float(self, x: Tensor, batch_idx: Tensor, m: Tensor) -> Tensor:
        """Differentiable crops: float ``x (B, 3, H, W)`` (any range) warped by ``m`` (``(N, 2, 3)`` from
        ``self.aligner.transforms``) -> ``(N, 3, *input_size_hw)`` in the same range."""
        return self.aligner.warp(x, batch_idx, m)

    def extra_repr(self) -> str:
        return f"landmarks={self.aligner.source}"
