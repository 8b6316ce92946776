"""Packages whose names load on first use, so that importing a package stays light (no torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module ``__getattr__`` for ``package`` whose ``exports`` map names to submodules.

    Use in a package's ``__init__``: ``__all__, __getattr__ = lazy_exports(__name__, {"Name": "module"})``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return sorted(exports), __getattr__
