"""Every per-signal list derives from the one table in zeta_api, and agrees with it."""

import dataclasses

from zeta_api import SIGNALS, Engine, QueryOverrides, Signal
from zeta_api.schema import fields_of
from zeta_operator.metrics import queries
from zeta_operator.snapshots import PodLoad


def test_the_table_has_one_row_per_signal() -> None:
    assert list(SIGNALS) == list(Signal)


def test_pod_load_has_one_field_per_signal() -> None:
    assert [f.name for f in dataclasses.fields(PodLoad)] == [i.field for i in SIGNALS.values()]


def test_query_overrides_have_one_field_per_signal_under_its_wire_name() -> None:
    assert list(fields_of(QueryOverrides)) == [s.value for s in SIGNALS]
    every = QueryOverrides(**{i.field: f"q_{i.field}" for i in SIGNALS.values()})
    assert every.as_map() == {s: f"q_{i.field}" for s, i in SIGNALS.items()}


def test_default_queries_are_the_tables() -> None:
    for engine in Engine:
        expected = {s: i.queries[engine] for s, i in SIGNALS.items() if engine in i.queries}
        assert dict(queries.DEFAULT_QUERIES[engine]) == expected
