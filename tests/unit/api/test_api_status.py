"""The ZetaRouter status: wire form, kopf's own field, and condition bookkeeping."""

import pytest

from zeta_api import (
    CONDITION_METRICS_AVAILABLE,
    CONDITION_READY,
    Condition,
    ConditionStatus,
    Fallback,
    ModelStatus,
    StatusError,
    StatusSummary,
    TableStatus,
    ZetaRouterStatus,
    parse_status,
    with_condition,
)

pytestmark = pytest.mark.unit

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def _ready(status: ConditionStatus, reason: str, at: str) -> Condition:
    return Condition(type=CONDITION_READY, status=status, reason=reason, last_transition_time=at)


def _status() -> ZetaRouterStatus:
    return ZetaRouterStatus(
        observed_generation=3,
        conditions=(_ready(ConditionStatus.TRUE, "TablePublished", T0),),
        models=(
            ModelStatus(name="qwen-7b", ready_pods=2, weight=0.41, waiting=3, kv_cache=0.52),
            ModelStatus(name="qwen-14b", ready_pods=0),
        ),
        summary=StatusSummary(models=1, pods=2),
        routing_table=TableStatus(revision=118, updated_at=T0),
        fallback=Fallback.LAST_GOOD,
    )


def test_wire_form_is_camel_case_and_leaves_unknowns_out() -> None:
    wire = _status().to_dict()
    assert wire["observedGeneration"] == 3
    assert wire["fallback"] == "last-good"
    assert wire["routingTable"] == {"revision": 118, "updatedAt": T0}
    assert wire["summary"] == {"models": 1, "pods": 2}
    assert wire["models"] == [
        {
            "name": "qwen-7b",
            "readyPods": 2,
            "weight": 0.41,
            "saturated": False,
            "waiting": 3.0,
            "kvCache": 0.52,
        },
        {"name": "qwen-14b", "readyPods": 0, "weight": 0.0, "saturated": False},
    ]
    assert wire["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "TablePublished",
            "message": "",
            "lastTransitionTime": T0,
        },
    ]


def test_round_trip_ignoring_kopf_bookkeeping() -> None:
    status = _status()
    stored = {**status.to_dict(), "kopf": {"progress": {"reconcile": {"retries": 1}}}}
    assert parse_status(stored) == status
    assert ZetaRouterStatus.from_dict({}) == ZetaRouterStatus()


def test_condition_lookup() -> None:
    status = _status()
    assert status.condition(CONDITION_READY) is status.conditions[0]
    assert status.condition(CONDITION_METRICS_AVAILABLE) is None


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"fallback": "panic"}, "status.fallback: must be one of 'none', 'last-good'"),
        ({"models": [{"name": "a", "weight": 2}]}, "status.models[0].weight: must be <= 1"),
        (
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Ok",
                        "lastTransitionTime": "yesterday",
                    }
                ]
            },
            "status.conditions[0].lastTransitionTime: must be an RFC 3339 date-time",
        ),
        (
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "not ok",
                        "lastTransitionTime": T0,
                    }
                ]
            },
            "status.conditions[0].reason: must match",
        ),
        ({"routingTable": {"revision": -1, "updatedAt": T0}}, "status.routingTable.revision"),
        ({"surprise": 1}, "status.surprise: unknown field"),
    ],
)
def test_bad_status_names_the_field(patch: dict[str, object], message: str) -> None:
    with pytest.raises(StatusError) as caught:
        parse_status(patch)
    assert str(caught.value).startswith(message)


class TestWithCondition:
    def test_adds_a_new_type(self) -> None:
        new = _ready(ConditionStatus.TRUE, "TablePublished", T0)
        assert with_condition((), new) == (new,)

    def test_same_status_keeps_the_transition_time(self) -> None:
        old = _ready(ConditionStatus.FALSE, "NoPods", T0)
        new = _ready(ConditionStatus.FALSE, "SelectorMatchesNothing", T1)
        (merged,) = with_condition((old,), new)
        assert merged.reason == "SelectorMatchesNothing"
        assert merged.last_transition_time == T0

    def test_changed_status_moves_the_transition_time(self) -> None:
        old = _ready(ConditionStatus.FALSE, "NoPods", T0)
        new = _ready(ConditionStatus.TRUE, "TablePublished", T1)
        assert with_condition((old,), new) == (new,)

    def test_other_types_keep_their_place(self) -> None:
        metrics = Condition(
            type=CONDITION_METRICS_AVAILABLE,
            status=ConditionStatus.TRUE,
            reason="QueriesAnswered",
            last_transition_time=T0,
        )
        old = _ready(ConditionStatus.FALSE, "NoPods", T0)
        new = _ready(ConditionStatus.TRUE, "TablePublished", T1)
        assert with_condition((old, metrics), new) == (new, metrics)
