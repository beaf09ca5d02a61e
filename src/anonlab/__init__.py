"""anonlab: how well does anonymization defeat off-the-shelf face and person detectors?

Importing this package has no side effects: no network, no files written, no environment changed.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
