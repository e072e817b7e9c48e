"""``--workers``: the CPUs the container may use, the workers' metrics merged, and each
worker counted as a replica where replicas share pods or a rate."""

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zeta_api import Tenant, Traffic
from zeta_sidecar.cpu_quota import cgroup_cpus, cpus_from_cfs, cpus_from_cpu_max, workers_for
from zeta_sidecar.merged_metrics import merge_expositions, sample_sum
from zeta_sidecar.picking import default_draw
from zeta_sidecar.routing import Router
from zeta_sidecar.settings import Settings
from zeta_sidecar.traffic import TrafficPolicy

# --- the CPUs: pure ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000\n", 1.5),
        ("50000 100000\n", 0.5),
        ("250000\n", 2.5),  # the period defaults to the kernel's 100 ms
        ("", None),
        ("garbage 100000", None),
        ("-1 100000", None),
    ],
)
def test_cpu_max(text: str, cpus: float | None) -> None:
    assert cpus_from_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1\n", "100000\n", None), ("300000\n", "100000\n", 3.0), ("x", "100000", None)],
)
def test_cfs_quota(quota: str, period: str, cpus: float | None) -> None:
    assert cpus_from_cfs(quota, period) == cpus


@pytest.mark.parametrize(
    ("quotas", "available", "workers"),
    [
        ([], 8, 8),  # no quota: every CPU the process may run on
        ([1.5], 8, 2),  # rounded up
        ([0.25], 8, 1),  # at least one
        ([16.0], 4, 4),  # never more than the affinity mask
        ([4.0, 2.0], 8, 2),  # the smallest quota of the ancestors
        ([2.0000000001], 8, 2),  # float noise is not a third CPU
    ],
)
def test_workers_for(quotas: list[float], available: int, workers: int) -> None:
    assert workers_for(quotas, available) == workers


# --- the CPUs: sample cgroup files -----------------------------------------------------


def _cpus(tmp_path: Path, files: dict[str, str], self_cgroup: str) -> list[float]:
    """:func:`cgroup_cpus` on a mount holding ``files``, for a process in ``self_cgroup``."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "self").write_text(self_cgroup)
    return cgroup_cpus(root, tmp_path / "self")


def test_cgroup_v2_reads_the_process_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    files = {
        "cgroup.controllers": "cpuset cpu io memory pids\n",
        "cpu.max": "max 100000\n",
        "kubepods/cpu.max": "800000 100000\n",
        "kubepods/pod1/cpu.max": "max 100000\n",
        "kubepods/pod1/ctr/cpu.max": "150000 100000\n",
    }
    assert sorted(_cpus(tmp_path, files, "0::/kubepods/pod1/ctr\n")) == [1.5, 8.0]


def test_cgroup_v2_in_a_cgroup_namespace(tmp_path: Path) -> None:
    # Inside a container with its own cgroup namespace: "/" is the container's cgroup.
    files = {"cgroup.controllers": "cpu\n", "cpu.max": "200000 100000\n"}
    assert _cpus(tmp_path, files, "0::/\n") == [2.0]


def test_cgroup_v1_skips_host_paths_absent_from_the_mount(tmp_path: Path) -> None:
    # Docker on v1: /proc/self/cgroup names the host's path, the mount is the container's.
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "memory/memory.limit_in_bytes": "1073741824\n",
    }
    lines = "12:memory:/kubepods/pod1/ctr\n4:cpu,cpuacct:/kubepods/pod1/ctr\n0::/\n"
    assert _cpus(tmp_path, files, lines) == [2.5]


def test_cgroup_v1_unlimited_and_no_cgroup_at_all(tmp_path: Path) -> None:
    files = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert _cpus(tmp_path, files, "2:cpu:/\n") == []
    assert cgroup_cpus(tmp_path / "none", tmp_path / "missing") == []


# --- the metrics merged ---------------------------------------------------------------


def _worker(requests: dict[str, int], revision: int, ejected: int, inflight: int) -> str:
    registry = CollectorRegistry()
    counter = Counter("zeta_requests", "Requests.", ["pod", "code"], registry=registry)
    for pod, count in requests.items():
        counter.labels(pod, "200").inc(count)
    Gauge("zeta_table_revision", "Revision.", registry=registry).set(revision)
    Gauge("zeta_pod_ejected", "Ejected.", ["pod"], registry=registry).labels("a").set(ejected)
    Gauge("zeta_inflight_requests", "In flight.", ["pod"], registry=registry).labels("a").set(
        inflight
    )
    latency = Histogram("zeta_latency", "Latency.", buckets=(0.1, 1.0), registry=registry)
    for _ in range(sum(requests.values())):
        latency.observe(0.5)
    return generate_latest(registry).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_histograms_add_up_gauges_by_their_meaning() -> None:
    one = _worker({"a": 3, "b": 1}, revision=7, ejected=1, inflight=2)
    two = _worker({"a": 2}, revision=8, ejected=0, inflight=5)
    merged = _samples(merge_expositions([one, two]).decode())
    assert merged[("zeta_requests_total", (("code", "200"), ("pod", "a")))] == 5
    assert merged[("zeta_requests_total", (("code", "200"), ("pod", "b")))] == 1  # one only
    assert merged[("zeta_latency_count", ())] == 6
    assert merged[("zeta_latency_sum", ())] == 3.0
    assert merged[("zeta_latency_bucket", (("le", "1.0"),))] == 6
    assert merged[("zeta_latency_bucket", (("le", "0.1"),))] == 0
    assert merged[("zeta_inflight_requests", (("pod", "a"),))] == 7  # held by the group
    assert merged[("zeta_table_revision", ())] == 7  # the revision every worker serves
    assert merged[("zeta_pod_ejected", (("pod", "a"),))] == 1  # ejected by some worker
    created = [v for (name, _), v in _samples(one).items() if name == "zeta_requests_created"]
    merged_created = [v for (name, _), v in merged.items() if name == "zeta_requests_created"]
    assert min(merged_created) <= min(created)  # the earliest start, never a sum
    assert max(merged_created) < 2 * min(created)


def test_the_merged_text_keeps_types_and_help() -> None:
    text = merge_expositions([_worker({"a": 1}, 1, 0, 0)] * 2).decode()
    assert "# TYPE zeta_requests_total counter" in text
    assert "# HELP zeta_latency Latency." in text
    assert "# TYPE zeta_latency histogram" in text
    assert merge_expositions([]) == b""


def test_sample_sum_over_other_labels() -> None:
    text = _worker({"a": 3, "b": 4}, 1, 0, 0)
    assert sample_sum(text, "zeta_requests_total") == 7
    assert sample_sum(text, "zeta_requests_total", pod="b") == 4
    assert sample_sum(text, "zeta_requests_total", pod="c") == 0
    assert sample_sum("", "zeta_requests_total") == 0


# --- each worker is a replica ---------------------------------------------------------


def test_settings_refuse_no_workers_and_a_shared_port_zero() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        Settings(table_file=Path("t"), workers=0)
    with pytest.raises(ValueError, match="port 0 needs workers 1"):
        Settings(table_file=Path("t"), port=0, workers=2)
    assert Settings(table_file=Path("t"), port=0).workers == 1


def test_each_worker_counts_as_a_replica_of_the_pods_and_the_rates() -> None:
    traffic = Traffic(
        tenants=(Tenant(name="acme", requests_per_second=12.0, burst=12),), gateway_replicas=3
    )
    router = Router(rand=default_draw(1), headroom=0.25, workers=2)
    router.follow(traffic)
    assert router.replicas == 6
    assert TrafficPolicy(traffic, 0.0, workers=2).limits["acme"].replicas == 6
    assert TrafficPolicy(traffic, 0.0).limits["acme"].replicas == 3
