"""The dataset registry and the ``Dataset`` base: an iterable of :class:`~anonlab.types.Sample`."""

from __future__ import annotations

from collections.abc import Iterator

from anonlab.io.images import ImageReadError  # noqa: F401  (re-exported)
from anonlab.registry import Registry
from anonlab.types import KINDS, Sample


class Dataset:
    """Streams ``Sample``s (one image + ground truth each); never loads the whole set into memory.

    ``__iter__`` yields samples in a stable order. An unreadable image raises :class:`ImageReadError` from
    ``load(i)``; ``__iter__`` is built on ``refs()`` + ``load`` so the engine can record the failure and go on.
    """

    name: str = ""
    #: object kinds this dataset has no human annotation for: the engine fills them with consensus pseudo
    #: ground truth from its detector panel and flags those rows ``pseudo_gt``
    pseudo_kinds: tuple[str, ...] = ()
    #: True when ``load`` reads one decoder stream (a video): the engine then calls it from one thread, in order
    sequential: bool = False

    @property
    def annotated(self) -> bool:
        """True when people annotated at least one kind of object (faces or persons) in this dataset."""
        return len(self.pseudo_kinds) < len(KINDS)

    def refs(self) -> list[str]:
        """Stable identifiers (image ids) of all samples, cheap: no decoding."""
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.refs())

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.load(i)


DATASETS: Registry[Dataset] = Registry("dataset")
