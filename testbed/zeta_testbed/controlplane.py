"""Command lines and readiness checks for etcd, kube-apiserver and kube-controller-manager.

The flags follow what controller-runtime's envtest passes to a local apiserver, plus
what a real cluster needs for this project: RBAC on (the operator's Role must be
right), service-account signing keys, and a controller manager for garbage collection
of owned objects and namespace deletion.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from zeta_testbed.pki import Pki

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
ADMIN_USER = "zeta-admin"


@dataclass(frozen=True, slots=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    prometheus: int


def etcd_argv(binary: Path, data_dir: Path, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=testbed",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=testbed={peer}",
        # A test cluster loses nothing worth an fsync per write; it saves seconds per run.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def write_token_file(folder: Path) -> tuple[Path, str]:
    """A static token for the admin user in group system:masters."""
    token = secrets.token_hex(24)
    path = folder / "tokens.csv"
    path.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    path.chmod(0o600)
    return path, token


def apiserver_argv(
    binary: Path, pki: Pki, token_file: Path, ports: Ports, *, node: bool = False
) -> list[str]:
    """``node``: a kubelet runs pods, so pods get ServiceAccount tokens (the admission
    plugin adds the projected volume the kubelet fills)."""
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--token-auth-file={token_file}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--allow-privileged=true",
        # Without a node no kubelet mounts tokens, so pods must not require one (as
        # envtest does).
        *([] if node else ["--disable-admission-plugins=ServiceAccount"]),
        "--v=0",
    ]


def controller_manager_argv(
    binary: Path, pki: Pki, kubeconfig: Path, cert_dir: Path, ports: Ports, *, node: bool = False
) -> list[str]:
    """``node``: also the controllers a real node needs (see ``NODE_CONTROLLERS``)."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        # No front proxy exists here: do not look for its client CA in kube-system.
        "--authentication-skip-lookup=true",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={cert_dir}",
        "--leader-elect=false",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        "--use-service-account-credentials=false",
        # Garbage collection (owner references) and namespace deletion are what tests need;
        # the workload controllers let users try Deployments too.
        "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,"
        "deployment,replicaset,endpointslice" + (NODE_CONTROLLERS if node else ""),
        "--v=0",
    ]


NODE_CONTROLLERS = ",nodelifecycle,root-ca-cert-publisher,podgc"
"""nodelifecycle lifts the not-ready taint the kubelet registers with (and marks pods of a
dead node); root-ca-cert-publisher writes the ``kube-root-ca.crt`` ConfigMap that every
pod's token volume reads; podgc deletes pods of a deleted node."""


def scheduler_argv(binary: Path, kubeconfig: Path) -> list[str]:
    """kube-scheduler for the node's pods; simulated pods name a scheduler nobody runs."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        # Nothing here reads its metrics or health endpoint: serve none.
        "--secure-port=0",
        "--v=0",
    ]


def write_kubeconfig(path: Path, *, server: str, ca_file: Path, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "zeta-testbed",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [
            {"name": "zeta-testbed", "context": {"cluster": "zeta-testbed", "user": ADMIN_USER}}
        ],
        "current-context": "zeta-testbed",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
