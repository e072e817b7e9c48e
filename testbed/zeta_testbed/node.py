"""One real Kubernetes node next to the testbed's control plane (``zeta-testbed up --node``).

kubelet v1.36 (built from the same wrapper module as the apiserver) runs pods through
containerd (Debian's 1.6, installed when missing) and runc with cgroupfs. The node is
contained, so that ``down`` leaves the shared VM as it was:

* Its mounts happen in a private mount namespace (``unshare``): the kubelet and
  containerd hard-code host paths (``/var/lib/kubelet``, ``/run/containerd``,
  ``/run/netns``, ``/var/lib/cni``, ``/var/log/pods``), which are bind-mounted from the
  node's folder in there only, and vanish with the namespace.
* The kubelet would set ``vm.overcommit_memory=1``, ``kernel.panic=10`` and
  ``kernel.panic_on_oops=1`` on the host; in the namespace it sees files holding those
  values, read-only, bound over ``/proc/sys``.
* Pod cgroups live under ``<hierarchy>/zetanode``; ``down`` removes them.
* Pods get addresses on a bridge of our own (``zetanode0``, 10.244.77.0/24) with no
  default route: they reach each other and this host, nothing else. The bridge also
  holds the ``kubernetes`` Service's ClusterIP (pods get a route to the service range),
  where a relay (:mod:`zeta_testbed.relay`) passes TLS through to the apiserver, which
  listens on loopback only; another relay on the bridge's gateway address serves the
  testbed's Prometheus. No iptables rule, and no host sysctl, is touched.

Why the bridge and not the host network: two replicas of one Deployment on one node
would need the same host port, so a rolling update with ``maxUnavailable: 0`` could not
start its surge pod.

The node is named ``127.0.0.1`` (``--hostname-override``; ``--node-ip`` refuses a
loopback address), so the apiserver reaches the kubelet (logs, exec) on loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from zeta_testbed import ociarchive, processes
from zeta_testbed.controlplane import SERVICE_CLUSTER_IP_RANGE
from zeta_testbed.harness import free_ports
from zeta_testbed.processes import ProcessRecord

NODE_NAME = "127.0.0.1"
"""An IP as the node's name: the kubelet then reports it as InternalIP unchecked."""
CGROUP_ROOT = "zetanode"
BRIDGE = "zetanode0"
POD_SUBNET = ipaddress.ip_network("10.244.77.0/24")
GATEWAY_IP = str(POD_SUBNET[1])
"""The host's address on the bridge: pods reach the Prometheus relay here."""
KUBERNETES_SERVICE_IP = str(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE)[1])
"""The ``kubernetes`` Service's ClusterIP (the range's first address), in every pod's
``KUBERNETES_SERVICE_HOST``: the apiserver relay listens on it."""
PAUSE_IMAGE = "localhost/zeta-testbed/pause:1"
CGROUP_FS = Path("/sys/fs/cgroup")
HOST_MOUNTPOINTS = ("/run/containerd", "/var/lib/kubelet", "/run/netns", "/var/lib/cni")
"""Host paths the node binds its own folders over (created empty when missing)."""
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
"""What the kubelet sets unless already so (``protectKernelDefaults: false``)."""
SYNC_FREQUENCY = "5s"
"""How often the kubelet refreshes ConfigMap volumes (1 min by default): tests wait on it."""
READY_TIMEOUT = 120.0
STOP_GRACE = 10.0


class NodeError(RuntimeError):
    """The node cannot start or stop as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds each step of ``up`` took, written to ``timings.json`` in the node folder."""

    containerd: float
    images: float
    ready: float


# --------------------------------------------------------------------- requirements
def require_host() -> None:
    """Refuse early, with the reason, on a machine the node cannot run on."""
    if sys.platform != "linux" or os.geteuid() != 0:
        raise NodeError("the testbed's node runs as root on Linux (mounts, cgroups, a bridge)")
    for tool in ("unshare", "mount", "ip", "runc"):
        if shutil.which(tool) is None:
            raise NodeError(f"the testbed's node needs {tool!r} on PATH")
    if (Path("/sys/class/net") / BRIDGE).exists():
        raise NodeError(f"another node runs on this machine (bridge {BRIDGE} exists)")
    ensure_containerd()


def ensure_containerd() -> None:
    """Install Debian's containerd and CNI plugins when missing (as images/build.sh does
    for podman): kubelet 1.36 accepts containerd 1.6; 1.37 will want 2.x."""
    missing = [
        package
        for package, probe in (
            ("containerd", shutil.which("containerd")),
            ("containernetworking-plugins", Path("/usr/lib/cni/bridge").exists() or None),
        )
        if not probe
    ]
    if not missing:
        return
    print(f"installing {' '.join(missing)} (apt-get)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def pause_archive(pause_binary: Path, out: Path) -> Path:
    """The pod sandbox image (built here: there is no registry to pull one from)."""
    ociarchive.write(
        out,
        PAUSE_IMAGE,
        [ociarchive.File(pause_binary, "/pause")],
        entrypoint=["/pause"],
    )
    return out


# ----------------------------------------------------------------------- configs
def containerd_config(folder: Path) -> str:
    return f"""\
# containerd 1.6 for the testbed's node: everything it writes lives under {folder}, but
# /run/containerd (hard-coded), which is a tmpfs in the node's mount namespace.
version = 2
root = "{folder}/containerd/root"
state = "{folder}/containerd/state"
oom_score = 0

[grpc]
  address = "{folder}/containerd.sock"

[ttrpc]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{folder}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # Root here lacks CAP_SYS_RESOURCE: nobody may lower oom_score_adj, and runc dies when
  # the kubelet asks -998 for a sandbox. Clamp scores to containerd's own instead.
  restrict_oom_score_adj = true
  enable_selinux = false
  # No hugetlb hierarchy is mounted on this machine.
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # crun cannot run on this host's hybrid cgroups.
        BinaryName = "{shutil.which("runc") or "/usr/sbin/runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{folder}/cni/net.d"
    max_conf_num = 1
"""


def cni_config(folder: Path) -> dict[str, Any]:
    """The bridge plugin on a bridge ``up`` made itself (so no ``isGateway``: the plugin
    would then also turn on IP forwarding); pods route only the service range to it."""
    return {
        "cniVersion": "1.0.0",
        "name": "zetanode",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(POD_SUBNET), "gateway": GATEWAY_IP}]],
                    "routes": [{"dst": SERVICE_CLUSTER_IP_RANGE, "gw": GATEWAY_IP}],
                    "dataDir": str(folder / "cni" / "ipam"),
                },
            }
        ],
    }


def kubelet_config(folder: Path, *, port: int, healthz_port: int) -> dict[str, Any]:
    socket = f"unix://{folder}/containerd.sock"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Kubernetes 1.35+ refuses cgroup v1 (this host's) unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "cgroupsPerQOS": True,
        "failSwapOn": False,
        # No KUBE-FIREWALL chains on the host.
        "makeIPTablesUtilChains": False,
        "containerRuntimeEndpoint": socket,
        "imageServiceEndpoint": socket,
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The apiserver has no kubelet client certificate here (logs, exec): loopback only.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "volumePluginDir": str(folder / "volume-plugins"),
        # Imported images cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared machine: evict only when really short.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "syncFrequency": SYNC_FREQUENCY,
        "maxPods": 50,
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
    }


# --------------------------------------------------------------------- the node
@dataclass(frozen=True, slots=True)
class Layout:
    """Where a node keeps what it made, so that ``down`` (maybe in another process)
    undoes exactly that."""

    cgroups: tuple[str, ...]
    mountpoints: tuple[str, ...]
    mount_namespace: str
    inner: ProcessRecord


class Node:
    """The node of one testbed, found through its folder (``<state dir>/node``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def _layout_file(self) -> Path:
        return self.folder / "layout.json"

    @property
    def _processes_file(self) -> Path:
        return self.folder / "processes.json"

    def exists(self) -> bool:
        return self._layout_file.exists()

    def timings(self) -> Timings:
        return Timings(**json.loads((self.folder / "timings.json").read_text()))

    def up(
        self,
        *,
        kubelet: Path,
        kubeconfig: Path,
        images: Sequence[Path],
        is_ready: Callable[[], bool],
        timeout: float = READY_TIMEOUT,
    ) -> Timings:
        """Start containerd and the kubelet, import ``images``, wait until ``is_ready()``.

        On failure the caller runs ``down``: everything made so far is recorded first.
        """
        started = time.monotonic()
        folder = self.folder
        for sub in ("cni/net.d", "cni/ipam", "var-lib-kubelet", "var-log", "var-lib-cni",
                    "netns", "volume-plugins", "containerd", "sysctl", "images"):  # fmt: skip
            (folder / sub).mkdir(parents=True, exist_ok=True)
        port, healthz = free_ports(2)
        (folder / "containerd.toml").write_text(containerd_config(folder))
        (folder / "kubelet.yaml").write_text(
            yaml.safe_dump(kubelet_config(folder, port=port, healthz_port=healthz))
        )
        (folder / "cni/net.d/10-zetanode.conflist").write_text(json.dumps(cni_config(folder)))
        (folder / "inner.json").write_text(
            json.dumps(
                {
                    "kubelet": str(kubelet),
                    "kubeconfig": str(kubeconfig),
                    "images": [str(image) for image in images],
                }
            )
        )
        cgroups = _make_cgroups()
        mountpoints = _make_mountpoints()
        self._save_partial(cgroups, mountpoints)
        _make_bridge()
        inner = processes.spawn(
            "node",
            # The first process of a private mount namespace: every mount made in it (the
            # kubelet's, containerd's, runc's) ends with it.
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-m",
                "zeta_testbed.node",
                str(folder),
            ],
            log_dir=folder,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        namespace = _mount_namespace(inner.pid)
        layout = Layout(cgroups, mountpoints, namespace, inner)
        self._layout_file.write_text(json.dumps(asdict(layout)))
        deadline = time.monotonic() + timeout
        while not is_ready():
            if not processes.is_running(inner):
                raise NodeError(f"the node's processes exited; see {folder}/*.log")
            if time.monotonic() > deadline:
                raise NodeError(f"node {NODE_NAME} not Ready after {timeout:.0f} s; see {folder}")
            time.sleep(0.2)
        inner_timings = json.loads((folder / "inner-timings.json").read_text())
        timings = Timings(
            containerd=inner_timings["containerd"],
            images=inner_timings["images"],
            ready=time.monotonic() - started,
        )
        (folder / "timings.json").write_text(json.dumps(asdict(timings)))
        return timings

    def _save_partial(self, cgroups: tuple[str, ...], mountpoints: tuple[str, ...]) -> None:
        # Before anything can fail: `down` must find what to remove.
        placeholder = ProcessRecord("node", 0, -2, (), "")
        self._layout_file.write_text(
            json.dumps(asdict(Layout(cgroups, mountpoints, "", placeholder)))
        )

    def layout(self) -> Layout:
        raw = json.loads(self._layout_file.read_text())
        inner = ProcessRecord(**{**raw["inner"], "argv": tuple(raw["inner"]["argv"])})
        return Layout(
            tuple(raw["cgroups"]), tuple(raw["mountpoints"]), raw["mount_namespace"], inner
        )

    def node_processes(self) -> dict[str, ProcessRecord]:
        """containerd and the kubelet, as the namespace's first process recorded them."""
        if not self._processes_file.exists():
            return {}
        raw = json.loads(self._processes_file.read_text())
        return {
            name: ProcessRecord(**{**obj, "argv": tuple(obj["argv"])}) for name, obj in raw.items()
        }

    def down(self, *, delete_pods: Callable[[], None] | None = None) -> list[str]:
        """Stop the node and remove what it made; returns what could not be removed.

        ``delete_pods`` (called while the kubelet still runs) deletes the node's pods
        through the API, so the kubelet stops their containers itself.
        """
        if not self.exists():
            return []
        layout = self.layout()
        running = self.node_processes()
        kubelet = running.get("kubelet")
        if delete_pods is not None and kubelet is not None and processes.is_running(kubelet):
            with contextlib.suppress(Exception):
                delete_pods()
        if kubelet is not None:
            processes.stop(kubelet, grace=STOP_GRACE)
        # Containers the kubelet left behind: nothing may keep the cgroups busy.
        for pid in _cgroup_pids(layout.cgroups):
            _kill(pid)
        if "containerd" in running:
            processes.stop(running["containerd"], grace=STOP_GRACE)
        # The runc shims outlive containerd; they are the namespace's other processes.
        for pid in _namespace_pids(layout.mount_namespace):
            if pid != layout.inner.pid:
                _kill(pid)
        processes.stop(layout.inner, grace=5)
        problems = _remove_cgroups(layout.cgroups)
        for path in reversed(layout.mountpoints):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        if (Path("/sys/class/net") / BRIDGE).exists():
            subprocess.run(["ip", "link", "del", BRIDGE], check=False)
        problems += [
            f"mount left: {line}"
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if f" {self.folder}" in line
        ]
        self._layout_file.unlink()
        return problems


# ------------------------------------------------------------------ host changes
def _hierarchies() -> Iterator[Path]:
    """The cgroup v1 hierarchies (each controller mounted once; ``unified`` is empty here)."""
    for path in sorted(CGROUP_FS.iterdir()):
        if path.name != "unified" and not path.is_symlink() and os.path.ismount(path):
            yield path


def _make_cgroups() -> tuple[str, ...]:
    made = []
    for hierarchy in _hierarchies():
        path = hierarchy / CGROUP_ROOT
        if not path.exists():
            path.mkdir()
            made.append(str(path))
        # A new cpuset cgroup has no CPUs or memory nodes: nothing could run in it.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists():
                (path / name).write_text((hierarchy / name).read_text())
    # runc makes the same path in the unified hierarchy of this hybrid host.
    made.append(str(CGROUP_FS / "unified" / CGROUP_ROOT))
    return tuple(made)


def _make_mountpoints() -> tuple[str, ...]:
    made = []
    for path in HOST_MOUNTPOINTS:
        if not os.path.isdir(path):
            os.makedirs(path)
            made.append(path)
    return tuple(made)


def _make_bridge() -> None:
    prefix = POD_SUBNET.prefixlen
    for argv in (
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", f"{GATEWAY_IP}/{prefix}", "dev", BRIDGE],
        ["ip", "addr", "add", f"{KUBERNETES_SERVICE_IP}/32", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ):
        subprocess.run(argv, check=True)


def _mount_namespace(pid: int) -> str:
    # unshare replaces itself with the inner process once the namespace exists.
    deadline = time.monotonic() + 10
    mine = os.readlink("/proc/self/ns/mnt")
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            namespace = os.readlink(f"/proc/{pid}/ns/mnt")
            if namespace != mine:
                return namespace
        time.sleep(0.02)
    raise NodeError("the node's mount namespace did not appear")


def _namespace_pids(namespace: str) -> list[int]:
    if not namespace:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "mnt") == namespace:
                    found.append(int(entry.name))
    return found


def _cgroup_pids(cgroups: Sequence[str]) -> set[int]:
    pids: set[int] = set()
    for root in cgroups:
        for procs in Path(root).rglob("cgroup.procs") if Path(root).is_dir() else ():
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _remove_cgroups(cgroups: Sequence[str]) -> list[str]:
    problems = []
    for root in reversed(cgroups):
        path = Path(root)
        if not path.is_dir():
            continue
        # Deepest first: kubepods/burstable/pod<uid>/<container> ...
        for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=_depth, reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        try:
            path.rmdir()
        except OSError as exc:
            problems.append(f"cgroup {path}: {exc}")
    return problems


def _depth(path: Path) -> int:
    return len(path.parts)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------- inside the namespace
def _inner(folder: Path) -> None:
    """The mount namespace's first process: mount, start containerd, import the images,
    start the kubelet, then wait until stopped."""
    config = json.loads((folder / "inner.json").read_text())
    # mount(8) would record options in the host's /run/mount/utab.
    os.environ["LIBMOUNT_UTAB"] = str(folder / "utab")
    _mount(["-t", "tmpfs", "-o", "mode=0711,size=64m", "zetanode-containerd", "/run/containerd"])
    binds = {
        "var-lib-kubelet": "/var/lib/kubelet",
        "var-log": "/var/log",
        "netns": "/run/netns",
        "var-lib-cni": "/var/lib/cni",
    }
    for source, target in binds.items():
        _mount(["--bind", str(folder / source), target])
    for key, wanted in KUBELET_SYSCTLS.items():
        current = Path("/proc/sys", key).read_text().strip()
        if current != wanted:
            shadow = folder / "sysctl" / key.replace("/", ".")
            shadow.write_text(wanted + "\n")
            _mount(["--bind", str(shadow), f"/proc/sys/{key}"])
            _mount(["-o", "remount,bind,ro", f"/proc/sys/{key}"])
    socket = folder / "containerd.sock"
    started = time.monotonic()
    records: dict[str, ProcessRecord] = {}
    records["containerd"] = processes.spawn(
        "containerd", ["containerd", "--config", str(folder / "containerd.toml")], log_dir=folder
    )
    _save_records(folder, records)
    processes.wait_ready(
        records["containerd"],
        lambda: _ctr(socket, "version").returncode == 0,
        timeout=60,
        what="containerd",
    )
    containerd_seconds = time.monotonic() - started
    started = time.monotonic()
    for image in config["images"]:
        done = _ctr(socket, "-n", "k8s.io", "images", "import", image)
        if done.returncode != 0:
            raise NodeError(f"ctr images import {image} failed: {done.stderr}")
    images_seconds = time.monotonic() - started
    (folder / "inner-timings.json").write_text(
        json.dumps({"containerd": containerd_seconds, "images": images_seconds})
    )
    records["kubelet"] = processes.spawn(
        "kubelet",
        [config["kubelet"], f"--config={folder / 'kubelet.yaml'}",
         f"--kubeconfig={config['kubeconfig']}", f"--hostname-override={NODE_NAME}", "--v=1"],
        log_dir=folder,
    )  # fmt: skip
    _save_records(folder, records)
    # `down` stops the kubelet and containerd by PID first; this process ends last, at
    # its SIGTERM (default action), and the namespace with it.
    while True:
        signal.pause()


def _mount(args: list[str]) -> None:
    subprocess.run(["mount", "-n", *args], check=True)


def _ctr(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _save_records(folder: Path, records: Mapping[str, ProcessRecord]) -> None:
    (folder / "processes.json").write_text(
        json.dumps({name: asdict(record) for name, record in records.items()})
    )


if __name__ == "__main__":
    _inner(Path(sys.argv[1]))
