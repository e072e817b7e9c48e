"""``zeta-operator``: ``kopf run`` with our registry, our settings, and our flags.

kopf's own CLI loads handlers from a file or module and its settings from a startup
handler; wrapping :func:`kopf.run` instead lets the flags below become one typed
:class:`OperatorSettings`, built once and handed to every handler through kopf's memo.
"""

import argparse
import logging
import os
import random
import socket
import sys

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from zeta_operator.handlers import build_registry
from zeta_operator.runtime import Runtime
from zeta_operator.settings import OperatorSettings
from zeta_operator.telemetry import parse_address

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> OperatorSettings:
    """The flags as settings; bad combinations exit with a clear message (status 2)."""
    parser = argparse.ArgumentParser(
        prog="zeta-operator",
        description="Zeta Router operator: reads per-pod load from Prometheus and publishes "
        "weights for the ZetaRouters it watches as routing tables (ConfigMaps).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; glob patterns as in kopf)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone", action="store_true", help="no peering: act alone (the default)"
    )
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="take part in this kopf peering (KopfPeering per namespace, or "
        "ClusterKopfPeering with --all-namespaces): only the highest priority acts",
    )
    parser.add_argument(
        "--priority",
        type=int,
        help="peering priority (default: random, so identical replicas never tie)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a silent peer blocks the others (default: 60)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve the operator's own Prometheus metrics on /metrics there, e.g. 0.0.0.0:9090",
    )
    parser.add_argument(
        "--rate-window",
        default="1m",
        metavar="DURATION",
        help="rate() range of the default latency queries (default: 1m)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.peering_lifetime < 1:
        parser.error("--peering-lifetime must be at least 1 second")
    metrics_address = None
    if args.metrics is not None:
        try:
            metrics_address = parse_address(args.metrics)
        except ValueError as exc:
            parser.error(f"--metrics: {exc}")
    if not args.namespace and not args.all_namespaces:
        parser.error("say what to watch: --namespace NS (repeatable) or --all-namespaces")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    return OperatorSettings(
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        standalone=args.peering is None,
        peering_name=args.peering or "zeta-operator",
        priority=args.priority,
        peering_lifetime=args.peering_lifetime,
        liveness_endpoint=args.liveness,
        metrics_address=metrics_address,
        rate_window=args.rate_window,
        identity=f"{socket.gethostname()}/{os.getpid()}",
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        # In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config.
        k8s_config.load_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException as exc:
        print(f"zeta-operator: no Kubernetes credentials: {exc}", file=sys.stderr)
        return 1
    runtime = Runtime(settings=settings, api=k8s.ApiClient())
    priority = settings.priority
    if priority is None:
        priority = random.SystemRandom().randint(1, 2**31)
    kopf.run(
        registry=build_registry(peering_lifetime=settings.peering_lifetime),
        standalone=settings.standalone,
        # A peering name makes peering mandatory in kopf, whatever `standalone` says.
        peering_name=None if settings.standalone else settings.peering_name,
        priority=priority,
        clusterwide=settings.all_namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint,
        memo=kopf.Memo(runtime=runtime),
    )
    return 0
