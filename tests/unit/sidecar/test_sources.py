"""Which Kubernetes client each table source loads: none for a file, only the async one
for a ConfigMap. Checked in a fresh interpreter, since this one has imported them all."""

import json
import subprocess
import sys
from pathlib import Path

from zeta_sidecar.testing import endpoint, table_json

CLIENTS = ("kubernetes", "kubernetes_asyncio")

TABLE_FILE_RUN = """
import asyncio, json, sys
from pathlib import Path

from zeta_sidecar import cli  # what the zeta-sidecar command imports
from zeta_sidecar.app import runners
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.settings import Settings


async def main() -> None:
    settings = Settings(table_file=Path(sys.argv[1]), host="127.0.0.1", port=0, admin_port=0)
    gateway = Gateway(settings)
    traffic, _ = runners(gateway, grace=1.0)
    await traffic.setup()  # starts the table source
    try:
        while gateway.store.current is None:
            await asyncio.sleep(0.01)
    finally:
        await traffic.cleanup()
    print(json.dumps({"revision": gateway.store.current.revision, "modules": sorted(sys.modules)}))


asyncio.run(asyncio.wait_for(main(), 20))
"""

CONFIGMAP_LOAD = """
import asyncio, json, sys
from pathlib import Path

from zeta_sidecar.kube_credentials import load_connection

connection = asyncio.run(load_connection(Path(sys.argv[1])))
print(json.dumps({"host": connection.configuration.host, "modules": sorted(sys.modules)}))
"""

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def run(script: str, arg: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, str(arg)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def clients(modules: object) -> set[str]:
    assert isinstance(modules, list)
    return {m.partition(".")[0] for m in modules} & set(CLIENTS)


def test_the_table_file_source_imports_no_kubernetes_client(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(table_json({"m": [endpoint("127.0.0.1:1")]}, revision=7))
    result = run(TABLE_FILE_RUN, path)
    assert result["revision"] == 7  # the source really ran
    assert clients(result["modules"]) == set()


def test_the_configmap_source_loads_only_the_async_client(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    result = run(CONFIGMAP_LOAD, path)
    assert result["host"] == "http://127.0.0.1:9"
    assert clients(result["modules"]) == {"kubernetes_asyncio"}
