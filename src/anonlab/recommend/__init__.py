"""``anonlab recommend``: the weakest redaction that is safe for a user's own footage against a threat model."""

from anonlab.recommend.core import (
    Recommendation,
    RecommendError,
    load_threat,
    recommend,
)
from anonlab.recommend.output import write_outputs

__all__ = ["RecommendError", "Recommendation", "load_threat", "recommend", "write_outputs"]
