"""Token buckets and tenant limits, with an injected clock (issue 9)."""

import hashlib

import pytest

from zeta_api import Tenant, Traffic
from zeta_sidecar.limits import TenantLimits, TokenBucket
from zeta_sidecar.traffic import OTHER_TENANT, TrafficPolicy


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    for _ in range(3):
        assert bucket.wait_for(1, 0.0) == 0.0
        bucket.take(1, 0.0)
    assert bucket.wait_for(1, 0.0) == pytest.approx(0.5)
    assert bucket.wait_for(1, 0.5) == 0.0  # refilled at 2 per second
    assert bucket.remaining(10.0) == 3  # never above the burst


def test_debt_is_paid_before_the_next_request() -> None:
    bucket = TokenBucket(rate=10.0, burst=10.0, now=0.0)
    bucket.take(30, 0.0)  # the pod reported far more than estimated
    assert bucket.wait_for(1, 0.0) == pytest.approx(2.1)


def test_tenant_limits_are_shared_among_replicas_and_answer_like_openai() -> None:
    tenant = Tenant(name="acme", requests_per_second=4.0, tokens_per_minute=1200)
    limits = TenantLimits(tenant, replicas=2, now=0.0)
    assert limits.admit(10, 0.0) is None
    assert limits.admit(10, 0.0) is None  # burst: one second's worth of 2 req/s
    refusal = limits.admit(10, 0.0)
    assert refusal is not None
    assert refusal.kind == "requests"
    assert refusal.retry_after == pytest.approx(0.5)
    assert refusal.headers["x-ratelimit-limit-requests"] == "120"  # per minute, this share
    assert refusal.headers["x-ratelimit-remaining-requests"] == "0"
    assert refusal.headers["x-ratelimit-reset-requests"] == "1s"
    assert refusal.headers["x-ratelimit-limit-tokens"] == "600"
    assert limits.admit(590, 10.0) is None
    tokens = limits.admit(100, 10.0)
    assert tokens is not None
    assert tokens.kind == "tokens"


def test_settling_usage_corrects_the_estimate() -> None:
    limits = TenantLimits(Tenant(name="a", tokens_per_minute=600), replicas=1, now=0.0)
    assert limits.admit(500, 0.0) is None
    limits.settle(500, 50, 0.0)  # used far less than estimated: given back
    assert limits.admit(500, 0.0) is None
    limits.settle(500, 1500, 0.0)  # used far more: debt
    assert limits.admit(1, 0.0) is not None


def test_classification_header_then_tenant_then_model_then_default() -> None:
    key = "sk-acme-secret"
    traffic = Traffic(
        tenants=(
            Tenant(name="acme", priority_class="sheddable", requests_per_second=1.0,
                   api_key_sha256=(hashlib.sha256(key.encode()).hexdigest(),)),
            Tenant(name="free"),
        ),
        model_classes={"auto": "critical"},
    )  # fmt: skip
    policy = TrafficPolicy(traffic, 0.0)
    cls, tenant, limits = policy.classify("m", {"x-zeta-priority": "critical"})
    assert (cls.name, tenant, limits) == ("critical", OTHER_TENANT, None)
    cls, tenant, limits = policy.classify("m", {"x-zeta-tenant": "acme"})
    assert (cls.name, tenant) == ("sheddable", "acme")
    assert limits is not None
    cls, tenant, _ = policy.classify("m", {"Authorization": f"Bearer {key}"})
    assert (cls.name, tenant) == ("sheddable", "acme")
    cls, tenant, limits = policy.classify("auto", {"x-zeta-tenant": "free"})
    assert (cls.name, tenant, limits) == ("critical", "free", None)
    cls, tenant, _ = policy.classify("m", {"x-zeta-priority": "gold", "x-zeta-tenant": "nobody"})
    assert (cls.name, tenant) == ("standard", OTHER_TENANT)  # unknown values fall through


def test_a_new_table_with_the_same_limits_keeps_the_buckets() -> None:
    traffic = Traffic(tenants=(Tenant(name="acme", requests_per_second=1.0),))
    first = TrafficPolicy(traffic, 0.0)
    assert first.limits["acme"].admit(0, 0.0) is None
    again = TrafficPolicy(Traffic(tenants=traffic.tenants, queue_limit=5), 0.0, first)
    assert again.limits["acme"] is first.limits["acme"]  # no fresh burst on a reload
    changed = TrafficPolicy(Traffic(tenants=traffic.tenants, gateway_replicas=2), 0.0, again)
    assert changed.limits["acme"] is not first.limits["acme"]
