"""Prometheus configured as in a real cluster: pods discovered from the apiserver.

``kubernetes_sd_configs`` (role pod) watches the testbed's apiserver through the admin
kubeconfig; pods annotated ``prometheus.io/scrape: "true"`` are scraped every second
at ``<podIP>:<prometheus.io/port>``, with ``namespace``, ``pod`` and ``model`` labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SCRAPE_INTERVAL = "1s"
"""Fast enough for tests to see a fault within seconds; vLLM itself is scraped at 5-15 s."""


def config(kubeconfig: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "model-pods",
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": "900ms",
                "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "regex": "true",
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_phase"],
                        "regex": "Running",
                        "action": "keep",
                    },
                    {
                        "source_labels": [
                            "__meta_kubernetes_pod_ip",
                            "__meta_kubernetes_pod_annotation_prometheus_io_port",
                        ],
                        "regex": "(.+);(\\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_model"],
                        "target_label": "model",
                    },
                ],
            }
        ],
    }


def write_config(path: Path, kubeconfig: Path) -> None:
    path.write_text(yaml.safe_dump(config(kubeconfig), sort_keys=False))


def argv(binary: Path, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        str(binary),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=2h",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
