"""The Helm chart: it lints, rejects typos, mirrors the plain manifests, and installs.

The plain manifests in ``manifests/`` are the ones proven on the testbed (their RBAC runs
the real processes with the ServiceAccounts' tokens), so the chart is held to them:
byte-identical CRDs, the same RBAC rules, the same container args and security settings.
Then a real ``helm install`` into the test's namespace, and ``helm uninstall``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_testbed.testbed import Testbed

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts/zeta-router"
MANIFESTS = ROOT / "manifests"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.36.0"  # helm template's default (1.20) is older than the chart's kubeVersion

Helm = Callable[..., subprocess.CompletedProcess[str]]
Docs = list[dict[str, Any]]


@pytest.fixture
def helm(testbed: Testbed, tmp_path: Path) -> Helm:
    """The testbed's helm, with its config, cache and data under tmp_path (never ~)."""
    home = tmp_path / "helm-home"
    env = {
        "PATH": testbed.env()["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(testbed.kubeconfig),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [testbed.env()["ZETA_HELM"], *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{done.stderr}")
        return done

    return run


def render(helm: Helm, *sets: str, namespace: str = "llm", values: Path | None = None) -> Docs:
    args = ["template", "zr", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    if values:
        args += ["--values", str(values)]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def one(docs: Docs, kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def of(docs: Docs, kind: str, component: str) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == kind and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]


def plain(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MANIFESTS / path).read_text())
    return doc


def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# ------------------------------------------------------------------ static


def test_the_chart_crds_are_the_manifests_crds_byte_for_byte() -> None:
    # `make crd` writes manifests/crds/; a regenerated CRD must be copied into the chart.
    names = sorted(p.name for p in (MANIFESTS / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == names
    for name in names:
        copy, source = CHART / "crds" / name, MANIFESTS / "crds" / name
        assert copy.read_bytes() == source.read_bytes(), f"drifted: cp {source} {copy}"


@pytest.mark.parametrize(
    "sets", [[], ["operator.watchNamespaces={team-a,team-b}"]], ids=["all-namespaces", "watch"]
)
def test_helm_lint_passes(helm: Helm, sets: list[str]) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    out = helm(*args).stdout
    assert "0 chart(s) failed" in out, out


def test_the_schema_rejects_a_typo(helm: Helm) -> None:
    done = helm(
        "template", "zr", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "operator.replicaz=3",
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "replicaz" in done.stderr, done.stderr


def test_the_operator_rbac_is_the_plain_clusterrole(helm: Helm) -> None:
    docs = render(helm)
    role = one(docs, "ClusterRole")
    assert role["rules"] == plain("operator/clusterrole.yaml")["rules"]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (subject,) = binding["subjects"]
    (account,) = of(docs, "ServiceAccount", "operator")
    assert (subject["name"], subject["namespace"]) == (account["metadata"]["name"], "llm")
    assert not [d for d in docs if d["kind"] == "KopfPeering"]
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == role["metadata"]["name"]


def test_watched_namespaces_get_roles_with_the_same_rules(helm: Helm) -> None:
    docs = render(helm, "operator.watchNamespaces={team-a,team-b}")
    cluster_role = one(docs, "ClusterRole")
    roles = of(docs, "Role", "operator")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    # The union is the plain ClusterRole's, less ClusterKopfPeerings (a namespaced
    # operator peers through a KopfPeering in each namespace).
    everything = triples(plain("operator/clusterrole.yaml")["rules"])
    expected = {t for t in everything if t[1] != "clusterkopfpeerings"}
    for role in roles:
        assert triples(role["rules"]) | triples(cluster_role["rules"]) == expected
    # Only what cannot be namespaced stays cluster-wide.
    assert {t[1] for t in triples(cluster_role["rules"])} == {
        "customresourcedefinitions",
        "namespaces",
    }
    bindings = of(docs, "RoleBinding", "operator")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == "llm"
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    (deployment,) = of(docs, "Deployment", "operator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args


def test_the_gateway_role_is_the_plain_role(helm: Helm) -> None:
    docs = render(helm)
    (role,) = of(docs, "Role", "gateway")
    assert role["rules"] == plain("gateway/role.yaml")["rules"]
    (binding,) = of(docs, "RoleBinding", "gateway")
    (account,) = of(docs, "ServiceAccount", "gateway")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]


# What must match the plain Deployments field for field; names and labels may differ.
POD_FIELDS = ("automountServiceAccountToken", "securityContext", "terminationGracePeriodSeconds")
CONTAINER_FIELDS = (
    "image",
    "imagePullPolicy",
    "command",
    "env",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
)


@pytest.mark.parametrize("component", ["operator", "gateway"])
def test_the_deployments_match_the_plain_ones(helm: Helm, component: str) -> None:
    docs = render(helm)
    (chart,) = of(docs, "Deployment", component)
    mine = plain(f"{component}/deployment.yaml")
    assert chart["spec"]["replicas"] == mine["spec"]["replicas"]
    pod, plain_pod = chart["spec"]["template"]["spec"], mine["spec"]["template"]["spec"]
    for field in POD_FIELDS:
        assert pod.get(field) == plain_pod.get(field), field
    assert pod.get("volumes") == plain_pod.get("volumes")
    (container,) = pod["containers"]
    (plain_container,) = plain_pod["containers"]
    for field in CONTAINER_FIELDS:
        assert container.get(field) == plain_container.get(field), field
    # Args modulo names: the peering object is named for the release.
    peering = f"--peering={one(docs, 'ClusterKopfPeering')['metadata']['name']}"
    args = [a if a != peering else "--peering=zeta-operator" for a in container["args"]]
    assert args == plain_container["args"]


def test_values_move_the_flags(helm: Helm) -> None:
    docs = render(
        helm,
        "gateway.routingTable=team-table",
        "gateway.port=8000",
        "gateway.adminPort=9100",
        "operator.peering.enabled=false",
        "operator.replicas=1",
        "image.tag=dev",
    )
    (gateway,) = of(docs, "Deployment", "gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == [
        "--configmap=$(POD_NAMESPACE)/team-table",
        "--port=8000",
        "--admin-port=9100",
    ]
    assert container["image"] == "ghcr.io/zeta-router/zeta-router:dev"
    assert gateway["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    (operator,) = of(docs, "Deployment", "operator")
    assert "--standalone" in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [d for d in docs if d["kind"].endswith("KopfPeering")]


def test_names_are_cut_to_63_characters(helm: Helm) -> None:
    docs = render(helm, f"fullnameOverride={'x' * 80}")
    names = {d["metadata"]["name"] for d in docs}
    assert all(len(n) <= 63 for n in names), names
    assert any(n.endswith("-operator") for n in names)
    assert any(n.endswith("-gateway") for n in names)


def scenario(path: Path | None) -> str:
    return path.name.removesuffix("-values.yaml") if path else "defaults"


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=scenario)
def test_lint_and_template_are_clean_without_a_cluster(helm: Helm, values: Path | None) -> None:
    # No --kube-version: GitOps tools render with helm's defaults and no cluster.
    extra = ["--values", str(values)] if values else []
    lint = helm("lint", str(CHART), "--strict", *extra)
    assert "0 chart(s) failed" in lint.stdout, lint.stdout
    assert "[WARNING]" not in lint.stdout, lint.stdout
    assert "[ERROR]" not in lint.stdout, lint.stdout
    done = helm("template", "zr", str(CHART), "--namespace", "llm", *extra)
    assert not done.stderr, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert {d["kind"] for d in docs} >= {"Service", "Deployment"}


def test_scenarios_cover_the_optional_objects() -> None:
    assert {scenario(p) for p in SCENARIOS} >= {"monitoring", "standalone", "gateway-only"}


def test_each_deployment_has_a_disruption_budget(helm: Helm) -> None:
    docs = render(helm)
    for component in ("operator", "gateway"):
        (deployment,) = of(docs, "Deployment", component)
        (budget,) = of(docs, "PodDisruptionBudget", component)
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
        assert budget["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in budget["spec"]
    docs = render(helm, values=CHART / "ci/standalone-values.yaml")
    budgets = {c: of(docs, "PodDisruptionBudget", c)[0]["spec"] for c in ("operator", "gateway")}
    assert budgets["operator"]["minAvailable"] == 0
    assert budgets["gateway"]["minAvailable"] == "50%"
    assert not [b for b in budgets.values() if "maxUnavailable" in b]
    docs = render(helm, "operator.podDisruptionBudget.enabled=false")
    assert not of(docs, "PodDisruptionBudget", "operator")


def test_the_gateway_rolls_out_without_losing_capacity(helm: Helm) -> None:
    docs = render(helm)
    (gateway,) = of(docs, "Deployment", "gateway")
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (operator,) = of(docs, "Deployment", "operator")
    assert "strategy" not in operator["spec"]  # Kubernetes' default unless set
    (service,) = of(docs, "Service", "gateway")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["admin"] == {"name": "admin", "port": 9090, "targetPort": "admin"}
    assert ports["http"]["targetPort"] == "http"


@pytest.mark.parametrize(
    ("sets", "workers"),
    [
        ((), ["--workers=1"]),  # the default request, 250m, and no CPU limit
        (("gateway.resources.requests.cpu=1500m",), ["--workers=2"]),
        (("gateway.resources.requests.cpu=3",), ["--workers=3"]),
        (("gateway.resources.limits.cpu=2",), []),  # the sidecar reads the limit itself
        (("gateway.resources.limits.cpu=2", "gateway.workers=4"), ["--workers=4"]),
    ],
)
def test_the_gateway_workers_follow_its_cpu(
    helm: Helm, sets: tuple[str, ...], workers: list[str]
) -> None:
    (gateway,) = of(render(helm, *sets), "Deployment", "gateway")
    args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--workers")] == workers


def test_monitoring_autoscaling_and_spread(helm: Helm) -> None:
    docs = render(helm, values=CHART / "ci/monitoring-values.yaml")
    (gateway,) = of(docs, "Deployment", "gateway")
    selector = gateway["spec"]["selector"]["matchLabels"]
    (service,) = of(docs, "Service", "gateway")
    monitor = one(docs, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin"]
    assert "admin" in {p["name"] for p in service["spec"]["ports"]}
    pods = one(docs, "PodMonitor")
    assert pods["spec"]["selector"]["matchLabels"] == selector
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert "admin" in {p["name"] for p in container["ports"]}
    assert "annotations" not in gateway["spec"]["template"]["metadata"]  # scrapeAnnotations off
    # The HPA owns the replica count: a Deployment that kept one would fight it.
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    assert "replicas" not in gateway["spec"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets["cpu"]["averageUtilization"] == 70
    assert targets["memory"]["averageUtilization"] == 80
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    for component in ("operator", "gateway"):
        (deployment,) = of(docs, "Deployment", component)
        (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert (
            spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        )
    # Off by default: the monitoring.coreos.com CRDs may not be there.
    defaults = render(helm)
    kinds = {d["kind"] for d in defaults}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "HorizontalPodAutoscaler"}


def test_autoscaling_needs_a_target(helm: Helm) -> None:
    # Both targets null would make an HPA with no metrics, which the apiserver refuses.
    sets = ["enabled=true", "targetCPUUtilizationPercentage=null"]
    args = [arg for value in sets for arg in ("--set", f"gateway.autoscaling.{value}")]
    done = helm("template", "zr", str(CHART), *args, check=False)
    assert done.returncode != 0
    assert "targetCPUUtilizationPercentage" in done.stderr, done.stderr


def test_the_helm_test_pod_asks_the_service_for_models(helm: Helm) -> None:
    docs = render(helm)
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (service,) = of(docs, "Service", "gateway")
    (container,) = pod["spec"]["containers"]
    url = f"http://{service['metadata']['name']}.llm.svc:80/v1/models"
    assert container["args"][-1] == url
    (gateway,) = of(docs, "Deployment", "gateway")
    assert container["image"] == gateway["spec"]["template"]["spec"]["containers"][0]["image"]
    # Restricted Pod Security, like the gateway it tests.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert not [d for d in render(helm, "test.enabled=false") if d["kind"] == "Pod"]


def test_the_chart_readme_is_generated_from_the_values() -> None:
    # --check also fails on a value with no `# --` comment (on it or a parent key).
    done = subprocess.run(
        [sys.executable, str(ROOT / "charts/values_readme.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for leaf in ("gateway.strategy", "gateway.autoscaling.enabled", "test.enabled"):
        assert f"| `{leaf}` |" in readme
    assert values["image"]["repository"] in readme


# ---------------------------------------------------------------- testbed


def _get(testbed: Testbed, kind: str, name: str, namespace: str | None = None) -> str:
    ns = ["-n", namespace] if namespace else []
    return testbed.kubectl("get", kind, name, *ns, "--ignore-not-found", "-o", "name").strip()


@pytest.mark.parametrize("watch", [False, True], ids=["all-namespaces", "watch"])
def test_helm_install_and_uninstall(
    testbed: Testbed, helm: Helm, namespace: str, watch: bool
) -> None:
    release = namespace  # unique per test, so cluster-scoped names never clash
    sets = ["--set", f"operator.watchNamespaces={{{namespace}}}"] if watch else []
    out = helm(
        "install", release, str(CHART),
        "--namespace", namespace, "--kubeconfig", str(testbed.kubeconfig), "--wait=false",
        *sets,
    ).stdout  # fmt: skip
    assert "STATUS: deployed" in out, out
    assert "kubectl get zr" in out  # NOTES.txt
    assert "never upgrades them" in out
    assert "kubectl apply --server-side -f charts/zeta-router/crds/" in out

    testbed.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s",
        "crd/zetarouters.zeta.dev", "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev",
    )  # fmt: skip
    operator, gateway = f"{release}-zeta-router-operator", f"{release}-zeta-router-gateway"
    namespaced = [
        ("deployment", operator),
        ("serviceaccount", operator),
        ("deployment", gateway),
        ("service", gateway),
        ("serviceaccount", gateway),
        ("role", gateway),
        ("rolebinding", gateway),
    ]
    if watch:
        namespaced += [("role", operator), ("rolebinding", operator), ("kopfpeering", operator)]
    cluster = [("clusterrole", operator), ("clusterrolebinding", operator)]
    if not watch:
        cluster.append(("clusterkopfpeering", operator))
    namespaced += [("poddisruptionbudget", operator), ("poddisruptionbudget", gateway)]
    for kind, name in namespaced:
        assert _get(testbed, kind, name, namespace), f"{kind}/{name} missing"
    for kind, name in cluster:
        assert _get(testbed, kind, name), f"{kind}/{name} missing"
    replicas = testbed.kubectl(
        "get", "deployment", operator, "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    )
    assert replicas == "2"

    helm("uninstall", release, "--namespace", namespace, "--kubeconfig", str(testbed.kubeconfig))
    for kind, name in namespaced:
        assert not _get(testbed, kind, name, namespace), f"{kind}/{name} left behind"
    for kind, name in cluster:
        assert not _get(testbed, kind, name), f"{kind}/{name} left behind"
    # Helm never deletes CRDs from crds/ (that would delete every ZetaRouter with them).
    assert _get(testbed, "crd", "zetarouters.zeta.dev")
