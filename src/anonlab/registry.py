"""Name -> factory registries, strict like torchvision's ``register_model``.

A second registration under a taken name raises; an unknown name raises listing the valid names.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Name -> factory for one kind of component (dataset, camera, defense, detector, recognizer)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Class/function decorator adding ``factory`` under ``name``; a taken name raises ``ValueError``."""

        def add(factory: F) -> F:
            if name in self._entries:
                old = self._entries[name]
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {old.__module__}.{old.__qualname__}"
                )
            self._entries[name] = factory
            if isinstance(factory, type) and not vars(factory).get("name"):  # own name, not a parent's
                factory.name = name  # type: ignore[attr-defined]
            return factory

        return add

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; raises ``ValueError`` naming the valid choices."""
        if name not in self._entries:
            near = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; valid: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, **params: Any) -> T:
        return self.get(name)(**params)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (found on ``path``, the package's ``__path__``), sorted by name, so each
    registers its entries: adding a component is adding one module and its config, with no import list to edit."""
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        importlib.import_module(f"{package}.{info.name}")
