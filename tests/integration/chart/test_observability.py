"""What the chart gives an admin to watch with: the Grafana dashboard, the alerts, the
operator's scrape objects; and every query in them, as the chart renders them, run
against the testbed's real Prometheus after traffic.

The product runs as the chart would run it: the operator with its ``--metrics`` port,
a gateway (``zeta-sidecar --configmap``), both standing as annotated Pods so that
Prometheus discovers and scrapes them like the model pods. Traffic goes through the
gateway with faults injected (a pod that always fails, one that fails half the time), so
errors and ejections are there to be seen. Then every panel's query must parse and
return data, and every alert's expression must parse and each series it reads must have
data (the alerts need not fire).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_testbed import zetarouter
from zeta_testbed.harness import free_port, get, wait_until
from zeta_testbed.loadgen import BackgroundLoad, LoadGenerator, chat_mix
from zeta_testbed.sidecar import SidecarFactory
from zeta_testbed.testbed import Testbed

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts/zeta-router"
OBSERVABILITY = CHART / "ci/observability-values.yaml"
DASHBOARD = CHART / "dashboards/zeta-router.json"
Docs = list[dict[str, Any]]


def render(testbed: Testbed, tmp_path: Path, *extra: str) -> Docs:
    home = tmp_path / "helm-home"
    env = {
        "PATH": testbed.env()["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    args = [testbed.env()["ZETA_HELM"], "template", "zr", str(CHART), "--namespace", "llm"]
    done = subprocess.run(
        [*args, *extra], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def kinds(docs: Docs, kind: str) -> Docs:
    return [d for d in docs if d["kind"] == kind]


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows' panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["expr"]))
    return found


def alert_rules(docs: Docs) -> list[tuple[str, str]]:
    (rule,) = kinds(docs, "PrometheusRule")
    return [(r["alert"], r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]]


# ------------------------------------------------------------------ static


def test_the_dashboard_ships_as_a_sidecar_configmap_and_the_rest_is_opt_in(
    testbed: Testbed, tmp_path: Path
) -> None:
    defaults = render(testbed, tmp_path)
    (config_map,) = [
        d for d in kinds(defaults, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["zeta-router.json"]) == json.loads(DASHBOARD.read_text())
    assert not kinds(defaults, "PrometheusRule")
    assert not kinds(defaults, "PodMonitor")
    off = render(testbed, tmp_path, "--set", "monitoring.dashboard.enabled=false")
    assert not [d for d in kinds(off, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]

    docs = render(testbed, tmp_path, "--values", str(OBSERVABILITY))
    (config_map,) = [
        d for d in kinds(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert {a for a, _ in alert_rules(docs)} >= {
        "ZetaRouterFallback",
        "ZetaRouterMetricsStale",
        "ZetaRouterEjections",
        "ZetaRouterErrorRatio",
    }
    (operator,) = [
        d
        for d in kinds(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    (monitor,) = [
        d
        for d in kinds(docs, "PodMonitor")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == operator["spec"]["selector"]["matchLabels"]
    container = operator["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert f"--metrics=0.0.0.0:{ports['metrics']}" in container["args"]
    annotations = operator["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


# -------------------------------------------------------------------- live


def _prometheus(testbed: Testbed, path: str, query: str) -> Any:
    """``/api/v1/<path>`` with ``query``; its data, or the error Prometheus gave."""
    body = urllib.parse.urlencode({"query": query}).encode()
    request = urllib.request.Request(f"{testbed.prometheus_url}/api/v1/{path}", data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:  # 400: the query does not parse
        answer = json.load(exc)
    if answer.get("status") != "success":
        raise AssertionError(f"{query!r}: {answer.get('error')}")
    return answer["data"]


def selectors(node: Any) -> Iterator[str]:
    """Every series selector in a parsed query (Prometheus' own AST), as PromQL."""
    if isinstance(node, dict):
        if node.get("type") in ("vectorSelector", "matrixSelector"):
            matchers = ", ".join(
                f"{m['name']}{m['type']}{json.dumps(m['value'])}" for m in node["matchers"]
            )
            yield f"{{{matchers}}}"
            return
        for value in node.values():
            yield from selectors(value)
    elif isinstance(node, list):
        for value in node:
            yield from selectors(value)


def _fault(url: str, faults: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{url}/admin/faults",
        data=json.dumps(faults).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


@pytest.fixture
def observed(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> Iterator[str]:
    """The product on the testbed, scraped, after traffic with errors and ejections."""
    steady, _, failing = (
        testbed.add_pod(s, namespace=namespace, prefix_caching=True) for s in ("4b", "7b", "7b")
    )
    zetarouter.install_crd(testbed)
    router = zetarouter.sample(testbed, {"interval": "1s"})
    # Affinity on, so the cache-aware panels (decisions, index, hit rate) have data; with
    # loadBound 0, so that every pod gets traffic, the failing one too (the ejection
    # panels need it): at the default, 1, the few conversations of this mix may all be
    # placed on other pods, and in two runs of three the ejection panels stayed empty
    # (and then the hit-rate panel too: while the test waited for the others, the
    # operator's 10 s rate window slid past the traffic).
    router["spec"].setdefault("balancing", {})["affinity"] = {
        "prefix": True,
        "session": True,
        "loadBound": 0,
    }
    zetarouter.apply(testbed, namespace, router)
    metrics_port = free_port()
    operator = zetarouter.start_operator(
        testbed, tmp_path / "operator.log", "--namespace", namespace, "--standalone",
        "--rate-window", "10s", "--metrics", f"127.0.0.1:{metrics_port}",
    )  # fmt: skip
    try:
        try:
            zetarouter.first_table(testbed, namespace, "chat-routing", within=60)
        except TimeoutError as exc:
            pytest.fail(f"{exc}: {operator.tail()}")
        source = (
            "--configmap",
            f"{namespace}/chat-routing",
            "--kubeconfig",
            str(testbed.kubeconfig),
        )
        gateway = sidecar(*source, ready=False)
        # Its first table comes through the API watch: on a loaded machine, that can take
        # longer than the fixture's own wait for readiness.
        ready = lambda: get(f"{gateway.admin}/readyz")[0] == 200  # noqa: E731
        try:
            wait_until(ready, within=60, what="the gateway's first table", every=0.2)
        except TimeoutError as exc:
            pytest.fail(f"{exc}: {gateway.tail()}")
        labels = {"app.kubernetes.io/component": "operator"}
        testbed.add_scraped_pod("zeta-operator", metrics_port, namespace=namespace, labels=labels)
        labels = {"app.kubernetes.io/component": "gateway"}
        testbed.add_scraped_pod(
            "zeta-gateway", gateway.admin_port, namespace=namespace, labels=labels
        )
        # One 7b pod always fails (ejected: its twin takes its requests); the only 4b pod
        # fails half the time (nowhere else to retry: 5xx reach the clients).
        _fault(failing.url, {"error_rate": 1.0})
        _fault(steady.url, {"error_rate": 0.5})
        mix = chat_mix(["sim-4b", "sim-7b"], stream_share=0.5)
        with BackgroundLoad(LoadGenerator(gateway.url, mix, clients=4, pause=0.02)):
            time.sleep(12)
        yield namespace
    finally:
        testbed.kubectl("delete", "zr", "chat", "-n", namespace, "--timeout=30s")
        operator.stop(grace=30)


def test_every_panel_and_alert_query_returns_data_after_traffic(
    testbed: Testbed, tmp_path: Path, observed: str
) -> None:
    namespace = observed
    # Grafana's variables as a user of this namespace would pick them.
    variables = {
        "$__rate_interval": "30s",
        "$namespace": namespace,
        "$router": f"{namespace}/.*",
    }

    def resolved(expr: str) -> str:
        for name, value in variables.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, expr
        return expr

    panels = [(t, resolved(e)) for t, e in panel_queries(json.loads(DASHBOARD.read_text()))]
    docs = render(testbed, tmp_path, "--values", str(OBSERVABILITY))
    alerts = alert_rules(docs)
    # Each alert's series, only in this test's namespace (the testbed is shared).
    scoped = [
        (f"{alert}: {selector}", selector.replace("{", f'{{namespace="{namespace}", ', 1))
        for alert, expr in alerts
        for selector in selectors(_prometheus(testbed, "parse_query", expr))
    ]
    assert len(panels) >= 15
    assert len(scoped) >= 6

    def empty() -> list[str]:
        missing = []
        for what, query in [*panels, *scoped]:
            if not _prometheus(testbed, "query", query)["result"]:
                missing.append(f"{what}: {query}")
        return missing

    # Prometheus scrapes every second; rates need two samples in the window.
    deadline = time.monotonic() + 30
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, "queries without data:\n" + "\n".join(missing)
    for _alert, expr in alerts:
        _prometheus(testbed, "query", expr)  # parses and evaluates, firing or not
