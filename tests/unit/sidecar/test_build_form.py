"""The sidecar's two forms: modules compiled by mypyc, or their source when forced."""

import importlib.machinery
import sys

import pytest

import zeta_sidecar
from zeta_sidecar import build_form, routing


def test_the_switch_finds_each_module_by_its_source() -> None:
    spec = build_form._SourcesFirst().find_spec("zeta_sidecar.routing", zeta_sidecar.__path__)
    assert spec is not None
    assert spec.origin is not None
    assert spec.origin.endswith("routing.py")
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)


def test_the_switch_leaves_other_packages_alone() -> None:
    assert build_form._SourcesFirst().find_spec("json.decoder", sys.path) is None


@pytest.mark.parametrize(("value", "forced"), [("", False), ("0", False), ("1", True)])
def test_the_variable_forces_pure_python_unless_empty_or_zero(
    value: str, forced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(build_form.PURE_ENV, value)
    assert build_form.pure_forced() is forced


def test_the_form_reported_is_the_form_that_runs() -> None:
    compiled = not routing.__file__.endswith(".py")
    assert ("routing" in build_form.compiled_modules()) is compiled
    assert build_form.describe().startswith("compiled (mypyc)" if compiled else "pure Python")
    if build_form.pure_forced():
        assert not build_form.compiled_modules()
