"""The per-request tallies export exactly what ``prometheus_client``'s own metric objects
would for the same requests: the dashboards, alerts and tests read these families."""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zeta_sidecar.metrics import _LATENCY_BUCKETS, _TTFB_BUCKETS, Metrics

# model, chosen model, pod, status, latency, first byte (None: not streamed). Latencies on a
# bucket's bound (0.05, 1) and past the last one (400) test the buckets' edges.
REQUESTS = [
    ("sim-7b", "sim-7b", "10.0.0.1:8000", 200, 0.05, 0.001),
    ("sim-7b", "sim-7b", "10.0.0.1:8000", 200, 0.3, None),
    ("auto", "sim-4b", "10.0.0.2:8000", 200, 1.0, 0.0123),
    ("auto", "sim-4b", "10.0.0.2:8000", 503, 400.0, None),
    ("sim-7b", "sim-7b", "10.0.0.3:8000", 429, 0.0001, None),
]
FAMILIES = {
    "zeta_requests": "counter",
    "zeta_request_duration_seconds": "histogram",
    "zeta_time_to_first_byte_seconds": "histogram",
    "zeta_admissions": "counter",
}


def exported(registry: CollectorRegistry) -> dict[str, Any]:
    """Per family: its type and samples; a ``_created`` sample's value (a clock time) only
    as being there."""
    text = generate_latest(registry).decode()
    return {
        f.name: (
            f.type,
            sorted(
                (s.name, sorted(s.labels.items()), True if s.name.endswith("_created") else s.value)
                for s in f.samples
            ),
        )
        for f in text_string_to_metric_families(text)
        if f.name in FAMILIES
    }


def test_the_compiled_tallies_export_what_prometheus_client_would() -> None:
    ours = Metrics(lambda: [])
    reference = CollectorRegistry()
    requests = Counter(
        "zeta_requests", "", ["model", "chosen_model", "pod", "code"], registry=reference
    )
    duration = Histogram(
        "zeta_request_duration_seconds", "", ["model"], buckets=_LATENCY_BUCKETS,
        registry=reference,
    )  # fmt: skip
    ttfb = Histogram(
        "zeta_time_to_first_byte_seconds", "", ["model"], buckets=_TTFB_BUCKETS,
        registry=reference,
    )  # fmt: skip
    admissions = Counter(
        "zeta_admissions", "", ["model", "class", "tenant", "outcome"], registry=reference
    )
    for model, chosen, pod, code, latency, first in REQUESTS:
        ours.request(model, chosen, pod, code)
        requests.labels(model, chosen, pod, str(code)).inc()
        ours.observe(model, latency, first)
        duration.labels(model).observe(latency)
        if first is not None:
            ttfb.labels(model).observe(first)
        outcome = "shed" if code == 429 else "admitted"
        ours.admission(model, "standard", "", outcome)
        admissions.labels(model, "standard", "", outcome).inc()

    got, want = exported(ours.registry), exported(reference)
    assert set(got) == set(FAMILIES)
    assert {name: kind for name, (kind, _) in got.items()} == FAMILIES
    assert got == want
