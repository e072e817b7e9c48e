"""Command line of ``zeta-testbed``: build, up, status, pods, down."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from zeta_testbed import pods, tools
from zeta_testbed.processes import StartError
from zeta_testbed.testbed import DEFAULT_NAMESPACE, Testbed, TestbedError, default_state_dir

IMAGE_DIR = Path(__file__).resolve().parents[2] / "build" / "image"
"""Where `make image` (images/build.sh) leaves the project's image archive."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except (TestbedError, tools.ToolError, StartError, ValueError) as exc:
        print(f"zeta-testbed: {exc}", file=sys.stderr)
        return 1
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zeta-testbed",
        description="A local Kubernetes control plane, Prometheus and simulated model pods.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build the Go tools into the cache (idempotent)")
    build.set_defaults(run=_build)

    up = commands.add_parser("up", help="start a testbed and return once every pod is scraped")
    _state_dir(up)
    up.add_argument(
        "--pods",
        type=_pod_counts,
        default="4b=2,7b=2,14b=1",
        help="pods per model size, e.g. 4b=2,7b=2,14b=1 (the default)",
    )
    up.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="namespace of the model pods")
    up.add_argument("--backend", choices=pods.BACKENDS, default="zeta-sim")
    up.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="run the simulated models this many times faster than real time",
    )
    up.add_argument(
        "--prefix-caching",
        action="store_true",
        help="simulated pods cache prompt prefixes as vLLM does (off by default, so that "
        "benchmarks recorded without it replay alike)",
    )
    up.add_argument(
        "--node",
        action="store_true",
        help="also a real node: kubelet, containerd (installed from Debian when missing) "
        "and kube-scheduler; root only",
    )
    up.add_argument(
        "--node-image",
        type=Path,
        action="append",
        help="an OCI archive to import into the node (repeatable); default: what "
        "`make image` left in build/image/",
    )
    up.set_defaults(run=_up)

    status = commands.add_parser("status", help="what the testbed runs")
    _state_dir(status)
    status.set_defaults(run=_status)

    add = commands.add_parser("add-pod", help="add a model pod to a running testbed")
    _state_dir(add)
    add.add_argument("size", choices=pods.SIZES)
    add.add_argument("--namespace", help="default: the testbed's namespace")
    add.add_argument("--not-ready", action="store_true", help="report the pod not Ready")
    add.set_defaults(run=_add_pod)

    remove = commands.add_parser("remove-pod", help="delete a model pod and stop its simulator")
    _state_dir(remove)
    remove.add_argument("name")
    remove.add_argument("--namespace", help="default: the testbed's namespace")
    remove.set_defaults(run=_remove_pod)

    down = commands.add_parser("down", help="stop everything the testbed started, remove its state")
    _state_dir(down)
    down.set_defaults(run=_down)
    return parser


def _pod_counts(text: str) -> dict[str, int]:
    try:
        return pods.parse_pod_counts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="where the testbed keeps its state (default: $ZETA_TESTBED_DIR or .testbed)",
    )


def _build(args: argparse.Namespace) -> int:
    for tool in tools.TOOLS:
        print(f"{tool.name} {tool.version()}: ", end="", flush=True)
        result = tools.build(tool)
        print(f"built in {result.seconds:.0f} s" if result.built else "cached", flush=True)
    return 0


def _up(args: argparse.Namespace) -> int:
    testbed = Testbed(args.state_dir)
    started = time.monotonic()
    testbed.up(
        args.pods,
        namespace=args.namespace,
        backend=args.backend,
        time_scale=args.time_scale,
        prefix_caching=args.prefix_caching,
        with_node=args.node,
        node_images=args.node_image or sorted(IMAGE_DIR.glob("*.oci.tar")),
    )
    elapsed = time.monotonic() - started
    print(testbed.env_script(), end="")
    print(
        f"# testbed up in {elapsed:.1f} s with {len(testbed.pods())} model pods; "
        f"`source {testbed.env_file}` to use it",
        file=sys.stderr,
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    testbed = Testbed(args.state_dir)
    if not testbed.exists():
        print(f"no testbed in {args.state_dir}")
        return 1
    rows = testbed.status()
    for name, pid, running in rows:
        print(f"{'running' if running else 'stopped':8} {pid:>8}  {name}")
    for pod in testbed.pods():
        print(f"pod {pod.namespace}/{pod.name} ({pod.size}) at {pod.address}")
    return 0 if all(running for _, _, running in rows) else 1


def _add_pod(args: argparse.Namespace) -> int:
    pod = Testbed(args.state_dir).add_pod(
        args.size, namespace=args.namespace, ready=not args.not_ready
    )
    print(f"{pod.namespace}/{pod.name} at {pod.address}")
    return 0


def _remove_pod(args: argparse.Namespace) -> int:
    Testbed(args.state_dir).remove_pod(args.name, args.namespace)
    return 0


def _down(args: argparse.Namespace) -> int:
    Testbed(args.state_dir).down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
