"""Attacks on detectors and recognizers (need a ``differentiable`` model). Today: adversarial patches, EOT training against differentiable detectors (:mod:`.train`), objectives and
printability (:mod:`.objectives`), transformations (:mod:`.eot`), and evaluation with controls and transfer through
the benchmark engine (:mod:`.evaluate`). Placement and pasting live in :mod:`anonlab.defenses.patch`, shared by
training and the ``patch``/``noise_patch``/``grey_patch`` defenses."""

from anonlab.attacks.eot import EOT
from anonlab.attacks.objectives import NotDifferentiableError, differentiable_detectors
from anonlab.attacks.train import (
           PatchTrainer,
           PatchTrainingError,
           TrainedPatch,
           train_patch,
           weights_hash,
)

__all__ = ["EOT", "NotDifferentiableError", "PatchTrainer", "PatchTrainingError", "TrainedPatch",
           "differentiable_detectors", "train_patch", "weights_hash"]
