"""The testbed's pure parts: pod counts, addresses, manifests, status patches."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from zeta_testbed import pods, prometheus, tools
from zeta_testbed.controlplane import Ports
from zeta_testbed.processes import ProcessRecord
from zeta_testbed.testbed import PodInfo, State


def test_pod_counts_parse_and_add_up() -> None:
    assert pods.parse_pod_counts("4b=2, 7b=2,14b=1") == {"4b": 2, "7b": 2, "14b": 1}
    assert pods.parse_pod_counts("7b=1,7b=2") == {"7b": 3}


@pytest.mark.parametrize("text", ["7b", "9b=1", "7b=x", "7b=-1"])
def test_bad_pod_counts_name_the_part(text: str) -> None:
    with pytest.raises(ValueError, match="bad pod count"):
        pods.parse_pod_counts(text)


def test_free_ips_skip_taken_and_edge_addresses() -> None:
    assert pods.next_free_ip([]) == "127.1.0.1"
    assert pods.next_free_ip(["127.1.0.1", "127.1.0.2"]) == "127.1.0.3"
    taken = [f"127.1.0.{i}" for i in range(1, 255)]
    assert pods.next_free_ip(taken) == "127.1.1.1"


def test_pod_manifest_is_labelled_and_annotated_for_scraping() -> None:
    manifest = pods.pod_manifest("p", "ns", "7b", labels={"team": "a"})
    assert manifest["metadata"]["labels"] == {"app": "vllm", "model": "7b", "team": "a"}
    annotations = manifest["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(pods.MODEL_PORT)


def test_a_process_of_the_product_is_annotated_for_scraping_and_is_no_model_pod() -> None:
    manifest = pods.scraped_pod_manifest("op", "ns", 9191, labels={"role": "operator"})
    annotations = manifest["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == (
        "true",
        "9191",
    )
    # No app=vllm: no router selects it, and it carries no model label.
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/part-of": "zeta-router",
        "role": "operator",
    }


@pytest.mark.parametrize("ready", [True, False])
def test_status_patch_reports_running_with_the_loopback_ip(ready: bool) -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    status = pods.status_patch("127.1.0.9", ready=ready, now=now)["status"]
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.1.0.9"
    assert status["podIPs"] == [{"ip": "127.1.0.9"}]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == ("True" if ready else "False")
    assert status["startTime"] == "2026-01-02T03:04:05Z"


def test_llm_d_backend_explains_why_it_is_unavailable() -> None:
    with pytest.raises(ValueError, match="module proxy"):
        pods.simulator_argv("llm-d-sim", "7b", "127.1.0.1", time_scale=1)


def test_simulated_pods_cache_prefixes_only_when_asked() -> None:
    assert "--no-prefix-caching" in pods.simulator_argv("zeta-sim", "7b", "127.1.0.1", time_scale=1)
    argv = pods.simulator_argv("zeta-sim", "7b", "127.1.0.1", time_scale=1, prefix_caching=True)
    assert "--prefix-caching" in argv
    assert "--no-prefix-caching" not in argv


def test_prometheus_relabels_namespace_pod_and_model() -> None:
    relabels = prometheus.config(tools.GO_DIR)["scrape_configs"][0]["relabel_configs"]
    targets = {r.get("target_label") for r in relabels}
    assert {"namespace", "pod", "model", "__address__"} <= targets


def test_state_survives_a_json_round_trip() -> None:
    record = ProcessRecord("etcd", 12, 345, ("etcd", "--x"), "/tmp/etcd.log")
    state = State(
        "ns",
        "zeta-sim",
        10.0,
        Ports(1, 2, 3, 4, 5),
        "token",
        processes={"etcd": record},
        pods=[PodInfo("ns", "p", "7b", "127.1.0.1", record)],
    )
    assert State.from_json(state.to_json()) == state


def test_tools_read_their_pinned_versions_from_go_mod() -> None:
    assert tools.KUBERNETES.version().startswith("v1.")
    assert tools.ETCD.version().startswith("v3.")
    assert tools.HELM.version().startswith("v3.")
    key = tools.KUBERNETES.cache_key()
    assert key.startswith(f"kubernetes-{tools.KUBERNETES.version()}-")


def test_envtest_assets_take_precedence(tmp_path: Path) -> None:
    (tmp_path / "kube-apiserver").write_text("")
    env = {"KUBEBUILDER_ASSETS": str(tmp_path), "ZETA_CACHE_DIR": "/nonexistent"}
    assert tools.locate("kube-apiserver", env) == tmp_path / "kube-apiserver"
    with pytest.raises(tools.ToolError, match="make setup"):
        tools.locate("prometheus", env)


def test_free_ips_skip_addresses_in_use_elsewhere() -> None:
    busy = {"127.1.0.1"}
    assert pods.next_free_ip([], is_free=lambda ip: ip not in busy) == "127.1.0.2"


def test_testbeds_side_by_side_start_their_search_apart() -> None:
    # Two testbeds checking the same first free address at once both took it (seen with
    # parallel test sessions): each now starts where the caller says, wrapping around.
    assert pods.next_free_ip([], start=300) == "127.1.1.45"
    last = pods.address_index("127.1.255.254")
    assert pods.next_free_ip([], start=last) == "127.1.255.254"
    assert pods.next_free_ip([], start=last + 1) == "127.1.0.1"


def test_state_keeps_prefix_caching_and_reads_older_state_as_off() -> None:
    state = State("ns", "zeta-sim", 10.0, Ports(1, 2, 3, 4, 5), "token", prefix_caching=True)
    assert State.from_json(state.to_json()) == state
    older = json.loads(state.to_json())
    del older["prefix_caching"]
    assert State.from_json(json.dumps(older)).prefix_caching is False
