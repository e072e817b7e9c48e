"""The image under test and a way to run it with podman; every test here skips without them.

``ZETA_IMAGE`` names the image (default ``localhost/zeta-router:<chart appVersion>``, what
``make image`` builds). The tests never build it: ``make test-image`` does that first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# crun cannot start containers on this VM (hybrid cgroups), and runc cannot raise the
# hard nofile limit without CAP_SYS_RESOURCE, which root lacks here: README, "The image".
RUNTIME = os.environ.get("ZETA_OCI_RUNTIME", "/usr/sbin/runc")
RUN_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: the container image, run with podman")


def default_image() -> str:
    chart = (ROOT / "charts" / "zeta-router" / "Chart.yaml").read_text()
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', chart, re.MULTILINE)
    assert match, "Chart.yaml has no appVersion"
    return f"localhost/zeta-router:{match.group(1)}"


@dataclass(frozen=True)
class Podman:
    """``podman`` with the flags this machine needs, for one image."""

    image: str

    def base(self, *args: str) -> list[str]:
        return ["podman", "--runtime", RUNTIME, *args]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``podman run --rm --read-only`` to the end; ``args``: run flags, "--", the command."""
        flags, command = self._split(args)
        return subprocess.run(
            self.base("run", "--rm", "--read-only", *RUN_FLAGS, *flags, self.image, *command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> str:
        """``podman run --detach --read-only``; returns the container's id."""
        flags, command = self._split(args)
        out = subprocess.run(
            self.base("run", "--detach", "--read-only", *RUN_FLAGS, *flags, self.image, *command),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.strip()

    def stop(self, container: str, *, timeout: int = 20) -> tuple[int, str]:
        """Stop and remove one container this test started; returns its exit code and logs."""
        subprocess.run(
            self.base("stop", "--time", str(timeout), container),
            capture_output=True,
            timeout=timeout + 30,
            check=False,
        )
        code = subprocess.run(
            self.base("inspect", "--format", "{{.State.ExitCode}}", container),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        logs = self.logs(container)
        subprocess.run(self.base("rm", "--force", container), capture_output=True, check=False)
        return (int(code) if code.lstrip("-").isdigit() else -1), logs

    def logs(self, container: str) -> str:
        out = subprocess.run(
            self.base("logs", container), capture_output=True, text=True, timeout=30, check=False
        )
        return out.stdout + out.stderr

    @staticmethod
    def _split(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
        # Flags up to "--", the command after it: podman would otherwise read the
        # image's command line as its own options.
        cut = args.index("--")
        return list(args[:cut]), list(args[cut + 1 :])


@pytest.fixture(scope="session")
def podman() -> Podman:
    # An image left on the machine may be older than the code under test (seen: an old
    # operator refusing the new CRD's fields), so these run only right after a build.
    if os.environ.get("ZETA_IMAGE_TESTS") != "1":
        pytest.skip("the image tests run under `make test-image`, right after the build")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    if os.geteuid() != 0:
        pytest.skip("the image tests run podman as root (rootless podman is not set up here)")
    image = os.environ.get("ZETA_IMAGE") or default_image()
    exists = subprocess.run(["podman", "image", "exists", image], check=False, timeout=30)
    if exists.returncode != 0:
        pytest.skip(f"no image {image}: build it with `make image`")
    return Podman(image)
