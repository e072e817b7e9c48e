"""The Go programs the testbed runs, built from their official modules and cached.

Each program is built from a small wrapper module under ``testbed/go/<name>/`` that
pins the upstream release (``go install`` refuses modules with replace directives,
so a plain ``go install k8s.io/kubernetes/cmd/kube-apiserver@v1.x`` cannot work; see
``testbed/README.md``). Binaries go to a cache outside the repository, keyed by the
pinned version and a hash of the wrapper module, so a second ``make setup`` builds
nothing and a changed pin builds afresh.

Users who already have envtest binaries can point ``KUBEBUILDER_ASSETS`` at them
(kube-apiserver, etcd, kubectl), or name single files with ``TEST_ASSET_KUBE_APISERVER``,
``TEST_ASSET_ETCD`` and ``TEST_ASSET_KUBECTL``: the controller-runtime envtest convention.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent.parent / "go"
"""Where the wrapper modules live (``testbed/go``)."""
LOCAL_VERSION = "v0.0.0"
"""The version of a module of our own; its cache key still changes with its source."""


@dataclass(frozen=True, slots=True)
class GoTool:
    """One wrapper module and the programs it builds."""

    name: str
    """Folder under ``testbed/go`` and first part of the cache key."""
    module: str
    """The upstream module whose pinned version names the build; empty for a module of
    our own that pins nothing (its version is then ``LOCAL_VERSION``)."""
    packages: Mapping[str, str]
    """Binary name -> Go package path to build (``.`` for the wrapper's own main)."""
    ldflags: tuple[str, ...] = ()
    """Extra ``-X`` flags; ``{version}`` is replaced by the pinned version."""

    @property
    def module_dir(self) -> Path:
        return GO_DIR / self.name

    def version(self) -> str:
        """The pinned upstream version, read from the wrapper's go.mod (one source of truth)."""
        if not self.module:
            return LOCAL_VERSION
        text = (self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(self.module)}\s+(v\S+)", text, re.M)
        if match is None:
            raise ToolError(f"{self.module_dir}/go.mod does not require {self.module}")
        return match.group(1)

    def cache_key(self) -> str:
        digest = hashlib.sha256()
        for file in sorted(self.module_dir.iterdir()):
            if file.is_file():
                digest.update(file.name.encode())
                digest.update(file.read_bytes())
        return f"{self.name}-{self.version()}-{digest.hexdigest()[:10]}"


def _k8s_version_flags() -> tuple[str, ...]:
    # Without these the binaries report v0.0.0-master+$Format:%H$, which breaks helm's
    # kubeVersion checks and makes kubectl warn about version skew.
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={{version}}",
            f"-X {pkg}.gitMajor={{major}}",
            f"-X {pkg}.gitMinor={{minor}}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


KUBERNETES = GoTool(
    name="kubernetes",
    module="k8s.io/kubernetes",
    packages={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        # The node of `zeta-testbed up --node`: its kubelet, and the scheduler that binds
        # the chart's pods to it.
        "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    },
    ldflags=_k8s_version_flags(),
)
ETCD = GoTool(name="etcd", module="go.etcd.io/etcd/server/v3", packages={"etcd": "."})
PROMETHEUS = GoTool(
    name="prometheus",
    module="github.com/prometheus/prometheus",
    packages={"prometheus": "github.com/prometheus/prometheus/cmd/prometheus"},
)
HELM = GoTool(
    name="helm",
    module="helm.sh/helm/v3",
    packages={"helm": "helm.sh/helm/v3/cmd/helm"},
    ldflags=("-X helm.sh/helm/v3/internal/version.version={version}",),
)
PAUSE = GoTool(name="pause", module="", packages={"pause": "."})
"""The pod sandbox program of ``zeta-testbed up --node`` (no registry to pull one from)."""
TOOLS: tuple[GoTool, ...] = (ETCD, KUBERNETES, PROMETHEUS, HELM, PAUSE)

# envtest's environment variables, per binary.
_ENVTEST_OVERRIDES = {
    "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
    "etcd": "TEST_ASSET_ETCD",
    "kubectl": "TEST_ASSET_KUBECTL",
}


class ToolError(RuntimeError):
    """A Go tool is missing or failed to build."""


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    """Where built binaries live: ``$ZETA_CACHE_DIR`` or ``$XDG_CACHE_HOME/zeta-router``."""
    if "ZETA_CACHE_DIR" in env:
        return Path(env["ZETA_CACHE_DIR"])
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "zeta-router"


def _tool_for(binary: str) -> GoTool:
    for tool in TOOLS:
        if binary in tool.packages:
            return tool
    raise ToolError(f"no Go tool builds {binary!r}")


def built_path(binary: str, env: Mapping[str, str] = os.environ) -> Path:
    """Where the cached build of ``binary`` is (whether or not it exists yet)."""
    tool = _tool_for(binary)
    return cache_root(env) / "bin" / tool.cache_key() / binary


def locate(binary: str, env: Mapping[str, str] = os.environ) -> Path:
    """The binary to run: a user's envtest asset if given, else our cached build."""
    override = _ENVTEST_OVERRIDES.get(binary)
    if override and env.get(override):
        return _existing(Path(env[override]), override)
    if override and env.get("KUBEBUILDER_ASSETS"):
        candidate = Path(env["KUBEBUILDER_ASSETS"]) / binary
        if candidate.exists():
            return candidate
    path = built_path(binary, env)
    if not path.exists():
        raise ToolError(f"{binary} is not built yet ({path}); run `make setup`")
    return path


def _existing(path: Path, source: str) -> Path:
    if not path.is_file():
        raise ToolError(f"{source} points at {path}, which is not a file")
    return path


@dataclass(frozen=True, slots=True)
class BuildResult:
    tool: str
    key: str
    seconds: float
    built: bool
    """False when the cache already had it."""


def build(tool: GoTool, env: Mapping[str, str] = os.environ) -> BuildResult:
    """Build ``tool`` into the cache unless it is there already.

    Builds into a temporary folder and renames it into place, so an interrupted build
    never leaves a half-filled cache entry behind.
    """
    key = tool.cache_key()
    target = cache_root(env) / "bin" / key
    if all((target / binary).exists() for binary in tool.packages):
        return BuildResult(tool.name, key, 0.0, built=False)
    if shutil.which("go", path=env.get("PATH")) is None:
        raise ToolError("the Go toolchain is needed to build the testbed's tools: install Go")
    version = tool.version()
    major, minor = _major_minor(version)
    ldflags = " ".join(
        ["-s", "-w"]
        + [flag.format(version=version, major=major, minor=minor) for flag in tool.ldflags]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
    try:
        for binary, package in tool.packages.items():
            _run_go(
                ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp / binary), package],
                cwd=tool.module_dir,
                env={**env, "CGO_ENABLED": "0"},
            )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(tool.name, key, time.monotonic() - started, built=True)


def build_all(
    tools: Iterable[GoTool] = TOOLS, env: Mapping[str, str] = os.environ
) -> list[BuildResult]:
    return [build(tool, env) for tool in tools]


def _run_go(argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> None:
    completed = subprocess.run(argv, cwd=cwd, env=dict(env), check=False)
    if completed.returncode != 0:
        raise ToolError(f"`{' '.join(argv)}` in {cwd} failed with exit code {completed.returncode}")


def _major_minor(version: str) -> tuple[str, str]:
    match = re.match(r"v(\d+)\.(\d+)", version)
    if match is None:
        raise ToolError(f"cannot read major/minor from version {version!r}")
    return match.group(1), match.group(2)
