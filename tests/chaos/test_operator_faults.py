"""Faults around the operator, on the testbed: a hung or lying Prometheus, SIGKILL in
the middle of a reconcile, concurrent writers of its ConfigMap, an apiserver that
fails writes. Each test states the figure it holds the operator to.

Every version of the routing table the operator publishes is watched and parsed
(:class:`TableVersions`): whatever the fault, none may be unparseable, hold a NaN,
or give a model nothing but zero weights.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.chaos.fake_prometheus import FakePrometheus, HungPrometheus
from tests.integration.operator import conftest as operator_fixtures
from tests.integration.operator.conftest import (
    OperatorProcess,
    condition,
    create,
    model,
    pod_weights,
    read_table,
    router,
    status,
    status_when,
    wait_for,
)
from zeta_api import TABLE_KEY, TableError, content_hash, parse_routing_table
from zeta_testbed.testbed import Testbed

# The operator suite's fixtures, reused as they are: CRDs applied once, an API client,
# and operators as real subprocesses stopped (by PID) at teardown.
crds = operator_fixtures.crds
custom = operator_fixtures.custom
start_operator = operator_fixtures.start_operator

MODELS = [model("sim-7b", "7b", 2)]
StartOperator = Callable[..., OperatorProcess]


def table_pods(core: k8s.CoreV1Api, namespace: str, name: str) -> set[str]:
    return set(pod_weights(read_table(core, namespace, name), "sim-7b"))


def problems_of(text: str) -> list[str]:
    """What a sidecar would refuse in this table text, or a NaN/all-zero it should."""
    try:
        table = parse_routing_table(text)
    except TableError as exc:
        return [f"does not parse: {exc}"]
    found = []
    doc = json.loads(text)
    for name, entry in doc["models"].items():
        weights = [e["weight"] for e in entry["endpoints"]]
        if not all(isinstance(w, float | int) and math.isfinite(w) and w >= 0 for w in weights):
            found.append(f"{name}: weights {weights}")
        if weights and sum(weights) <= 0:
            found.append(f"{name}: all-zero weights")
    model_weights = [m.weight for m in table.models.values()]
    if not all(math.isfinite(w) for w in model_weights) or sum(model_weights) <= 0:
        found.append(f"model weights {model_weights}")
    return found


class TableVersions:
    """Every version of one ConfigMap, as a watch delivers them, from a thread."""

    def __init__(self, testbed: Testbed, namespace: str, config_map: str) -> None:
        self.namespace, self.config_map = namespace, config_map
        self.versions: list[dict[str, Any]] = []
        self._testbed = testbed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._testbed.api_client() as api:
            core = k8s.CoreV1Api(api)
            since: str | None = None
            while not self._stop.is_set():
                kwargs: dict[str, Any] = {"field_selector": f"metadata.name={self.config_map}"}
                if since:
                    kwargs["resource_version"] = since
                try:
                    for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                        core.list_namespaced_config_map,
                        self.namespace,
                        timeout_seconds=1,
                        **kwargs,
                    ):
                        cm = event["object"]
                        since = cm.metadata.resource_version
                        self.versions.append(
                            {
                                "type": event["type"],
                                "resourceVersion": since,
                                "annotations": dict(cm.metadata.annotations or {}),
                                "text": (cm.data or {}).get(TABLE_KEY),
                            }
                        )
                except ApiException as exc:
                    if exc.status == 410:  # too old: start over from the current list
                        since = None
                        continue
                    raise

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def problems(self, *, router_name: str) -> list[str]:
        """Problems in the tables this router's operator published (not a tamperer's)."""
        found = []
        for version in self.versions:
            text = version["text"]
            if version["type"] == "DELETED" or text is None:
                continue
            try:
                written_by = json.loads(text).get("router")
            except ValueError:
                written_by = None
            if written_by not in (None, f"{self.namespace}/{router_name}"):
                continue
            found += [f"rv {version['resourceVersion']}: {p}" for p in problems_of(text)]
        return found

    def revisions(self) -> list[int]:
        return [
            int(v["annotations"]["zeta.dev/revision"])
            for v in self.versions
            if v["type"] != "DELETED" and "zeta.dev/revision" in v["annotations"]
        ]


@pytest.fixture
def tables(testbed: Testbed, namespace: str) -> Iterator[Callable[[str], TableVersions]]:
    started: list[TableVersions] = []

    def watch_router(name: str) -> TableVersions:
        versions = TableVersions(testbed, namespace, f"{name}-routing")
        started.append(versions)
        return versions

    yield watch_router
    for versions in started:
        versions.stop()


# ------------------------------------------------------------------ Prometheus hung
def test_hung_prometheus_never_holds_back_pods_or_status(  # noqa: PLR0917 - fixtures
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    start_operator: StartOperator,
    tables: Callable[[str], TableVersions],
) -> None:
    """Figure: a pod added while a collection hangs is in the table within 2 s, though
    the spec allows Prometheus 5 s; status is written with it; MetricsAvailable=False."""
    with HungPrometheus() as hung:
        for _ in range(2):
            testbed.add_pod("7b", namespace=namespace)
        body = router("hung", hung.url, MODELS, interval="1s")
        body["spec"]["prometheus"]["timeout"] = "5s"
        versions = tables("hung")
        start_operator()
        create(custom, namespace, body)
        st = wait_for(
            "MetricsAvailable=False once the first collection timed out",
            lambda: status_when(custom, namespace, "hung", MetricsAvailable="False"),
            timeout=30,
        )
        assert condition(st, "MetricsAvailable")["reason"] == "PrometheusTimeout"
        assert st["fallback"] == "base-weights"
        assert len(table_pods(core, namespace, "hung")) == 2
        # Add the pod while a collection is surely in flight: its connections are open.
        seen = hung.accepted
        wait_for("the next collection", lambda: hung.accepted > seen, timeout=10, every=0.02)
        adding = time.monotonic()
        pod = testbed.add_pod("7b", namespace=namespace)
        # From the Pod object's existence (Ready, with an address): starting the
        # simulator behind it is the testbed's time, not the operator's.
        started = time.monotonic()
        wait_for(
            "the new pod in the table",
            lambda: pod.name in table_pods(core, namespace, "hung"),
            timeout=10,
            every=0.02,
        )
        elapsed = time.monotonic() - started
        print(
            f"pod added while Prometheus hangs: in the table {elapsed:.2f} s after the Pod "
            f"was Ready ({time.monotonic() - adding:.2f} s with starting its simulator)"
        )
        assert elapsed < 2.0
        st = wait_for(
            "status with the new pod",
            lambda: (
                (s := status(custom, namespace, "hung"))
                and any(m.get("readyPods") == 3 for m in s.get("models", []))
                and s
            ),
            timeout=2,
            every=0.05,
        )
        table = read_table(core, namespace, "hung")
        assert table is not None
        assert st["routingTable"]["revision"] == table["revision"]
        assert condition(st, "MetricsAvailable")["status"] == "False"
        assert condition(st, "MetricsAvailable")["reason"]
    versions.stop()
    assert versions.problems(router_name="hung") == []


# ----------------------------------------------------------- Prometheus misbehaving
FAULTS = {
    # fault: (reasons MetricsAvailable may show, the reason that must show up). In this
    # order: "refused" closes the fake for good.
    "empty": ({"NoData"}, "NoData"),
    "nan": ({"NoData"}, "NoData"),
    "slow": ({"PrometheusTimeout"}, "PrometheusTimeout"),
    # A byte per read: requests' timeout never fires, the threads stay; after two
    # collections every slot is held and the next one fails at once.
    "trickle": ({"PrometheusTimeout", "PrometheusStalled"}, "PrometheusStalled"),
    "refused": ({"PrometheusUnreachable"}, "PrometheusUnreachable"),
}


def test_failing_prometheus_falls_back_visibly_and_never_publishes_a_bad_table(  # noqa: PLR0917
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    start_operator: StartOperator,
    tables: Callable[[str], TableVersions],
) -> None:
    """Figures, for each fault in turn (live weights again between two): last-good
    with MetricsAvailable=False and the fault's reason within an interval and a timeout;
    base-weights after staleAfter (3 s), status saying so; a pod added meanwhile in the
    table within 2 s; never more queries in flight than the cap (10)."""
    fake = FakePrometheus("ok", delay=3.0)
    try:
        pods = [testbed.add_pod("7b", namespace=namespace) for _ in range(2)]
        fake.pods = [p.name for p in pods]
        versions = tables("liar")
        start_operator()
        create(custom, namespace, router("liar", fake.url, MODELS, interval="1s", stale_after="3s"))
        for fault, (reasons, must_show) in FAULTS.items():
            fake.mode = "ok"
            wait_for(
                f"{fault}: live weights first",
                lambda: status(custom, namespace, "liar").get("fallback") == "none",
                timeout=30,
            )
            check_fault(testbed, core, custom, namespace, fake, fault, reasons, must_show)
    finally:
        fake.close()  # before the operator stops: its trickled threads must end
    versions.stop()
    assert versions.problems(router_name="liar") == []


def check_fault(  # noqa: PLR0917
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    fake: FakePrometheus,
    fault: str,
    reasons: set[str],
    must_show: str,
) -> None:
    queries_before = fake.queries
    failing_since = time.monotonic()
    if fault == "refused":
        fake.close()
    else:
        fake.delay = 3.0 if fault == "slow" else 0.3
        fake.mode = fault

    def metrics_failing() -> dict[str, Any] | None:
        st = status(custom, namespace, "liar")
        return st if condition(st, "MetricsAvailable").get("status") == "False" else None

    st = wait_for(f"{fault}: MetricsAvailable=False", metrics_failing, timeout=10)
    failed_after = time.monotonic() - failing_since
    assert condition(st, "MetricsAvailable")["reason"] in reasons
    assert st["fallback"] in {"last-good", "base-weights"}

    pod = testbed.add_pod("7b", namespace=namespace)
    added = time.monotonic()
    wait_for(
        f"{fault}: a pod added while metrics fail",
        lambda: pod.name in table_pods(core, namespace, "liar"),
        timeout=2,
        every=0.02,
    )
    pod_after = time.monotonic() - added
    st = wait_for(
        f"{fault}: base weights with reason {must_show}",
        lambda: (
            (s := status(custom, namespace, "liar")).get("fallback") == "base-weights"
            and condition(s, "MetricsAvailable").get("reason") == must_show
            and s
        ),
        timeout=15,
    )
    stale = time.monotonic() - failing_since
    print(
        f"{fault}: MetricsAvailable=False after {failed_after:.2f} s, base-weights with "
        f"{must_show} after {stale:.2f} s, new pod in the table after {pod_after:.2f} s"
    )
    assert condition(st, "MetricsAvailable")["status"] == "False"
    assert condition(st, "Degraded")["reason"] == "BaseWeights"
    table = read_table(core, namespace, "liar")
    assert table is not None
    # Base weights are by capacity: equal pods, equal shares.
    weights = list(pod_weights(table, "sim-7b").values())
    assert weights == pytest.approx([1 / len(weights)] * len(weights), abs=1e-3)
    if fault == "trickle":
        assert fake.queries - queries_before <= 10
    # The fake reports on the pods it knows: the new one too, once metrics are back.
    fake.pods.append(pod.name)


# --------------------------------------------------------------- operator SIGKILLed
def revision(core: k8s.CoreV1Api, namespace: str, name: str) -> int:
    cm = core.read_namespaced_config_map(f"{name}-routing", namespace)
    return int(((cm.metadata and cm.metadata.annotations) or {})["zeta.dev/revision"])


def test_operator_killed_mid_reconcile_leaves_a_valid_table_and_converges(  # noqa: PLR0917
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    start_operator: StartOperator,
    tables: Callable[[str], TableVersions],
    full_chaos: bool,
) -> None:
    """Figures: after each of 3 (full: 10) SIGKILLs at a random point of a reconcile,
    the ConfigMap's table parses and validates; the first table the restarted operator
    writes already has the pods changed while it was down (it converges in its first
    cycle, so within one interval of being up); the revision never goes back."""
    rng = random.Random(20261130)
    interval = 1.0
    pods = [testbed.add_pod("7b", namespace=namespace) for _ in range(2)]
    versions = tables("crash")
    op = start_operator()
    create(custom, namespace, router("crash", testbed.prometheus_url, MODELS, interval="1s"))
    first = time.monotonic()
    wait_for("a first table", lambda: len(table_pods(core, namespace, "crash")) == 2, timeout=30)
    cold = time.monotonic() - first
    restarts = []
    for round_ in range(10 if full_chaos else 3):
        # Start a reconcile (a pod event), then kill somewhere inside or after it.
        pods.append(testbed.add_pod("7b", namespace=namespace))
        time.sleep(rng.uniform(0.0, interval))
        op.kill()
        table = read_table(core, namespace, "crash")
        assert table is not None
        assert problems_of(json.dumps(table)) == []
        # Change the pods while nobody watches, so the restarted operator has work.
        gone = pods.pop(rng.randrange(len(pods)))
        testbed.remove_pod(gone.name, namespace)
        want = {p.name for p in pods}
        before = revision(core, namespace, "crash")
        started = time.monotonic()
        op = start_operator()
        wait_for(
            f"round {round_}: the table converged after the restart",
            lambda want=want: table_pods(core, namespace, "crash") == want,
            timeout=60,
            every=0.05,
        )
        restarts.append(time.monotonic() - started)
        assert revision(core, namespace, "crash") <= before + 1, "converged on the first write"
    # Most of a restart is the process starting (imports, kopf's watches): the cold
    # start of the first operator above is that same work, measured in this run.
    print(
        f"cold start to first table {cold:.2f} s; restart to converged table: "
        + ", ".join(f"{t:.2f}" for t in restarts)
        + " s"
    )
    versions.stop()
    assert versions.problems(router_name="crash") == []
    revisions = versions.revisions()
    assert revisions == sorted(revisions)


# --------------------------------------------------- concurrent writers, no hot loop
def tampered(text: str) -> str:
    """A valid table, but someone else's: another router name, all weight on one pod."""
    doc = json.loads(text)
    doc["router"] = "chaos/tamperer"
    for entry in doc["models"].values():
        for i, endpoint in enumerate(entry["endpoints"]):
            endpoint["weight"] = 1.0 if i == 0 else 0.0
    return json.dumps(doc)


def contend(core: k8s.CoreV1Api, namespace: str, cm_name: str, seconds: float) -> int:
    """Another writer: annotations ten times a second, the table once a second, a
    deletion every 2.5 s. Returns how many writes it made."""
    started = time.monotonic()
    tick = 0
    while time.monotonic() - started < seconds:
        tick += 1
        patch: dict[str, Any] = {"metadata": {"annotations": {"chaos.zeta.dev/tick": str(tick)}}}
        try:
            if tick % 25 == 0:
                core.delete_namespaced_config_map(cm_name, namespace)
            elif tick % 10 == 0:
                current = core.read_namespaced_config_map(cm_name, namespace)
                patch["data"] = {TABLE_KEY: tampered((current.data or {})[TABLE_KEY])}
                core.patch_namespaced_config_map(cm_name, namespace, patch)
            else:
                core.patch_namespaced_config_map(cm_name, namespace, patch)
        except ApiException as exc:
            if exc.status != 404:  # deleted a moment ago, not yet recreated
                raise
        time.sleep(0.1)
    return tick


def test_concurrent_configmap_writers_do_not_make_the_operator_hot_loop(  # noqa: PLR0917
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    start_operator: StartOperator,
    tables: Callable[[str], TableVersions],
    full_chaos: bool,
) -> None:
    """Figure: while another writer changes the ConfigMap ten times a second (and
    deletes it), the operator writes at most twice per interval, every table valid.

    No 409 reaches the operator this way: its writes are patches without a
    resourceVersion precondition, so concurrent changes never conflict (the flaky
    apiserver below injects 409s instead)."""
    window = 20.0 if full_chaos else 6.0
    interval = 1.0
    for _ in range(2):
        testbed.add_pod("7b", namespace=namespace)
    versions = tables("shared")
    start_operator()
    create(custom, namespace, router("shared", testbed.prometheus_url, MODELS, interval="1s"))
    wait_for("a first table", lambda: len(table_pods(core, namespace, "shared")) == 2, timeout=30)
    revisions_before = len(set(versions.revisions()))
    started = time.monotonic()
    foreign = contend(core, namespace, "shared-routing", window)
    elapsed = time.monotonic() - started
    writes = len(set(versions.revisions())) - revisions_before
    print(f"operator writes while contended: {writes} in {elapsed:.1f} s ({foreign} foreign)")
    assert writes <= 2 * elapsed / interval + 2
    versions.stop()
    assert versions.problems(router_name="shared") == []


def test_a_table_changed_or_deleted_by_someone_else_is_restored(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    start_operator: StartOperator,
) -> None:
    """Figure: the operator's table is back within two intervals, after its data was
    changed, then after the ConfigMap was deleted."""
    interval = 1.0
    cm_name = "shared-routing"
    for _ in range(2):
        testbed.add_pod("7b", namespace=namespace)
    start_operator()
    # Static weights: the operator's own table never changes, so only noticing the
    # foreign change can bring it back (live weights might rewrite it by chance).
    body = router("shared", testbed.prometheus_url, MODELS, interval="1s")
    body["spec"]["policy"]["static"] = True
    create(custom, namespace, body)
    wait_for("a first table", lambda: len(table_pods(core, namespace, "shared")) == 2, timeout=30)

    def restored() -> bool:
        cm = core.read_namespaced_config_map(cm_name, namespace)
        table = parse_routing_table((cm.data or {}).get(TABLE_KEY, ""))
        annotations = (cm.metadata and cm.metadata.annotations) or {}
        return table.router == f"{namespace}/shared" and annotations.get(
            "zeta.dev/content-hash"
        ) == content_hash(table)

    current = core.read_namespaced_config_map(cm_name, namespace)
    text = tampered((current.data or {})[TABLE_KEY])
    core.patch_namespaced_config_map(cm_name, namespace, {"data": {TABLE_KEY: text}})
    changed = time.monotonic()
    wait_for("the operator's table back", restored, timeout=2 * interval + 1)
    print(f"tampered table restored after {time.monotonic() - changed:.2f} s")

    core.delete_namespaced_config_map(cm_name, namespace)
    deleted = time.monotonic()
    wait_for("the operator's table recreated", restored, timeout=2 * interval + 1)
    print(f"deleted table recreated after {time.monotonic() - deleted:.2f} s")


# ------------------------------------------------------- apiserver failing writes
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "host",
    "upgrade",
}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class FlakyApiserver:
    """A plain-HTTP loopback proxy in front of the testbed's apiserver that answers a
    share of the writes to ConfigMaps and ZetaRouter status with 500 or 409, and
    records every such write (time, method, path, status)."""

    def __init__(self, testbed: Testbed, *, share: float, seed: int = 7) -> None:
        config = yaml.safe_load(testbed.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.upstream = cluster["server"]
        self.token = config["users"][0]["user"]["token"]
        self._ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.share = share
        self.failing = False
        self.writes: list[tuple[float, str, str, int]] = []
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(ssl=self._ssl),
            timeout=ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    @staticmethod
    def watched(request: web.Request) -> bool:
        path = request.path
        return request.method in WRITES and (
            "/configmaps" in path or ("/zetarouters/" in path and path.endswith("/status"))
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watched = self.watched(request)
        if watched and self.failing and self._rng.random() < self.share:
            code = self._rng.choice((500, 409))
            self.writes.append((time.monotonic(), request.method, request.path, code))
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "chaos: injected",
                    "reason": "InternalError" if code == 500 else "Conflict",
                    "code": code,
                },
                status=code,
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            # The kubernetes client sends JSON with no Content-Type; aiohttp's default
            # (octet-stream) would earn a 415.
            skip_auto_headers=("Content-Type",),
        ) as upstream:
            if watched:
                self.writes.append(
                    (time.monotonic(), request.method, request.path, upstream.status)
                )
            out = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            if "Content-Encoding" in upstream.headers:
                out.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await out.prepare(request)
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "flaky", "cluster": {"server": self.url}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "flaky", "context": {"cluster": "flaky", "user": "admin"}}],
            "current-context": "flaky",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_apiserver_failing_writes_gets_backoff_then_convergence(  # noqa: PLR0917
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    start_operator: StartOperator,
    tables: Callable[[str], TableVersions],
    tmp_path: Path,
    full_chaos: bool,
) -> None:
    """Figures: with half of its ConfigMap and status writes answered 500 or 409, the
    operator makes at most 2 such writes per cycle (an interval or a pod change), and 6
    in any second; once the apiserver heals, the table has every pod within three
    intervals."""
    window = 30.0 if full_chaos else 6.0
    interval = 1.0
    proxy = FlakyApiserver(testbed, share=0.5)
    try:
        pods = [testbed.add_pod("7b", namespace=namespace) for _ in range(2)]
        versions = tables("flaky")
        start_operator(env={"KUBECONFIG": str(proxy.kubeconfig(tmp_path / "flaky.kubeconfig"))})
        create(custom, namespace, router("flaky", testbed.prometheus_url, MODELS, interval="1s"))
        wait_for("a first table", lambda: len(table_pods(core, namespace, "flaky")) == 2, 30)
        proxy.failing = True
        started = time.monotonic()
        first = len(proxy.writes)
        changes = 0
        while time.monotonic() - started < window:
            # Pod churn gives the operator something to write.
            if changes % 2 == 0:
                pods.append(testbed.add_pod("7b", namespace=namespace))
            else:
                testbed.remove_pod(pods.pop(0).name, namespace)
            changes += 1
            time.sleep(2.0)
        elapsed = time.monotonic() - started
        proxy.failing = False
        during = proxy.writes[first:]
        failed = sum(1 for *_, code in during if code >= 400)
        per_second = max(
            (sum(1 for t, *_ in during if s <= t < s + 1.0) for s, *_ in during), default=0
        )
        print(
            f"writes while failing: {len(during)} in {elapsed:.1f} s ({failed} refused), "
            f"at most {per_second} in one second"
        )
        assert failed > 0
        # A cycle makes at most one ConfigMap and one status write, refused or not, and
        # cycles come once per interval and once per pod change: a refused write waits
        # for the next cycle, never retried at once.
        assert len(during) <= 2 * (elapsed / interval + changes) + 2
        assert per_second <= 6
        want = {p.name for p in pods}
        healed = time.monotonic()
        wait_for(
            "the table converged",
            lambda: table_pods(core, namespace, "flaky") == want,
            timeout=3 * interval + 1,
        )
        print(f"table converged {time.monotonic() - healed:.2f} s after the apiserver healed")
    finally:
        proxy.close()
    versions.stop()
    assert versions.problems(router_name="flaky") == []
