"""The node mode's pure parts: its configs, the control plane's flags, the pause image
archive, and the relay (on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from zeta_testbed import controlplane, node, ociarchive, pods, relay
from zeta_testbed.controlplane import Ports
from zeta_testbed.pki import Pki


def test_pods_route_only_the_service_range_through_the_bridge(tmp_path: Path) -> None:
    plugin = node.cni_config(tmp_path)["plugins"][0]
    assert plugin["bridge"] == node.BRIDGE
    # isGateway would make the plugin turn on the host's IP forwarding.
    assert plugin["isGateway"] is False
    assert plugin["ipMasq"] is False
    assert plugin["ipam"]["routes"] == [
        {"dst": controlplane.SERVICE_CLUSTER_IP_RANGE, "gw": node.GATEWAY_IP}
    ]
    assert node.KUBERNETES_SERVICE_IP == "10.0.0.1"


def test_kubelet_config_keeps_to_the_node(tmp_path: Path) -> None:
    config = node.kubelet_config(tmp_path, port=1, healthz_port=2)
    assert config["failCgroupV1"] is False
    assert config["cgroupRoot"] == f"/{node.CGROUP_ROOT}"
    assert config["makeIPTablesUtilChains"] is False
    assert config["address"] == config["healthzBindAddress"] == "127.0.0.1"
    assert config["containerRuntimeEndpoint"] == f"unix://{tmp_path}/containerd.sock"
    assert config["imageGCHighThresholdPercent"] == 100
    assert "restrict_oom_score_adj = true" in node.containerd_config(tmp_path)
    assert node.PAUSE_IMAGE in node.containerd_config(tmp_path)


def test_control_plane_flags_change_only_with_a_node() -> None:
    keys = Pki(*(Path(f"/k/{n}") for n in range(len(Pki.__dataclass_fields__))))
    ports = Ports(1, 2, 3, 4, 5)
    plain = controlplane.apiserver_argv(Path("a"), keys, Path("t"), ports)
    with_node = controlplane.apiserver_argv(Path("a"), keys, Path("t"), ports, node=True)
    assert "--disable-admission-plugins=ServiceAccount" in plain
    assert set(plain) - set(with_node) == {"--disable-admission-plugins=ServiceAccount"}
    kcm = controlplane.controller_manager_argv(Path("c"), keys, Path("k"), Path("d"), ports)
    kcm_node = controlplane.controller_manager_argv(
        Path("c"), keys, Path("k"), Path("d"), ports, node=True
    )
    controllers = next(a for a in kcm_node if a.startswith("--controllers="))
    assert {"nodelifecycle", "root-ca-cert-publisher"} <= set(controllers.split("=")[1].split(","))
    assert "nodelifecycle" not in " ".join(kcm)


def test_simulated_pods_wait_for_a_scheduler_nobody_runs() -> None:
    manifest = pods.pod_manifest("p", "ns", "7b")
    assert manifest["spec"]["schedulerName"] == pods.SIMULATED_SCHEDULER


def test_pause_archive_is_a_valid_oci_layout(tmp_path: Path) -> None:
    binary = tmp_path / "pause-binary"
    binary.write_bytes(b"\x7fELF not really")
    out = node.pause_archive(binary, tmp_path / "pause.tar")
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    entry = index["manifests"][0]
    assert entry["annotations"]["io.containerd.image.name"] == node.PAUSE_IMAGE

    def blob(digest: str) -> bytes:
        data = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    manifest = json.loads(blob(entry["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65535:65535"
    blob(manifest["layers"][0]["digest"])
    assert manifest["layers"][0]["mediaType"] == ociarchive.LAYER_TYPE


def test_relay_routes_parse_and_refuse_nonsense() -> None:
    route = relay.Route.parse("10.0.0.1:443=127.0.0.1:6443")
    assert route == relay.Route("10.0.0.1", 443, "127.0.0.1", 6443)
    assert str(route) == "10.0.0.1:443=127.0.0.1:6443"
    with pytest.raises(Exception, match="LISTEN_IP:PORT=TARGET_IP:PORT"):
        relay.Route.parse("10.0.0.1:443")


async def test_relay_passes_bytes_both_ways_and_half_closes() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's half-close
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await relay._handle(relay.Route("127.0.0.1", 0, "127.0.0.1", target_port), reader, writer)

    front = await asyncio.start_server(handle, "127.0.0.1", 0)
    front_port = front.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", front_port)
    writer.write(b"hello through the relay")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"HELLO THROUGH THE RELAY"
    writer.close()
    await writer.wait_closed()
    for server in (front, target):
        server.close()
        await server.wait_closed()
