"""Scalar option checks with one message shape, for constructors that validate their config before any work.

Every failure raises ``ValueError`` on one line::

    {where}: {name} must be {a number|an integer} {rule} ({note}), got {value!r}

(``where`` — the component, e.g. ``gaussian_blur`` — and ``note`` — the unit or meaning — only when given).
``bool`` is never a number here (``True > 0`` would pass otherwise). Each check returns the value converted to
``float`` or ``int``, so callers store what they checked.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def _fail(name: str, value: Any, rule: str, where: str, note: str) -> ValueError:
    prefix = f"{where}: " if where else ""
    suffix = f" ({note})" if note else ""
    return ValueError(f"{prefix}{name} must be {rule}{suffix}, got {value!r}")


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool: NaN and +-inf are never valid settings (found by the breaker:
    ``defense.sigma=inf`` passed ``check_positive`` and crashed mid-run with an OverflowError)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any, whole_floats: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return whole_floats and isinstance(value, float) and value.is_integer()


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return ""


def _inside(v: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and not (v > lo if lo_open else v >= lo):
        return False
    return hi is None or (v < hi if hi_open else v <= hi)


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False, where: str = "", note: str = "") -> float:
    """``value`` as a float if it is a finite number (int or float, not bool, NaN or inf) in the interval from ``lo`` to
    ``hi`` (None: unbounded; ends included unless ``lo_open``/``hi_open``); else ``ValueError`` (module doc)."""
    if not (_is_number(value) and _inside(float(value), lo, hi, lo_open, hi_open)):
        raise _fail(name, value, f"a number {_interval(lo, hi, lo_open, hi_open)}".rstrip(), where, note)
    return float(value)


def check_positive(name: str, value: Any, *, where: str = "", note: str = "") -> float:
    """``value`` as a float if it is a number > 0; else ``ValueError`` (module doc)."""
    return check_range(name, value, 0, lo_open=True, where=where, note=note)


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, where: str = "",
              note: str = "", whole_floats: bool = False) -> int:
    """``value`` as an int if it is an integer (not bool; with ``whole_floats`` also a float such as ``4.0``) in
    ``[lo, hi]`` (None: unbounded); else ``ValueError`` (module doc)."""
    if not (_is_integer(value, whole_floats) and _inside(value, lo, hi, False, False)):
        raise _fail(name, value, f"an integer {_interval(lo, hi, False, False)}".rstrip(), where, note)
    return int(value)


def check_choice(name: str, value: Any, choices: Any, *, where: str = "") -> Any:
    """``value`` if it is one of ``choices``; else ``ValueError`` listing them."""
    if value not in choices:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}unknown {name} {value!r}; valid: {', '.join(map(str, choices))}")
    return value


def exactly_one(where: str, **options: Any) -> tuple[str, Any]:
    """The one ``(name, value)`` among ``options`` that is not None; ``ValueError`` naming all of them otherwise."""
    given = {k: v for k, v in options.items() if v is not None}
    if len(given) != 1:
        raise ValueError(f"{where}: give exactly one of {', '.join(options)}, got {given or 'none'}")
    return next(iter(given.items()))


def usable_device(value: Any, name: str = "device", types: tuple[str, ...] = ("cpu", "cuda")) -> torch.device:
    """``value`` as a ``torch.device`` of one of ``types`` on which a tensor can be made. Raises ``ValueError``, one
    line naming ``name`` and the value, for a malformed device name, a type not in ``types``, a CUDA device on a
    machine without one, a device index the machine lacks (``cuda:3`` with one GPU), or a type this torch has no
    backend for (the first sentence of torch's error)."""
    try:
        dev = torch.device(str(value))
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in types:
        raise ValueError(f"{name} must be {', '.join(types)} or cuda:N, got {value!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={value} but torch sees no CUDA device; use {name}=cpu")
    try:
        torch.empty(0, device=dev)  # a missing driver or index fails here, not in a model's .to()
    except (RuntimeError, AssertionError, NotImplementedError) as e:
        # torch's first sentence: a device type without a backend ("mps" on Linux) continues with every backend
        reason = str(e).strip().splitlines()[0].split(". ")[0].rstrip(".")
        raise ValueError(f"{name}={value} cannot be used: {reason}") from None
    return dev
