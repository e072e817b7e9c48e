"""The ConfigMap watch (list, watch, relist, credentials) against the real apiserver
(renewed watches, a ServiceAccount recreated under the watch, no table yet), and against
a fake one on loopback for the faults the testbed cannot provoke on demand: a ``410
Gone``, a failing watch endpoint, an exec plugin's token the server stops taking, a
watch that goes silent.

The fake answers the two calls the sidecar makes (list and watch of one namespace's
ConfigMaps) as the apiserver does, and records every request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from kubernetes import client as k8s

from zeta_sidecar.configmap_source import watch_configmap
from zeta_sidecar.kube_credentials import load_connection
from zeta_sidecar.settings import ConfigMapRef
from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.testbed import Testbed

from .conftest import SidecarFactory, get, wait_until

MANIFESTS = Path(__file__).resolve().parents[3] / "manifests/gateway"
NAMESPACE, NAME = "llm", "chat-routing"
REF = ConfigMapRef(NAMESPACE, NAME)
RETRY = 0.05


def table(revision: int) -> str:
    return table_json({"m": [endpoint("127.0.0.1:1")]}, revision=revision)


def status(code: int, reason: str, message: str) -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Seen:
    """One request the fake API server answered."""

    kind: str  # "list" or "watch"
    query: dict[str, str]
    token: str
    at: float
    status: int = 200


@dataclass
class FakeApiServer:
    """One namespace's ConfigMaps, listed and watched; faults set by the test."""

    tokens: set[str] = field(default_factory=lambda: {"admin"})
    watch_status: tuple[int, str] | None = None
    """Answer every watch with this HTTP status and body."""
    watch_events: list[dict[str, object]] = field(default_factory=list)
    """Events the next watch sends before it ends (one ERROR event: the watch fails)."""
    silent_watches: int = 0
    """So many next watches get their headers, then nothing: a dead connection."""
    honour_timeout: bool = True

    version: int = 10
    data: dict[str, str] | None = None
    seen: list[Seen] = field(default_factory=list)
    _streams: list[asyncio.Queue[dict[str, object] | None]] = field(default_factory=list)

    def object(self) -> dict[str, object]:
        return {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "resourceVersion": str(self.version),
                "uid": "0b9f-uid",
            },
            "data": dict(self.data or {}),
        }

    def put(self, revision: int | None, *, lost: bool = False) -> None:
        """Create, edit or (``None``) delete the ConfigMap; watchers get the event,
        unless it is ``lost`` (gone from the server's watch cache before it was sent)."""
        kind = "DELETED" if revision is None else "MODIFIED" if self.data else "ADDED"
        self.version += 1
        if revision is None:
            event = {"type": kind, "object": self.object()}
            self.data = None
        else:
            self.data = {"routing.json": table(revision)}
            event = {"type": kind, "object": self.object()}
        for queue in [] if lost else self._streams:
            queue.put_nowait(event)

    def end_watches(self) -> None:
        """Close every open watch cleanly, as the server does at its timeout."""
        for queue in self._streams:
            queue.put_nowait(None)

    def watches(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "watch"]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.match_info["namespace"] == NAMESPACE
        assert request.query.get("fieldSelector") == f"metadata.name={NAME}"
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        watching = request.query.get("watch") in ("true", "1", "True")
        seen = Seen("watch" if watching else "list", dict(request.query), token, time.monotonic())
        self.seen.append(seen)
        if token not in self.tokens:
            seen.status = 401
            return web.json_response(status(401, "Unauthorized", "Unauthorized"), status=401)
        if not watching:
            items = [self.object()] if self.data is not None else []
            body = {
                "kind": "ConfigMapList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.version)},
                "items": items,
            }
            return web.json_response(body)
        if self.watch_status is not None:
            seen.status, body_text = self.watch_status
            return web.Response(status=seen.status, text=body_text)
        return await self._watch(request)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        if self.silent_watches:
            self.silent_watches -= 1
            await asyncio.sleep(3600)  # cancelled when the client gives up
        if self.watch_events:
            events, self.watch_events = self.watch_events, []
            for event in events:
                await resp.write(json.dumps(event).encode() + b"\n")
            return resp
        queue: asyncio.Queue[dict[str, object] | None] = asyncio.Queue()
        if int(request.query["resourceVersion"]) < self.version and self.data is not None:
            # What changed since the client's version (only the last state here).
            queue.put_nowait({"type": "MODIFIED", "object": self.object()})
        self._streams.append(queue)
        timeout = int(request.query["timeoutSeconds"]) if self.honour_timeout else 3600
        try:
            async with asyncio.timeout(timeout):
                while (event := await queue.get()) is not None:
                    await resp.write(json.dumps(event).encode() + b"\n")
        except TimeoutError:
            # The apiserver sends a bookmark as a watch times out: the client resumes there.
            bookmark = {"kind": "ConfigMap", "metadata": {"resourceVersion": str(self.version)}}
            await resp.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
        finally:
            self._streams.remove(queue)
        return resp


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApiServer, str]]:
    server = FakeApiServer()
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{namespace}/configmaps", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.end_watches()
        await runner.cleanup()


def kubeconfig(path: Path, server: str, user: dict[str, object]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Watcher:
    """``watch_configmap`` running on this loop, with the revisions it applied."""

    def __init__(self) -> None:
        self.revisions: list[int] = []
        self.task: asyncio.Task[None] | None = None

    def apply(self, raw: bytes) -> bool:
        self.revisions.append(int(json.loads(raw)["revision"]))
        return True

    async def start(self, config: Path, **kw: int) -> None:
        conn = await load_connection(config)
        self.task = asyncio.create_task(watch_configmap(conn, REF, self.apply, retry=RETRY, **kw))

    async def stop(self) -> None:
        assert self.task is not None
        assert not self.task.done(), self.task  # it never gives up on its own
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    @property
    def last(self) -> int | None:
        return self.revisions[-1] if self.revisions else None


@pytest.fixture
async def watcher() -> AsyncIterator[Watcher]:
    w = Watcher()
    yield w
    if w.task is not None and not w.task.done():
        w.task.cancel()
        await asyncio.gather(w.task, return_exceptions=True)


async def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


def admin(tmp_path: Path, server: str) -> Path:
    return kubeconfig(tmp_path / "kubeconfig", server, {"token": "admin"})


@pytest.mark.parametrize("form", ["ERROR event", "ERROR event after a bookmark", "HTTP status"])
async def test_gone_relists_and_takes_the_table_the_watch_missed(
    fake: tuple[FakeApiServer, str], watcher: Watcher, tmp_path: Path, form: str
) -> None:
    server, url = fake
    server.put(1)
    await watcher.start(admin(tmp_path, url))
    await until(lambda: watcher.last == 1 and len(server.watches()) == 1, within=5, what="watch")
    gone = status(410, "Expired", "too old resource version: 11 (13)")
    if form.startswith("ERROR event"):
        server.watch_events = [{"type": "ERROR", "object": gone}]
        if form.endswith("bookmark"):
            bookmark = {"kind": "ConfigMap", "metadata": {"resourceVersion": "11"}}
            server.watch_events.insert(0, {"type": "BOOKMARK", "object": bookmark})
    else:
        server.watch_status = (410, json.dumps(gone))
    # An edit whose event the server lost: only a new list can bring revision 2.
    server.put(2, lost=True)
    server.end_watches()
    await until(lambda: len(server.watches()) >= 2, within=5, what="the watch again")
    server.watch_status = None
    await until(lambda: watcher.last == 2, within=5, what="the table after the relist")
    kinds = [s.kind for s in server.seen]
    assert kinds[:4] == ["list", "watch", "watch", "list"], kinds
    # The relist's version is where the next watch starts.
    await until(lambda: len(server.watches()) >= 3, within=5, what="the watch after the relist")
    assert server.watches()[2].query["resourceVersion"] == str(server.version)
    server.put(3)
    await until(lambda: watcher.last == 3, within=5, what="an edit after the relist")
    await watcher.stop()


@pytest.mark.parametrize(
    "body", [json.dumps(status(500, "InternalError", "etcd is down")), "Internal Server Error"]
)
async def test_a_failing_watch_relists_with_growing_pauses(
    fake: tuple[FakeApiServer, str], watcher: Watcher, tmp_path: Path, body: str
) -> None:
    server, url = fake
    server.put(1)
    server.watch_status = (500, body)
    await watcher.start(admin(tmp_path, url))
    await until(lambda: len(server.watches()) >= 5, within=10, what="five failed watches")
    server.watch_status = None
    server.put(2)
    await until(lambda: watcher.last == 2, within=10, what="the table once the server heals")
    failed = [s for s in server.watches() if s.status == 500]
    kinds = [s.kind for s in server.seen]
    # Never the same resourceVersion twice in a row: a list before every watch.
    for i, seen in enumerate(server.seen):
        if seen.kind == "watch" and seen.status == 500:
            assert kinds[i - 1] == "list", kinds
    # And pauses that double: no loop hammering the apiserver.
    gaps = [b.at - a.at for a, b in itertools.pairwise(failed)]
    for i, gap in enumerate(gaps[:4]):
        assert gap >= RETRY * 2**i * 0.9, gaps
    await watcher.stop()


def exec_plugin(tmp_path: Path, token_file: Path) -> dict[str, object]:
    """A kubeconfig user whose token comes from an exec plugin reading ``token_file``."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, sys\n"
        "token = open(sys.argv[1]).read().strip()\n"
        'print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", '
        '"kind": "ExecCredential", "status": {"token": token}}))\n'
    )
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), str(token_file)],
            "interactiveMode": "Never",
        }
    }


async def test_a_rotated_exec_plugin_token_keeps_the_watch_working(
    fake: tuple[FakeApiServer, str], watcher: Watcher, tmp_path: Path
) -> None:
    server, url = fake
    token_file = tmp_path / "token"
    token_file.write_text("first")
    server.tokens = {"first"}
    server.put(1)
    config = kubeconfig(tmp_path / "kubeconfig", url, exec_plugin(tmp_path, token_file))
    await watcher.start(config)
    await until(lambda: watcher.last == 1 and server.watches(), within=5, what="the watch")
    # The credentials rotate: the plugin now prints the second token, and the server
    # refuses the first from the next request on.
    token_file.write_text("second")
    server.tokens = {"second"}
    server.end_watches()
    await until(lambda: any(s.status == 401 for s in server.seen), within=5, what="a 401")
    server.put(2)
    await until(lambda: watcher.last == 2, within=10, what="the table with the new token")
    after = server.seen[[s.status for s in server.seen].index(401) + 1 :]
    assert after
    assert {s.token for s in after} == {"second"}
    server.put(3)
    await until(lambda: watcher.last == 3, within=5, what="an edit on the new watch")
    await watcher.stop()


async def test_watches_ask_for_bookmarks_and_resume_from_them(
    fake: tuple[FakeApiServer, str], watcher: Watcher, tmp_path: Path
) -> None:
    server, url = fake
    server.put(1)
    await watcher.start(admin(tmp_path, url), timeout_seconds=1)
    # Each watch ends at the server's timeout with a bookmark; the next starts from it.
    await until(lambda: len(server.watches()) >= 3, within=10, what="three watches")
    watches = server.watches()
    assert {w.query["allowWatchBookmarks"].lower() for w in watches} == {"true"}, watches
    assert all(w.query["timeoutSeconds"] == "1" for w in watches)
    assert [s.kind for s in server.seen].count("list") == 1  # renewed, never relisted
    server.version += 5  # other objects changed: only the bookmark carries the version
    await until(
        lambda: server.watches()[-1].query["resourceVersion"] == str(server.version),
        within=5,
        what="a watch from the bookmark's version",
    )
    assert [s.kind for s in server.seen].count("list") == 1
    server.put(2)
    await until(lambda: watcher.last == 2, within=5, what="an edit")
    await watcher.stop()


async def test_a_silent_watch_is_given_up_and_renewed(
    fake: tuple[FakeApiServer, str], watcher: Watcher, tmp_path: Path
) -> None:
    server, url = fake
    server.put(1)
    server.silent_watches = 1
    await watcher.start(admin(tmp_path, url), timeout_seconds=1)
    await until(lambda: watcher.last == 1, within=5, what="the first list")
    server.put(2)  # sent to no one: the first watch is a dead connection
    await until(lambda: watcher.last == 2, within=10, what="the edit after the dead watch")
    assert [s.kind for s in server.seen][:3] == ["list", "watch", "list"]
    await watcher.stop()


async def test_a_deleted_configmap_keeps_the_last_table_until_it_is_back(
    fake: tuple[FakeApiServer, str], watcher: Watcher, tmp_path: Path
) -> None:
    server, url = fake
    await watcher.start(admin(tmp_path, url))
    await until(lambda: len(server.watches()) == 1, within=5, what="the watch")
    assert watcher.revisions == []  # no ConfigMap yet: nothing applied
    server.put(1)
    await until(lambda: watcher.last == 1, within=5, what="the new ConfigMap")
    server.put(None)
    server.put(2)
    await until(lambda: watcher.last == 2, within=5, what="the recreated ConfigMap")
    assert watcher.revisions == [1, 2]  # the deletion applied nothing
    await watcher.stop()


# Against the testbed's real apiserver.


async def test_renewed_watches_on_the_real_apiserver_see_every_edit(
    testbed: Testbed, namespace: str, core: k8s.CoreV1Api, watcher: Watcher
) -> None:
    ref = ConfigMapRef(namespace, NAME)
    conn = await load_connection(testbed.kubeconfig)
    # One-second watches: the sequence below spans several renewals.
    watcher.task = asyncio.create_task(
        watch_configmap(conn, ref, watcher.apply, retry=RETRY, timeout_seconds=1)
    )

    def put(revision: int) -> None:
        body = {"metadata": {"name": NAME}, "data": {"routing.json": table(revision)}}
        if revision == 1:
            core.create_namespaced_config_map(namespace, body)
        else:
            core.replace_namespaced_config_map(NAME, namespace, body)

    await asyncio.sleep(0.5)
    await asyncio.to_thread(put, 1)  # created after the list: an ADDED event
    await until(lambda: watcher.last == 1, within=5, what="the created ConfigMap")
    for revision in (2, 3):
        await asyncio.sleep(1.2)  # a renewal in between
        await asyncio.to_thread(put, revision)
        await until(lambda: watcher.last == revision, within=2, what="the edit")  # noqa: B023
    await asyncio.to_thread(core.delete_namespaced_config_map, NAME, namespace)
    await asyncio.sleep(1.2)
    assert watcher.last == 3
    await asyncio.to_thread(put, 1)
    await until(lambda: watcher.last == 1, within=5, what="the recreated ConfigMap")
    await watcher.stop()


class Relay:
    """A TCP relay on loopback (TLS passes through untouched) whose connections the
    test can cut, as a load balancer or a network blip would: the client reconnects."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.cut()
        await self.server.wait_closed()

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


def service_account_token(core: k8s.CoreV1Api, namespace: str, name: str) -> str:
    request = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    answer = core.create_namespaced_service_account_token(name, namespace, request)
    return str(answer.status.token)


def refused(testbed: Testbed, ca: str, namespace: str, token: str) -> bool:
    """The apiserver answers ``token`` with a 401."""
    url = f"{testbed.apiserver_url}/api/v1/namespaces/{namespace}/configmaps"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca)):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code == 401


async def test_a_service_account_recreated_under_the_watch_is_followed_through_its_plugin(
    testbed: Testbed,
    namespace: str,
    core: k8s.CoreV1Api,
    *,
    watcher: Watcher,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("serviceaccount.yaml", "role.yaml", "rolebinding.yaml"):
        testbed.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / name))
    token_file = tmp_path / "token"
    old_token = service_account_token(core, namespace, "zeta-gateway")
    token_file.write_text(old_token)
    body = {"metadata": {"name": NAME}, "data": {"routing.json": table(1)}}
    core.create_namespaced_config_map(namespace, body)
    admin_config = yaml.safe_load(testbed.kubeconfig.read_text())
    ca = admin_config["clusters"][0]["cluster"]["certificate-authority"]
    port = int(testbed.apiserver_url.rpartition(":")[2])
    relay = Relay(port)
    async with relay as url:
        config = kubeconfig(tmp_path / "kubeconfig", url, exec_plugin(tmp_path, token_file))
        doc = yaml.safe_load(config.read_text())
        doc["clusters"][0]["cluster"]["certificate-authority"] = ca
        config.write_text(yaml.safe_dump(doc))
        conn = await load_connection(config)
        watcher.task = asyncio.create_task(
            watch_configmap(conn, ConfigMapRef(namespace, NAME), watcher.apply, retry=RETRY)
        )
        await until(lambda: watcher.last == 1, within=10, what="the table as the ServiceAccount")

        def rotate() -> None:
            # A new ServiceAccount of the same name: the apiserver refuses the old one's
            # tokens from now on, and the plugin hands out the new one's.
            core.delete_namespaced_service_account("zeta-gateway", namespace)
            testbed.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "serviceaccount.yaml"))
            token_file.write_text(service_account_token(core, namespace, "zeta-gateway"))
            wait_until(
                lambda: refused(testbed, ca, namespace, old_token),
                within=10,
                what="the old token refused",
            )

        await asyncio.to_thread(rotate)
        # An open watch is not authenticated again: the connection has to drop first.
        relay.cut()
        await asyncio.to_thread(
            core.patch_namespaced_config_map, NAME, namespace, {"data": {"routing.json": table(2)}}
        )
        await until(lambda: watcher.last == 2, within=10, what="the edit with the new token")
        await watcher.stop()
    assert any("HTTP 401" in r.getMessage() for r in caplog.records), "no 401 on the way"


def test_no_table_yet_is_503_and_not_ready_until_the_configmap_comes(
    testbed: Testbed, namespace: str, core: k8s.CoreV1Api, sidecar: SidecarFactory
) -> None:
    proc = sidecar(
        f"--configmap={namespace}/{NAME}", "--kubeconfig", str(testbed.kubeconfig), ready=False
    )
    code, body = get(f"{proc.admin}/readyz")
    assert (code, body) == (503, b"no routing table loaded yet")
    code, body = get(f"{proc.url}/v1/models")
    assert code == 503
    assert "no routing table" in json.loads(body)["error"]["message"].lower()
    chat = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(f"{proc.url}/v1/chat/completions", data=chat)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)  # loopback only
    assert refused.value.code == 503
    assert "no routing table" in json.loads(refused.value.read())["error"]["message"].lower()
    body_cm = {"metadata": {"name": NAME}, "data": {"routing.json": table(4)}}
    core.create_namespaced_config_map(namespace, body_cm)
    wait_until(lambda: proc.revision() == 4, within=5, what="the table through the watch")
    assert get(f"{proc.admin}/readyz")[0] == 200
