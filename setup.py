"""Build hook: compile the sidecar's hot modules with mypyc, else build pure Python.

All metadata lives in ``pyproject.toml``; this file only adds the C extensions. The same
``.py`` files always ship beside them, so a build without mypy or a C compiler, or with
``ZETA_PURE_PYTHON=1``, installs the pure-Python package that every test also runs.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HOT_MODULES = (
    "admission",
    "bodies",
    "complexity",
    "forwarding",
    "framing",
    "headers",
    "http_server",
    "picking",
    "pods",
    "proxy",
    "relay",
    "resilience",
    "routing",
    "table_store",
    "tallies",
    "traffic",
    "upstream",
)
"""The sidecar modules compiled by mypyc; bench/README.md says what they pay, and why
others (``limits``, ``gateway``, ``metrics``...) stay pure."""

PACKAGE_DIR = Path(__file__).resolve().parent / "sidecar" / "zeta_sidecar"


def _log(message: str) -> None:
    print(f"zeta-router build: {message}", file=sys.stderr, flush=True)


def _compiler_found() -> bool:
    # setuptools would fail the whole build on a missing compiler: look before leaping.
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return (
        shutil.which(cc.split()[0]) is not None
        and Path(sysconfig.get_paths()["include"], "Python.h").is_file()
    )


def drop_stale_extensions(compiled: tuple[str, ...]) -> None:
    """Remove extensions an editable install left beside the sources of modules this
    build does not compile: Python would import them instead of the source."""
    keep = {*compiled, "_mypyc__mypyc"} if compiled else set()
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for path in PACKAGE_DIR.iterdir():
        if path.name.endswith(suffixes) and path.name.partition(".")[0] not in keep:
            _log(f"removing {path.name}: no longer compiled")
            path.unlink()


def compiled_extensions() -> list[Extension]:
    """mypyc's extensions for :data:`HOT_MODULES`, or none when they cannot be built."""
    if os.environ.get("ZETA_PURE_PYTHON", "") not in ("", "0"):
        _log("ZETA_PURE_PYTHON is set: pure Python")
        return []
    try:
        from mypyc.build import mypycify  # noqa: PLC0415 - only when compiling
    except ImportError:
        _log("mypyc is not importable: pure Python")
        return []
    if not _compiler_found():
        _log("no C compiler or Python headers: pure Python")
        return []
    sources = [f"sidecar/zeta_sidecar/{name}.py" for name in HOT_MODULES]
    extensions = mypycify(sources, opt_level="3", group_name="zeta_sidecar._mypyc")
    for extension in extensions:
        # A compile error in one of them leaves that module pure rather than fail pip.
        extension.optional = True
    return extensions


class BuildExt(build_ext):
    """setuptools' ``build_ext``, which also keeps a failed build pure Python as a whole
    and dates the extensions an editable install copies beside their sources as built now.

    Without the dating, an unchanged extension keeps the date it was first built at (mypyc skips
    identical copies), and the tests' check for compiled modules older than their source
    (``tests/conftest.py``) would fire after a mere ``touch`` and a rebuild.
    """

    def build_extensions(self) -> None:
        super().build_extensions()
        # Each module's extension is a stub that loads mypyc's shared library: without that
        # library they would fail to import instead of leaving Python to their source.
        shared = [e for e in self.extensions if e.name.endswith("__mypyc")]
        if shared and not os.path.exists(self.get_ext_fullpath(shared[0].name)):
            _log("mypyc's shared library did not build: pure Python")
            for extension in self.extensions:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.get_ext_fullpath(extension.name))

    def copy_extensions_to_source(self) -> None:
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for extension in self.extensions:
            inplace, built = self._get_inplace_equivalent(build_py, extension)
            if not os.path.exists(built):  # an optional one that failed: its old copy goes
                with contextlib.suppress(FileNotFoundError):
                    os.remove(inplace)
            elif os.path.exists(inplace):
                os.utime(inplace)


extensions = compiled_extensions()
drop_stale_extensions(HOT_MODULES if extensions else ())
setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
