"""The frame loader: decode (in order, a bounded number of frames ahead, in background threads), rescale to a face
height, pad, bucket by size, and stage batches on the device. Orientation and format handling live in
:mod:`anonlab.io`; this module only schedules them."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from anonlab.camera.scale import rescale_to_face
from anonlab.datasets import Dataset
from anonlab.io.images import decode_on
from anonlab.types import Sample, SampleError


@dataclass
class Failure:
    """A sample that could not be used: its id and the one-line reason (run.json ``failures``)."""

    image: str
    error: str


def iter_batches(dataset: Dataset, indices: range | list[int], batch_size: int, failures: list[Failure], log,
                 face_px: float | None = None, skipped: list[str] | None = None, workers: int = 1,
                 decode_device: torch.device | None = None, pad_to: int = 0,
                 refs: list[str] | None = None, notes: dict[str, str] | None = None) -> Iterator[list[Sample]]:
    """Decode the samples at ``indices`` in order, optionally rescale each so its median annotated face is
    ``face_px`` high (frames without annotated faces are listed in ``skipped``), bucket them by (H, W) and yield
    full buckets (then the remainders). ``pad_to`` > 0 pads each frame at the bottom and right with black up to
    the next multiple of ``pad_to`` pixels, so frames of nearby sizes share a batch; boxes keep their
    coordinates, and a frame is padded the same whatever the batch size (results do not depend on it).

    ``workers`` background threads decode ahead of the consumer (0: decode inline), so decoding overlaps the
    detectors; datasets that read one stream (``Dataset.sequential``) use one thread, which keeps their reads in
    order. ``decode_device``: decode JPEGs on this CUDA device (nvJPEG).

    Memory bound. With ``n = len(indices)`` (the engine passes one result shard: ``store.shard_images``, 64 by
    default), ``b = batch_size``, ``A = 2 * workers + b + 1`` (``A = 1`` with ``workers = 0``) and ``S`` the number
    of distinct frame sizes (H, W) among these samples (after rescaling and padding), at most
    ``min(n, A + S * (b - 1) + b)`` of this call's frames are alive at once:

    - ``A`` decoded ahead of the consumer: :func:`ordered_map`'s window of ``2 * workers + b`` plus the frame being
      put in its bucket;
    - ``S * (b - 1)`` waiting in the size buckets: a bucket is yielded when it reaches ``b`` frames, so each size
      holds at most ``b - 1`` (photos that all differ in size wait until the end of the call, where the
      remainders are yielded: ``pad_to`` makes fewer sizes, ``b = 1`` holds none);
    - ``b``: the batch last yielded, which the consumer still holds while the next one is assembled.

    A consumer that keeps its last batch of an earlier call while this one starts (the engine, between shards)
    adds up to ``b``. Each frame is ``uint8 (3, H, W)``, ``3 * H * W`` bytes (6.2 MB at 1080p), with
    ``H * W <= loader.max_pixels`` as decoded (89,478,485 by default, :data:`anonlab.io.images.DEFAULT_MAX_PIXELS`:
    268 MB a frame), a rescaled frame's long side ``<= anonlab.camera.scale.MAX_SIDE`` (8192 px) and a padded one
    at most ``pad_to - 1`` px larger each way; frames decoded on a CUDA device (``decode_device``) take that
    memory there. E.g. the defaults (``workers = 1``, ``b = 1``): 4 + 0 + 1 = 5 frames (+ 1 in the engine);
    ``b = 32`` with 64-image shards: the whole shard, 64 frames (+ 32), 600 MB at 1080p. tests/test_loader.py
    counts the frames alive against this bound.

    A sample that raises one of
    :class:`~anonlab.types.SampleError` (or its subclass :class:`~anonlab.io.images.ImageReadError`) while it is loaded, rescaled or padded (an unreadable file, a size
    that differs from its annotation, a frame too large to rescale) is recorded in ``failures`` with its one-line
    message and skipped; the run goes on. Any other exception is a bug and propagates. ``notes`` collects the
    samples' reader notes (``{file: line}``: rotation applied, bit depth scaled, transparency or later frames left
    out, damage found), one entry per file.
    """
    refs = dataset.refs() if refs is None else refs
    workers = min(int(workers), 1) if dataset.sequential else int(workers)

    def load(i: int) -> Sample | Exception | None:
        try:
            s = dataset.load(i)
            if face_px is not None:
                s = rescale_to_face(s, face_px)
            return pad_sample(s, pad_to) if s is not None and pad_to > 0 else s
        except SampleError as e:
            return e

    buckets: dict[tuple[int, int], list[Sample]] = defaultdict(list)
    with decode_on(decode_device), ordered_map(load, list(indices), workers, 2 * workers + batch_size) as results:
        for i, s in results:
            if isinstance(s, SampleError):
                failures.append(Failure(refs[i], str(s)))
                log(f"error: {s}")
                continue
            if s is not None and notes is not None and s.notes:
                notes.update(s.notes)
            if s is None:  # no annotated face to rescale by
                if skipped is not None:
                    skipped.append(refs[i])
                continue
            key = tuple(s.image.shape[-2:])
            buckets[key].append(s)
            if len(buckets[key]) >= batch_size:
                yield buckets.pop(key)
    yield from (b for b in buckets.values() if b)


def pad_sample(s: Sample, multiple: int) -> Sample:
    h, w = s.image.shape[-2:]
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ph, pw) == (h, w):
        return s
    return dataclasses.replace(s, image=torch.nn.functional.pad(s.image, (0, pw - w, 0, ph - h)))


@contextlib.contextmanager
def ordered_map(fn, items: list, workers: int, ahead: int):
    """Yield ``(item, fn(item))`` in order, computed by ``workers`` threads at most ``ahead`` items in advance."""
    if workers <= 0:
        yield ((x, fn(x)) for x in items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anonlab-decode")

    def gen():
        pending: deque = deque()
        it = iter(items)
        for x in itertools.islice(it, ahead):
            pending.append((x, pool.submit(contextvars.copy_context().run, fn, x)))
        while pending:
            x, fut = pending.popleft()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append((nxt, pool.submit(contextvars.copy_context().run, fn, nxt)))
            yield x, fut.result()

    try:
        yield gen()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def stack_to_device(samples: list[Sample], device: torch.device) -> Tensor:
    """Stack one bucket into ``uint8 (B, 3, H, W)`` on ``device``: through pinned host memory and an asynchronous
    copy for CUDA, as is when the frames were decoded there already."""
    images = [s.image for s in samples]
    if images[0].device.type != "cpu":  # decoded on the GPU already
        return torch.stack(images).to(device)
    if device.type == "cuda":
        staged = torch.empty((len(images), *images[0].shape), dtype=torch.uint8, pin_memory=True)
        torch.stack(images, out=staged)
        return staged.to(device, non_blocking=True)
    return torch.stack(images).to(device)

