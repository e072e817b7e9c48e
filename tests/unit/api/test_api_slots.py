"""slot_init's __init__ behaves as the dataclass's own: signature, defaults, factories,
__post_init__ and frozenness; a class it cannot mirror exactly keeps its own."""

import dataclasses
import inspect
from collections.abc import Callable

import pytest

from zeta_api import Endpoint, EndpointLoad, slot_init

pytestmark = pytest.mark.unit


def _made(*, fast: bool) -> type:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Sample:
        name: str
        count: int = 3
        tags: list[str] = dataclasses.field(default_factory=list)

        def __post_init__(self) -> None:
            if self.count < 0:
                raise ValueError(f"count must be >= 0, got {self.count}")

    return slot_init(Sample) if fast else Sample


def test_the_same_signature_defaults_factories_and_post_init() -> None:
    fast, own = _made(fast=True), _made(fast=False)
    assert fast.__init__ is not own.__init__
    # As text: a factory's default is a sentinel of each module's own, shown alike.
    assert str(inspect.signature(fast)) == str(inspect.signature(own))
    assert fast.__init__.__qualname__ == own.__init__.__qualname__
    for kwargs in ({"name": "a"}, {"name": "a", "count": 0, "tags": ["x"]}):
        assert dataclasses.astuple(fast(**kwargs)) == dataclasses.astuple(own(**kwargs))
    first, second = fast(name="a"), fast(name="b")
    assert first.tags == []
    assert first.tags is not second.tags  # a fresh list each time
    with pytest.raises(ValueError, match="count must be >= 0, got -1"):
        fast(name="a", count=-1)


@pytest.mark.parametrize(
    "kwargs", [{}, {"count": 1}, {"name": "a", "colour": "red"}], ids=["none", "no name", "extra"]
)
def test_the_same_refusals_of_arguments(kwargs: dict[str, object]) -> None:
    fast, own = _made(fast=True), _made(fast=False)
    with pytest.raises(TypeError) as theirs:
        own(**kwargs)
    with pytest.raises(TypeError) as ours:
        fast(**kwargs)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError):
        fast("a")  # keyword-only, as before


def test_instances_stay_frozen() -> None:
    sample = _made(fast=True)(name="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.name = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del sample.name  # type: ignore[misc]


def test_records_have_it() -> None:
    load = EndpointLoad(running=1.0)
    endpoint = Endpoint(address="10.0.0.1:8000", pod="p", weight=0.5, capacity=2, load=load)
    assert endpoint == dataclasses.replace(endpoint)
    assert "_set_0" in Endpoint.__init__.__code__.co_names


def _plain(**options: bool) -> type:
    @dataclasses.dataclass(**options)
    class Plain:
        name: str

    return Plain


def _init_var() -> type:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class WithInitVar:
        name: str
        seed: dataclasses.InitVar[int] = 0

    return WithInitVar


def _left_out() -> type:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class LeftOut:
        name: str
        size: int = dataclasses.field(default=0, init=False)

    return LeftOut


@pytest.mark.parametrize(
    "make",
    [
        lambda: _plain(frozen=True, slots=True),
        lambda: _plain(frozen=True, kw_only=True),
        lambda: _plain(slots=True, kw_only=True),
        _init_var,
        _left_out,
    ],
    ids=["positional", "unslotted", "unfrozen", "InitVar", "left out of __init__"],
)
def test_a_class_it_cannot_mirror_keeps_its_own(make: Callable[[], type]) -> None:
    cls = make()
    own = cls.__init__
    assert slot_init(cls).__init__ is own
