"""Recognizers: face (and body) embedders for identity leakage, registered by name (``anonlab list``)."""

from anonlab.recognizers import dlib_resnet  # noqa: F401  (registration side effect)
from anonlab.recognizers.base import RECOGNIZERS, RecognizerBase
from anonlab.recognizers.dlib_resnet import DlibResNet

__all__ = ["RECOGNIZERS", "DlibResNet", "RecognizerBase"]
