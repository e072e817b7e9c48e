"""Which form of the sidecar runs, compiled by mypyc or pure Python, and the switch that
forces the pure one.

A build with mypy and a C compiler installs C extensions (``*.so``) beside the ``.py``
files of the hot modules (``setup.py``), and Python's import system prefers an extension
to the source of the same name. ``ZETA_PURE_PYTHON=1`` in the environment makes every
``zeta_sidecar`` module load from its source instead: the tests run the unit suite both
ways, and an operator can rule the compiled form out when chasing a problem. Compiled
modules cannot be swapped for their source once imported, so the switch is read once,
when the package is imported (:func:`apply_switch`); processes started with it inherit
it. This module itself is never compiled.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["PURE_ENV", "apply_switch", "compiled_modules", "describe", "pure_forced"]

PURE_ENV = "ZETA_PURE_PYTHON"
"""The environment variable that forces pure Python, at build time and at import time."""

_PACKAGE = "zeta_sidecar"


def pure_forced() -> bool:
    """Whether :data:`PURE_ENV` asks for pure Python (set, and not ``0``)."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds ``zeta_sidecar``'s modules by their ``.py`` file, ahead of any extension."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if path is None or not fullname.startswith(_PACKAGE + "."):
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = Path(entry, leaf + ".py")
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def apply_switch() -> None:
    """Load the package's modules from source from now on if :data:`PURE_ENV` says so."""
    if pure_forced() and not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())


def compiled_modules() -> list[str]:
    """The package's modules that import as extensions here, by short name."""
    package = sys.modules[_PACKAGE]
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        spec = importlib.util.find_spec(f"{_PACKAGE}.{info.name}")
        origin = spec.origin if spec else None
        if origin and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            names.append(info.name)
    # mypyc's shared library holds the compiled code; it is no module of the sidecar's own.
    return sorted(name for name in names if not name.endswith("__mypyc"))


def describe() -> str:
    """``compiled (mypyc): N modules`` or ``pure Python`` (and why, when forced)."""
    compiled = compiled_modules()
    if compiled:
        return f"compiled (mypyc): {len(compiled)} modules"
    return f"pure Python ({PURE_ENV} is set)" if pure_forced() else "pure Python"
