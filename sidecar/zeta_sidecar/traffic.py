"""A request's traffic class and tenant, from the table's ``traffic`` section.

Compiled once per table into look-ups, so classifying a request costs a few dict reads:
the class header if it names a declared class; else the tenant's class; else the
model's default class; else the default class. The tenant comes from the tenant header,
or from the SHA-256 of the ``Authorization: Bearer`` key when tenants declare key
digests. Unknown values fall through, never an error: a typo in a header must not turn
a request away.

The tenants' token buckets outlive tables: a new table with the same limits keeps
them (a reload must not hand every tenant a fresh burst).
"""

import hashlib
from collections.abc import Mapping

from zeta_api import PriorityClass, Tenant, Traffic
from zeta_sidecar.limits import TenantLimits

__all__ = ["Classified", "TrafficPolicy"]

OTHER_TENANT = "other"
"""Metric label of requests from no declared tenant (keeps label sets bounded)."""

Classified = tuple[PriorityClass, str, TenantLimits | None]
"""(class, tenant label, the tenant's buckets or ``None``)."""


class TrafficPolicy:
    """The classes and tenants in force, and the tenants' buckets."""

    def __init__(
        self,
        traffic: Traffic,
        now: float,
        previous: "TrafficPolicy | None" = None,
        *,
        workers: int = 1,
    ) -> None:
        self.traffic = traffic
        self.classes = {c.name: c for c in traffic.classes}
        self.top = max(c.priority for c in traffic.classes)
        """The highest declared priority."""
        self.default = self.classes[traffic.default_class]
        self.class_header = traffic.class_header
        self.tenant_header = traffic.tenant_header
        self.tenants: dict[str, Tenant] = {t.name: t for t in traffic.tenants}
        self.by_key = {digest: t for t in traffic.tenants for digest in t.api_key_sha256}
        self.model_classes = {m: self.classes[c] for m, c in traffic.model_classes.items()}
        kept = previous.limits if previous is not None else {}
        # Each worker of a replica holds its own buckets: one more replica to share among.
        replicas = traffic.gateway_replicas * workers
        self.limits: dict[str, TenantLimits] = {}
        for tenant in traffic.tenants:
            if tenant.requests_per_second is None and tenant.tokens_per_minute is None:
                continue
            old = kept.get(tenant.name)
            if old is None or old.tenant != tenant or old.replicas != replicas:
                old = TenantLimits(tenant, replicas, now)
            self.limits[tenant.name] = old

    def classify(self, model: str, headers: Mapping[str, str]) -> Classified:
        """The request's class, tenant label and buckets."""
        tenant = self._tenant(headers)
        named = headers.get(self.class_header)
        cls = self.classes.get(named) if named else None
        if cls is None and tenant is not None and tenant.priority_class is not None:
            cls = self.classes[tenant.priority_class]
        if cls is None:
            cls = self.model_classes.get(model, self.default)
        if tenant is None:
            return cls, OTHER_TENANT, None
        return cls, tenant.name, self.limits.get(tenant.name)

    def _tenant(self, headers: Mapping[str, str]) -> Tenant | None:
        if not self.tenants:
            return None
        name = headers.get(self.tenant_header)
        if name:
            tenant = self.tenants.get(name)
            if tenant is not None:
                return tenant
        if self.by_key:
            auth = headers.get("Authorization", "")
            scheme, _, key = auth.partition(" ")
            if scheme.lower() == "bearer" and key:
                return self.by_key.get(hashlib.sha256(key.strip().encode()).hexdigest())
        return None
