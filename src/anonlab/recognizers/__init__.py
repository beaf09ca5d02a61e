"""Recognizers: face (and body) embedders for identity leakage, registered by name (``anonlab list``). Every module
of this package is imported (sorted by name), so a new recognizer is one module plus its
``conf/recognizer/<name>.yaml``."""

from anonlab.recognizers.base import RECOGNIZERS, RecognizerBase
from anonlab.registry import import_submodules

import_submodules(__name__, __path__)

from anonlab.recognizers.dlib_resnet import DlibResNet  # noqa: E402  (re-exported for configs' _target_)
from anonlab.recognizers.facenet import FaceNet  # noqa: E402
from anonlab.recognizers.mobilefacenet import MobileFaceNet  # noqa: E402
from anonlab.recognizers.person_reid import PersonReID0287  # noqa: E402

__all__ = ["RECOGNIZERS", "DlibResNet", "FaceNet", "MobileFaceNet", "PersonReID0287", "RecognizerBase"]
