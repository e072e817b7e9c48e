"""What the status says of the traffic classes in force (issue 9)."""

from zeta_api import PriorityClass, Tenant, Traffic
from zeta_operator.reporting import traffic_status


def test_the_status_lists_classes_by_rank_and_counts_limited_tenants() -> None:
    traffic = Traffic(
        classes=(
            PriorityClass(name="batch", priority=1, sheddable=True),
            PriorityClass(name="gold", priority=9),
        ),
        default_class="gold",
        tenants=(Tenant(name="a", requests_per_second=1.0), Tenant(name="b")),
        gateway_replicas=3,
    )
    status = traffic_status(traffic)
    assert [(c.name, c.priority, c.sheddable) for c in status.classes] == [
        ("gold", 9, False),
        ("batch", 1, True),
    ]
    assert (status.default_class, status.tenants, status.rate_limited_tenants) == ("gold", 2, 1)
    assert status.gateway_replicas == 3
