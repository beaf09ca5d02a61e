"""``anonlab redact``: redaction of photos, folders and videos (:mod:`.core`), over time (:mod:`.temporal`), then
checked by an independent panel (:mod:`.verify`)."""

from anonlab.redact.core import (
    DEFAULT_FACES,
    DEFAULT_PERSONS,
    REDACTIONS,
    RedactError,
    RedactOptions,
    RedactReport,
    redact,
)
from anonlab.redact.temporal import TemporalOptions, fill

__all__ = ["DEFAULT_FACES", "DEFAULT_PERSONS", "REDACTIONS", "RedactError", "RedactOptions", "RedactReport",
           "TemporalOptions", "fill", "redact"]
