"""The ``trained`` attacker of McPherson, Shokri & Shmatikov 2016 ("Defeating Image Obfuscation with Deep
Learning", arXiv 1609.00408): closed-set identification of redacted faces by a classifier fitted on redacted
training images of the same people.

The attacker holds a few images of every gallery person, redacts them with the defense and strength the
victim's images carry, fits a classifier, and names the person behind each redacted probe. Two classifiers:

- :class:`LinearProbe`: multinomial logistic regression (torch) on a recognizer's embeddings of the redacted
  faces; :class:`RecognizerProbe` puts a recognizer in front of it (images in, names out);
- :class:`CNNAttacker`: a small CNN trained from scratch on the redacted pixels, CPU-friendly and seeded.

Every attacker has ``fit(x, labels) -> self``, ``scores(x) -> float32 (N, C)`` (higher = more likely, columns
in the order of :attr:`classes`) and ``topk(x, k) -> int64 (N, k)`` (the k most likely labels, best first,
in the caller's own label values). :func:`topk_accuracy` turns those into top-1/top-5 rates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anonlab.types import check_images

#: scikit-learn's ``LogisticRegression`` defaults, which the linear probe copies: inverse L2 strength ``C`` = 1
#: (objective 0.5 ||W||^2 + C * sum of cross-entropies, biases unpenalized) and ``max_iter`` = 100 L-BFGS steps
PROBE_C = 1.0
PROBE_MAX_ITER = 100

#: The small CNN's training schedule (our choice, fixed before any McPherson table was measured, never tuned on
#: its test splits): Adam at torch's default learning rate 1e-3 (Kingma & Ba 2015) with weight decay 5e-4,
#: 60 epochs of mini-batches of 32, each training image flipped left-right with probability 0.5 and shifted by up
#: to 10 % of its size (McPherson et al. trained with dropout; augmentation stands in for their larger budget).
CNN_EPOCHS = 60
CNN_BATCH = 32
CNN_LR = 1e-3
CNN_WEIGHT_DECAY = 5e-4
CNN_SHIFT = 0.1
#: input size (H, W) of the small CNN: half of AT&T's 112 x 92, a few seconds per fit on 2 CPU cores
CNN_INPUT_HW = (56, 46)


def _check_labels(labels: Tensor, n: int, what: str) -> Tensor:
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{what}: labels must be int64 ({n},), got {labels.dtype} {tuple(labels.shape)}")
    return labels.long()


def _check_k(k: int, n_classes: int, what: str) -> int:
    if int(k) != k or not 1 <= k <= n_classes:
        raise ValueError(f"{what}: k must be an integer in [1, {n_classes}] (the number of classes), got {k!r}")
    return int(k)


class _ClosedSet:
    """Label bookkeeping shared by the attackers: any integer labels in, the same values out."""

    classes: Tensor  # int64 (C,), sorted

    def _encode(self, labels: Tensor, n: int, what: str) -> Tensor:
        labels = _check_labels(labels, n, what)
        self.classes, idx = torch.unique(labels.cpu(), sorted=True, return_inverse=True)
        if len(self.classes) < 2:
            raise ValueError(f"{what}: needs at least 2 classes to tell apart, got {len(self.classes)}")
        return idx

    def scores(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def topk(self, x: Tensor, k: int) -> Tensor:
        """The ``k`` most likely labels per input, best first: ``int64 (N, k)`` on the CPU."""
        if not hasattr(self, "classes"):
            raise RuntimeError(f"{type(self).__name__}: call fit() before topk()")
        k = _check_k(k, len(self.classes), type(self).__name__)
        return self.classes[self.scores(x).cpu().topk(k, dim=1).indices]


def topk_accuracy(topk_labels: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, Tensor]:
    """Per-probe hits: ``topk_labels`` ``int64 (N, K)`` best first, ``labels`` ``int64 (N,)`` -> ``{k: bool (N,)}``
    (True where the right label is among the first ``k``); the mean of each is the top-k accuracy.
    Raises ``ValueError`` when a k exceeds K or the shapes disagree."""
    if topk_labels.ndim != 2 or labels.shape != (topk_labels.shape[0],):
        raise ValueError(f"topk_accuracy: topk_labels (N, K) and labels (N,), got {tuple(topk_labels.shape)} and "
                         f"{tuple(labels.shape)}")
    out = {}
    for k in ks:
        if k > topk_labels.shape[1]:
            raise ValueError(f"topk_accuracy: k={k} but only {topk_labels.shape[1]} ranked labels were given")
        out[k] = (topk_labels[:, :k] == labels.to(topk_labels.device)[:, None]).any(1)
    return out


def true_ranks(attacker: _ClosedSet, scores: Tensor, labels: Tensor) -> Tensor:
    """Closed-set rank of each probe's true label under ``scores`` ``float (N, C)`` (``attacker.scores``):
    ``float64 (N,)`` >= 1, 1 + the number of other classes scoring at least as high (ties count against the
    attacker, as :func:`anonlab.metrics.identity.identification_ranks`); ``inf`` for a label the attacker never
    saw in training. Feed to :func:`anonlab.metrics.identity.identify` for rank-1/rank-5 with intervals."""
    scores = scores.detach().cpu().double()
    labels = labels.cpu().long()
    if scores.ndim != 2 or scores.shape != (labels.shape[0], len(attacker.classes)):
        raise ValueError(f"true_ranks: scores must be (N, C) = ({labels.shape[0]}, {len(attacker.classes)}), got "
                         f"{tuple(scores.shape)}")
    col = torch.searchsorted(attacker.classes, labels).clamp(max=len(attacker.classes) - 1)
    known = attacker.classes[col] == labels
    true = scores.gather(1, col[:, None])
    rank = 1.0 + (scores >= true).sum(1).double() - 1.0
    return torch.where(known, rank, torch.full_like(rank, float("inf")))


class LinearProbe(_ClosedSet):
    """Multinomial logistic regression on embeddings ``float32 (N, D)`` (any recognizer's), in torch.

    Embeddings are L2-normalised first (face embedders compare directions; dlib's are unit-norm already).
    Objective and defaults are scikit-learn's ``LogisticRegression``: ``0.5 ||W||^2 + C * sum_i CE_i`` with
    unpenalized biases, minimised by full-batch L-BFGS (strong Wolfe line search) for ``max_iter`` steps;
    ``c`` = :data:`PROBE_C`, ``max_iter`` = :data:`PROBE_MAX_ITER`. Deterministic (zero initialisation).
    """

    def __init__(self, c: float = PROBE_C, max_iter: int = PROBE_MAX_ITER) -> None:
        if not c > 0:
            raise ValueError(f"LinearProbe: c must be > 0 (inverse L2 strength, scikit-learn's C), got {c!r}")
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"LinearProbe: max_iter must be an integer >= 1 (L-BFGS steps), got {max_iter!r}")
        self.c, self.max_iter = float(c), int(max_iter)

    @staticmethod
    def _features(emb: Tensor, what: str) -> Tensor:
        if emb.ndim != 2 or not emb.is_floating_point():
            raise ValueError(f"{what}: embeddings must be float (N, D), got {emb.dtype} {tuple(emb.shape)}")
        return F.normalize(emb.detach().double().cpu(), dim=1)

    def fit(self, emb: Tensor, labels: Tensor) -> LinearProbe:
        """Fit on training embeddings ``float (N, D)`` and their integer ``labels (N,)``; returns self."""
        x = self._features(emb, "LinearProbe.fit")
        y = self._encode(labels, x.shape[0], "LinearProbe.fit")
        w = torch.zeros(x.shape[1], len(self.classes), dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(self.classes), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=self.max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-7, tolerance_change=1e-10)

        def closure() -> Tensor:
            opt.zero_grad()
            loss = 0.5 * (w * w).sum() + self.c * F.cross_entropy(x @ w + b, y, reduction="sum")
            loss.backward()
            return loss

        opt.step(closure)
        self.weight, self.bias = w.detach(), b.detach()
        return self

    def scores(self, emb: Tensor) -> Tensor:
        """Class logits ``float32 (N, C)`` for embeddings ``float (N, D)`` (columns follow :attr:`classes`)."""
        if not hasattr(self, "weight"):
            raise RuntimeError("LinearProbe: call fit() before scores()")
        x = self._features(emb, "LinearProbe.scores")
        if x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"LinearProbe: fitted on {self.weight.shape[0]}-d embeddings, got {x.shape[1]}-d")
        return (x @ self.weight + self.bias).float()


def whole_image_boxes(images: Tensor) -> tuple[Tensor, Tensor]:
    """One box per image covering all of it (a face crop data set such as AT&T):
    ``float32 (B, 4)`` xyxy pixels and ``batch_idx`` ``int64 (B,)`` on the images' device."""
    b, _, h, w = images.shape
    boxes = torch.tensor([[0.0, 0.0, float(w), float(h)]], device=images.device).expand(b, 4).contiguous()
    return boxes, torch.arange(b, device=images.device)


class RecognizerProbe(_ClosedSet):
    """A recognizer's embedding of each (redacted) face, then a :class:`LinearProbe`.

    ``fit(images, labels, boxes=None)`` / ``scores(images, boxes=None)`` / ``topk(images, k)``: ``images``
    ``uint8 (B, 3, H, W)`` RGB, one face per image in ``boxes`` ``float32 (B, 4)`` xyxy pixels (default: the
    whole image, :func:`whole_image_boxes`), aligned and embedded by ``recognizer`` (its ``crop`` and ``embed``).
    """

    def __init__(self, recognizer: nn.Module, probe: LinearProbe | None = None) -> None:
        self.recognizer = recognizer
        self.probe = probe or LinearProbe()

    def embed(self, images: Tensor, boxes: Tensor | None = None) -> Tensor:
        """``float32 (B, embedding_dim)``: one embedding per image's face."""
        check_images(images, "RecognizerProbe input")
        if boxes is None:
            boxes, idx = whole_image_boxes(images)
        else:
            if boxes.shape != (images.shape[0], 4):
                raise ValueError(f"RecognizerProbe: one box per image, float32 ({images.shape[0]}, 4), got "
                                 f"{tuple(boxes.shape)}")
            idx = torch.arange(images.shape[0], device=images.device)
        with torch.no_grad():
            crops, _ = self.recognizer.crop(images, boxes, idx)
            return self.recognizer.embed(crops)

    def fit(self, images: Tensor, labels: Tensor, boxes: Tensor | None = None) -> RecognizerProbe:
        self.probe.fit(self.embed(images, boxes), labels)
        self.classes = self.probe.classes
        return self

    def scores(self, images: Tensor, boxes: Tensor | None = None) -> Tensor:
        return self.probe.scores(self.embed(images, boxes))


class SmallCNN(nn.Module):
    """Four 3x3 conv blocks (16, 32, 64, 64 channels; batch norm, ReLU, 2x2 max-pool after the first three), a
    3 x 3 adaptive average pool that keeps the face's layout, dropout 0.5 (as McPherson et al.'s networks) and one
    linear layer: ``float32 (N, 3, H, W)`` standardised images -> ``(N, n_classes)`` logits."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = (3, 16, 32, 64, 64)
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(3))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 9, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class CNNAttacker(_ClosedSet):
    """A :class:`SmallCNN` trained from scratch on redacted pixels (McPherson et al.'s attack, scaled to a CPU).

    ``fit(images, labels)`` / ``scores(images)`` / ``topk(images, k)``: ``images`` ``uint8 (N, 3, H, W)`` RGB face
    crops (any size: resized to ``input_hw`` with antialiasing, then each image standardised to zero mean and
    unit variance); ``labels`` ``int64 (N,)``. Training follows the module's constants (:data:`CNN_EPOCHS`,
    :data:`CNN_BATCH`, :data:`CNN_LR`, :data:`CNN_WEIGHT_DECAY`, :data:`CNN_SHIFT`). Deterministic for a ``seed``
    on one device: weights are initialised under ``torch.random.fork_rng`` (the global RNG is left as it was),
    and batches and augmentation draw from a ``torch.Generator`` seeded with ``seed``.
    """

    def __init__(self, seed: int = 0, epochs: int = CNN_EPOCHS, input_hw: tuple[int, int] = CNN_INPUT_HW,
                 device: torch.device | str = "cpu") -> None:
        if int(epochs) != epochs or epochs < 1:
            raise ValueError(f"CNNAttacker: epochs must be an integer >= 1, got {epochs!r}")
        if len(input_hw) != 2 or min(input_hw) < 8:
            raise ValueError(f"CNNAttacker: input_hw must be (H, W) of at least 8 pixels each, got {input_hw!r}")
        self.seed, self.epochs, self.input_hw = int(seed), int(epochs), tuple(int(v) for v in input_hw)
        self.device = torch.device(device)

    def _prepare(self, images: Tensor, what: str) -> Tensor:
        check_images(images, what)
        x = images.to(self.device).float() / 255.0
        x = F.interpolate(x, size=self.input_hw, mode="bilinear", align_corners=False, antialias=True)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-3)  # a flat (solid-filled) face stays finite
        return (x - mean) / std

    def _augment(self, x: Tensor, gen: Tensor) -> Tensor:
        n, _, h, w = x.shape
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        py, px = max(1, round(h * CNN_SHIFT)), max(1, round(w * CNN_SHIFT))
        padded = F.pad(x, (px, px, py, py), mode="replicate")
        dy = torch.randint(0, 2 * py + 1, (n,), generator=gen).tolist()
        dx = torch.randint(0, 2 * px + 1, (n,), generator=gen).tolist()
        return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])

    def fit(self, images: Tensor, labels: Tensor) -> CNNAttacker:
        """Train on redacted ``images`` ``uint8 (N, 3, H, W)`` with ``labels`` ``int64 (N,)``; returns self."""
        x = self._prepare(images, "CNNAttacker.fit input")
        y = self._encode(labels, x.shape[0], "CNNAttacker.fit").to(self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            self.net = SmallCNN(len(self.classes)).to(self.device)
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=CNN_LR, weight_decay=CNN_WEIGHT_DECAY)
        self.net.train()
        n = x.shape[0]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)  # dropout masks draw from the global RNG: seeded here, restored after
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen).to(self.device)
                for start in range(0, n, CNN_BATCH):
                    idx = order[start:start + CNN_BATCH]
                    if len(idx) < 2:  # batch norm needs two samples
                        continue
                    loss = F.cross_entropy(self.net(self._augment(x[idx], gen)), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        self.net.eval()
        return self

    def scores(self, images: Tensor) -> Tensor:
        """Class logits ``float32 (N, C)`` (columns follow :attr:`classes`)."""
        if not hasattr(self, "net"):
            raise RuntimeError("CNNAttacker: call fit() before scores()")
        with torch.no_grad():
            return self.net(self._prepare(images, "CNNAttacker input"))
