"""The testbed as one object: bring it up, change its pods, look at it, take it down.

Its state (ports, the admin token, every process it started, every pod) is a JSON
file in the state folder, so ``zeta-testbed`` commands run later, and test fixtures
in other processes, work on the same testbed. A file lock serialises changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import shutil
import socket
import string
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from zeta_api import TABLE_KEY
from zeta_testbed import controlplane, node, pki, pods, processes, prometheus, tools
from zeta_testbed.controlplane import Ports
from zeta_testbed.harness import free_ports
from zeta_testbed.processes import ProcessRecord

DEFAULT_NAMESPACE = "zeta-testbed"
START_TIMEOUT = 60.0
"""Seconds each component may take to become ready (envtest allows the apiserver 20 s;
a loaded 2-core machine needs more)."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    size: str
    ip: str
    process: ProcessRecord

    @property
    def address(self) -> str:
        return f"{self.ip}:{pods.MODEL_PORT}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass(slots=True)
class State:
    namespace: str
    backend: str
    time_scale: float
    ports: Ports
    token: str
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    pods: list[PodInfo] = field(default_factory=list)
    prefix_caching: bool = False
    """Whether simulated pods cache prompt prefixes (``zeta-sim --prefix-caching``)."""
    priority_scheduling: bool = False
    """Whether simulated pods schedule by priority (``--scheduling-policy priority``)."""
    node: bool = False
    """Whether a real node runs pods (``up --node``); its files are in ``<state>/node``."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> State:
        raw = json.loads(text)

        def record(obj: dict[str, Any]) -> ProcessRecord:
            return ProcessRecord(**{**obj, "argv": tuple(obj["argv"])})

        return cls(
            namespace=raw["namespace"],
            backend=raw["backend"],
            time_scale=raw["time_scale"],
            ports=Ports(**raw["ports"]),
            token=raw["token"],
            processes={name: record(obj) for name, obj in raw["processes"].items()},
            pods=[PodInfo(**{**obj, "process": record(obj["process"])}) for obj in raw["pods"]],
            # Absent from the state of a testbed started before the option existed.
            prefix_caching=raw.get("prefix_caching", False),
            priority_scheduling=raw.get("priority_scheduling", False),
            node=raw.get("node", False),
        )


class TestbedError(RuntimeError):
    """The testbed cannot do what was asked; the message says why."""


class Testbed:
    """A running (or stopped) testbed, found through its state folder."""

    __test__ = False  # Not a pytest test class, despite the name.

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()

    # ----------------------------------------------------------------- files
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "env"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def exists(self) -> bool:
        return self._state_file.exists()

    def state(self) -> State:
        if not self.exists():
            raise TestbedError(f"no testbed in {self.state_dir}; start one with `zeta-testbed up`")
        return State.from_json(self._state_file.read_text())

    def _save(self, state: State) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self._state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[State]:
        """Read-modify-write of the state, safe against other zeta-testbed processes."""
        with (self.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.state()
            yield state
            self._save(state)

    # ------------------------------------------------------------- addresses
    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.state().ports.apiserver}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.state().ports.prometheus}"

    @property
    def namespace(self) -> str:
        return self.state().namespace

    @property
    def node_prometheus_url(self) -> str:
        """Prometheus as the node's pods reach it (a relay on the bridge's gateway)."""
        return f"http://{node.GATEWAY_IP}:{self.state().ports.prometheus}"

    @property
    def real_node(self) -> node.Node:
        return node.Node(self.state_dir / "node")

    def api_client(self) -> k8s.ApiClient:
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api

    def env(self) -> dict[str, str]:
        """What a shell (or a test) needs to talk to this testbed."""
        bin_dir = self.state_dir / "bin"
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PROMETHEUS_URL": self.prometheus_url,
            "ZETA_NAMESPACE": self.namespace,
            "ZETA_KUBECTL": str(bin_dir / "kubectl"),
            "ZETA_HELM": str(bin_dir / "helm"),
            **({"ZETA_NODE_PROMETHEUS_URL": self.node_prometheus_url} if self.state().node else {}),
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        }

    def env_script(self) -> str:
        """``env()`` as shell lines; PATH is prepended to, not replaced."""
        lines = [f'export {key}="{value}"' for key, value in self.env().items() if key != "PATH"]
        lines.append(f'export PATH="{self.state_dir / "bin"}:$PATH"')
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------- up
    def up(
        self,
        pod_counts: Mapping[str, int],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        backend: str = "zeta-sim",
        time_scale: float = 1.0,
        prefix_caching: bool = False,
        priority_scheduling: bool = False,
        with_node: bool = False,
        node_images: Sequence[Path] = (),
    ) -> None:
        """Start a testbed with ``pod_counts`` simulated pods per model size.

        ``prefix_caching`` turns on the pods' prefix caches; off by default, so that
        benchmarks recorded before the sim had one replay as they did.
        ``priority_scheduling`` makes the pods schedule by request priority, as vLLM's
        ``--scheduling-policy priority``.
        ``with_node`` adds a real node (kubelet, containerd, kube-scheduler; root only,
        see :mod:`zeta_testbed.node`) with the OCI archives ``node_images`` imported.
        """
        if self.exists() and any(processes.is_running(p) for p in self.state().processes.values()):
            raise TestbedError(f"a testbed already runs from {self.state_dir}; `down` it first")
        if backend not in pods.BACKENDS:
            raise TestbedError(f"unknown backend {backend!r}")
        names = ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "prometheus"]
        if with_node:
            names += ["kubelet", "kube-scheduler", "pause"]
            try:
                node.require_host()
            except node.NodeError as exc:
                raise TestbedError(str(exc)) from exc
            for image in node_images:
                if not image.is_file():
                    raise TestbedError(f"no image archive {image}")
        binaries = {name: tools.locate(name) for name in names}
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True)
        logs = self.state_dir / "logs"
        keys = pki.create(self.state_dir / "pki", dt.datetime.now(dt.UTC))
        token_file, token = controlplane.write_token_file(self.state_dir / "pki")
        ports = Ports(*free_ports(5))
        state = State(
            namespace, backend, time_scale, ports, token,
            prefix_caching=prefix_caching, priority_scheduling=priority_scheduling,
            node=with_node,
        )  # fmt: skip
        self._save(state)
        try:
            # Simulators start while the control plane does: they need nothing from it.
            starting = [
                self._spawn_simulator(state, size, namespace)
                for size, count in pod_counts.items()
                for _ in range(count)
            ]
            self._start_control_plane(state, binaries, keys, token_file, logs)
            self._link_clients(binaries["kubectl"])
            self._create_namespace(namespace)
            if with_node:
                self._start_node(state, binaries, node_images)
            for pod in starting:
                self._register_pod(pod, labels=None, ready=True)
            self.env_file.write_text(self.env_script())
            self.wait_scraped(len(state.pods), timeout=START_TIMEOUT)
        except BaseException:
            self._save(state)
            self.down(keep_state=True)
            raise

    def _start_control_plane(
        self,
        state: State,
        binaries: Mapping[str, Path],
        keys: pki.Pki,
        token_file: Path,
        logs: Path,
    ) -> None:
        ports = state.ports
        etcd = processes.spawn(
            "etcd",
            controlplane.etcd_argv(binaries["etcd"], self.state_dir / "etcd", ports),
            log_dir=logs,
        )
        state.processes["etcd"] = etcd
        self._save(state)
        processes.wait_ready(
            etcd,
            lambda: processes.http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
            timeout=START_TIMEOUT,
            what="etcd",
        )
        apiserver = processes.spawn(
            "kube-apiserver",
            controlplane.apiserver_argv(
                binaries["kube-apiserver"], keys, token_file, ports, node=state.node
            ),
            log_dir=logs,
        )
        state.processes["kube-apiserver"] = apiserver
        self._save(state)
        processes.wait_ready(
            apiserver,
            lambda: processes.http_ok(
                f"https://127.0.0.1:{ports.apiserver}/readyz",
                ca_file=keys.ca_cert,
                token=state.token,
            ),
            timeout=START_TIMEOUT,
            what="kube-apiserver",
        )
        controlplane.write_kubeconfig(
            self.kubeconfig,
            server=f"https://127.0.0.1:{ports.apiserver}",
            ca_file=keys.ca_cert,
            token=state.token,
        )
        state.processes["kube-controller-manager"] = processes.spawn(
            "kube-controller-manager",
            controlplane.controller_manager_argv(
                binaries["kube-controller-manager"],
                keys,
                self.kubeconfig,
                self.state_dir / "controller-manager",
                ports,
                node=state.node,
            ),
            log_dir=logs,
        )
        prometheus.write_config(self.state_dir / "prometheus.yml", self.kubeconfig)
        # Recorded in `up`'s own state object: the one `up` saves, even when it fails
        # (a record written only to the file would be lost then, and the process leaked).
        record = self._spawn_prometheus(state)
        self._save(state)
        self._wait_prometheus(record, ports.prometheus)

    def _start_node(
        self, state: State, binaries: Mapping[str, Path], images: Sequence[Path]
    ) -> None:
        """kube-scheduler, the node, and the relay its pods reach the apiserver through."""
        state.processes["kube-scheduler"] = processes.spawn(
            "kube-scheduler",
            controlplane.scheduler_argv(binaries["kube-scheduler"], self.kubeconfig),
            log_dir=self.state_dir / "logs",
        )
        self._save(state)
        the_node = self.real_node
        pause = node.pause_archive(binaries["pause"], the_node.folder / "images" / "pause.tar")
        try:
            the_node.up(
                kubelet=binaries["kubelet"],
                kubeconfig=self.kubeconfig,
                images=[pause, *images],
                is_ready=self.node_ready,
            )
        except node.NodeError as exc:
            raise TestbedError(str(exc)) from exc
        ports = state.ports
        state.processes["relay"] = processes.spawn(
            "relay",
            [
                sys.executable, "-m", "zeta_testbed.relay",
                f"{node.KUBERNETES_SERVICE_IP}:443=127.0.0.1:{ports.apiserver}",
                f"{node.GATEWAY_IP}:{ports.prometheus}=127.0.0.1:{ports.prometheus}",
            ],
            log_dir=self.state_dir / "logs",
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        self._save(state)
        processes.wait_ready(
            state.processes["relay"],
            lambda: processes.listens_on(state.processes["relay"], node.KUBERNETES_SERVICE_IP, 443),
            timeout=START_TIMEOUT,
            what="the node's relay",
        )

    def node_ready(self) -> bool:
        """The node reports Ready and the scheduler may use it (no not-ready taint)."""
        with self.api_client() as api:
            try:
                found = k8s.CoreV1Api(api).read_node(node.NODE_NAME)
            except ApiException:
                return False
        conditions = (found.status and found.status.conditions) or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        taints = (found.spec and found.spec.taints) or []
        return ready and not any(t.key == "node.kubernetes.io/not-ready" for t in taints)

    def _delete_node_pods(self) -> None:
        """Delete every pod on the node and wait (bounded) until the kubelet has stopped them."""
        selector = f"spec.nodeName={node.NODE_NAME}"
        deadline = time.monotonic() + 60
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            # Cordoned first: a Deployment's replacement pods must stay Pending, not land
            # on the node again and keep it busy.
            core.patch_node(node.NODE_NAME, {"spec": {"unschedulable": True}})
            for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
                meta = pod.metadata
                if meta is None or not meta.name or not meta.namespace:
                    continue
                with contextlib.suppress(ApiException):
                    core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=5)
            while time.monotonic() < deadline:
                if not core.list_pod_for_all_namespaces(field_selector=selector).items:
                    return
                time.sleep(0.5)

    def _link_clients(self, kubectl: Path) -> None:
        bin_dir = self.state_dir / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "kubectl").symlink_to(kubectl)
        with contextlib.suppress(tools.ToolError):
            (bin_dir / "helm").symlink_to(tools.locate("helm"))

    def _create_namespace(self, namespace: str) -> None:
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            try:
                core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
            except ApiException as exc:
                if exc.status != 409:
                    raise
            if self.state().node:
                # The ServiceAccount admission plugin (on with a node) refuses pods until
                # the controller manager has made the namespace's `default` account.
                deadline = time.monotonic() + START_TIMEOUT
                while not core.list_namespaced_service_account(
                    namespace, field_selector="metadata.name=default"
                ).items:
                    if time.monotonic() > deadline:
                        raise TestbedError(f"no default ServiceAccount in {namespace}")
                    time.sleep(0.1)

    # ------------------------------------------------------------ prometheus
    def start_prometheus(self) -> None:
        """Start (or restart) Prometheus on the testbed's fixed port."""
        with self._locked() as state:
            record = self._spawn_prometheus(state)
        self._wait_prometheus(record, state.ports.prometheus)

    def _spawn_prometheus(self, state: State) -> ProcessRecord:
        record = processes.spawn(
            "prometheus",
            prometheus.argv(
                tools.locate("prometheus"),
                self.state_dir / "prometheus.yml",
                self.state_dir / "prometheus-data",
                state.ports.prometheus,
            ),
            log_dir=self.state_dir / "logs",
        )
        state.processes["prometheus"] = record
        return record

    def _wait_prometheus(self, record: ProcessRecord, port: int) -> None:
        processes.wait_ready(
            record,
            lambda: processes.http_ok(f"http://127.0.0.1:{port}/-/ready"),
            timeout=START_TIMEOUT,
            what="prometheus",
        )

    def stop_prometheus(self) -> None:
        """Stop Prometheus (tests of the operator's degradation ladder need that)."""
        processes.stop(self.state().processes["prometheus"])

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; the result vector as Prometheus returns it."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise TestbedError(f"Prometheus query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_scraped(self, count: int, *, timeout: float) -> None:
        """Until Prometheus has exactly ``count`` ``vllm:num_requests_running`` series."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, TestbedError):
                result = self.query("count(vllm:num_requests_running) or vector(0)")
                seen = int(float(result[0]["value"][1])) if result else 0
                if seen == count:
                    return
            time.sleep(0.25)
        raise TestbedError(f"Prometheus sees {seen} model pods after {timeout:.0f} s, not {count}")

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run the testbed's kubectl (the real client) and return its output; a failure
        raises with kubectl's own message."""
        return self._client("kubectl", "ZETA_KUBECTL", args, stdin=stdin, timeout=timeout)

    def helm(self, *args: str, timeout: float = 180) -> str:
        """Run the testbed's helm, as ``kubectl`` does kubectl."""
        return self._client("helm", "ZETA_HELM", args, stdin=None, timeout=timeout)

    def _client(
        self, name: str, env_key: str, args: Sequence[str], *, stdin: str | None, timeout: float
    ) -> str:
        # HOME in the state folder: the clients' caches stay with this testbed.
        env = {**os.environ, **self.env(), "HOME": str(self.state_dir)}
        done = subprocess.run(
            [env[env_key], *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise TestbedError(f"{name} {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (a token
        from the TokenRequest API, valid for an hour), to prove a Role is enough."""
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        )
        with self.api_client() as api:
            answer = k8s.CoreV1Api(api).create_namespaced_service_account_token(
                name, namespace, request
            )
        if answer.status is None:
            raise TestbedError(f"no token issued for ServiceAccount {namespace}/{name}")
        config = yaml.safe_load(self.kubeconfig.read_text())
        for user in config["users"]:
            user["user"] = {"token": answer.status.token}  # server and CA stay the testbed's
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def routing_table(self, namespace: str, config_map: str) -> dict[str, Any] | None:
        """The routing table an operator published in ``config_map``, or None if none yet."""
        with self.api_client() as api:
            try:
                found = k8s.CoreV1Api(api).read_namespaced_config_map(config_map, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        text = (found.data or {}).get(TABLE_KEY)
        table: dict[str, Any] | None = json.loads(text) if text else None
        return table

    # ------------------------------------------------------- other processes
    def run(
        self, name: str, argv: list[str], *, env: Mapping[str, str] | None = None
    ) -> ProcessRecord:
        """Start a process that lives with the testbed (an operator, a sidecar...):
        ``status`` lists it and ``down`` ends it. Its environment is this one plus
        ``env()`` (so it finds the testbed's kubeconfig) plus ``env``."""
        with self._locked() as state:
            if name in state.processes and processes.is_running(state.processes[name]):
                raise TestbedError(f"a process named {name!r} already runs in this testbed")
            record = processes.spawn(
                name,
                argv,
                log_dir=self.state_dir / "logs",
                env={**os.environ, **self.env(), **(env or {})},
            )
            state.processes[name] = record
        return record

    # ------------------------------------------------------------------ pods
    def add_pod(
        self,
        size: str,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        ready: bool = True,
        prefix_caching: bool | None = None,
    ) -> PodInfo:
        """Start a simulator and the Pod object that stands for it; ``prefix_caching``,
        when given, replaces the testbed's own setting for this pod."""
        for attempt in range(_ADDRESS_ATTEMPTS):
            with self._locked() as state:
                pod = self._spawn_simulator(
                    state, size, namespace or state.namespace, prefix_caching=prefix_caching
                )
            try:
                self._register_pod(pod, labels=labels, ready=ready)
            except processes.StartError:
                if attempt + 1 == _ADDRESS_ATTEMPTS or processes.is_running(pod.process):
                    raise
                # Its simulator exited: another testbed bound the address first. Forget
                # this one and take another address.
                with self._locked() as state:
                    state.pods = [p for p in state.pods if p.name != pod.name]
                continue
            return pod
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn_simulator(
        self, state: State, size: str, namespace: str, *, prefix_caching: bool | None = None
    ) -> PodInfo:
        if size not in pods.SIZES:
            raise TestbedError(f"unknown model size {size!r}: expected one of {pods.SIZES}")
        taken = [pod.ip for pod in state.pods]
        # Near this testbed's last pod, or anywhere for its first: see next_free_ip.
        start = pods.address_index(taken[-1]) + 1 if taken else secrets.randbelow(1 << 16)
        ip = pods.next_free_ip(taken, is_free=_port_free, start=start)
        name = f"vllm-{size}-{_suffix()}"
        argv = pods.simulator_argv(
            state.backend,
            size,
            ip,
            time_scale=state.time_scale,
            prefix_caching=state.prefix_caching if prefix_caching is None else prefix_caching,
            priority_scheduling=state.priority_scheduling,
        )
        record = processes.spawn(f"pod-{namespace}-{name}", argv, log_dir=self.state_dir / "logs")
        pod = PodInfo(namespace, name, size, ip, record)
        state.pods.append(pod)
        return pod

    def _register_pod(self, pod: PodInfo, *, labels: Mapping[str, str] | None, ready: bool) -> None:
        """Once its simulator answers, create the Pod and report it Running (the kubelet's job)."""
        processes.wait_ready(
            pod.process,
            # Its own process must hold the address: another testbed's could answer too.
            lambda: (
                processes.http_ok(f"{pod.url}/health")
                and processes.listens_on(pod.process, pod.ip, pods.MODEL_PORT)
            ),
            timeout=START_TIMEOUT,
            what=f"simulator of pod {pod.name}",
        )
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            manifest = pods.pod_manifest(pod.name, pod.namespace, pod.size, labels=labels)
            # The client sends a plain dict as it is; its stubs only know the model classes.
            core.create_namespaced_pod(pod.namespace, manifest)  # type: ignore[arg-type]
        self.set_pod_ready(pod, ready)

    def add_scraped_pod(
        self, name: str, port: int, *, namespace: str, labels: Mapping[str, str] | None = None
    ) -> None:
        """A Running Pod object (podIP 127.0.0.1) for a process of the product already
        listening on ``127.0.0.1:port``, so Prometheus scrapes its ``/metrics``. The
        caller owns the process; the Pod goes with its namespace."""
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            manifest = pods.scraped_pod_manifest(name, namespace, port, labels=labels)
            # The client sends a plain dict as it is; its stubs only know the model classes.
            core.create_namespaced_pod(namespace, manifest)  # type: ignore[arg-type]
            status = pods.status_patch("127.0.0.1", ready=True, now=dt.datetime.now(dt.UTC))
            core.patch_namespaced_pod_status(name, namespace, status)

    def set_pod_ready(self, pod: PodInfo, ready: bool) -> None:
        with self.api_client() as api:
            k8s.CoreV1Api(api).patch_namespaced_pod_status(
                pod.name,
                pod.namespace,
                pods.status_patch(pod.ip, ready=ready, now=dt.datetime.now(dt.UTC)),
            )

    def remove_pod(self, name: str, namespace: str | None = None) -> None:
        """Delete the Pod object, then stop its simulator."""
        with self._locked() as state:
            namespace = namespace or state.namespace
            matches = [p for p in state.pods if p.name == name and p.namespace == namespace]
            if not matches:
                raise TestbedError(f"no testbed pod {namespace}/{name}")
            with self.api_client() as api:
                try:
                    k8s.CoreV1Api(api).delete_namespaced_pod(name, namespace)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            processes.stop(matches[0].process, grace=5)
            state.pods.remove(matches[0])

    def pods(self, namespace: str | None = None) -> list[PodInfo]:
        return [p for p in self.state().pods if namespace is None or p.namespace == namespace]

    # ----------------------------------------------------------- look, down
    def status(self) -> list[tuple[str, int, bool]]:
        """(name, pid, running) for every process the testbed started."""
        state = self.state()
        records = [*state.processes.values(), *(pod.process for pod in state.pods)]
        return [(r.name, r.pid, processes.is_running(r)) for r in records]

    def down(self, *, keep_state: bool = False) -> None:
        """Stop every process the testbed started (models first, etcd last)."""
        if not self.exists():
            return
        state = self.state()
        problems = []
        if state.node and self.real_node.exists():
            # While the apiserver runs: the kubelet stops the pods it is told to delete.
            problems = self.real_node.down(delete_pods=self._delete_node_pods)
            with contextlib.suppress(Exception), self.api_client() as api:
                k8s.CoreV1Api(api).delete_node(node.NODE_NAME)
        processes.stop_all([pod.process for pod in state.pods], grace=5)
        components = ("prometheus", "kube-controller-manager", "kube-apiserver", "etcd")
        # What `run` started goes first: it may still be talking to the apiserver.
        processes.stop_all([r for n, r in state.processes.items() if n not in components])
        for name in components:
            if name in state.processes:
                processes.stop(state.processes[name])
        if problems:
            # Kept for a look: the node's logs say what held on.
            raise TestbedError("the node left: " + "; ".join(problems))
        if not keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


_ADDRESS_ATTEMPTS = 3
"""Tries at a pod address when other testbeds take the ones found free first."""


def _port_free(ip: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, pods.MODEL_PORT))
        except OSError:
            return False
    return True


def _suffix() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(5))


def default_state_dir() -> Path:
    return Path(os.environ.get("ZETA_TESTBED_DIR", ".testbed"))


if sys.platform != "linux":  # pragma: no cover - the testbed reads /proc and loopback /8
    raise ImportError("the Zeta testbed runs on Linux only")
