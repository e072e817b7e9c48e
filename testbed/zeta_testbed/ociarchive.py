"""Write a one-layer OCI image archive from a few files, with no registry and no podman.

The testbed's node needs a pod sandbox ("pause") image and nothing here can pull one;
``ctr images import`` loads the archive this writes (an OCI image layout in a tar, its
index annotated with the image's name, as ``podman save --format oci-archive`` does).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True, slots=True)
class File:
    """One file of the image: where it comes from on this machine, where it goes."""

    source: Path
    path: str
    mode: int = 0o755


def write(
    out: Path,
    name: str,
    files: Sequence[File],
    *,
    entrypoint: Sequence[str],
    user: str = "65535:65535",
) -> None:
    """Write ``out``: image ``name`` (e.g. ``localhost/pause:3``) holding ``files``."""
    layer = _layer(files)
    config = {
        "architecture": "amd64",
        "os": "linux",
        # A fixed date: the same files give the same image id, run after run.
        "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": list(entrypoint), "User": user, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
    }
    blobs: dict[str, bytes] = {}
    compressed = gzip.compress(layer, mtime=0)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, **_blob(blobs, _json(config))},
        "layers": [{"mediaType": LAYER_TYPE, **_blob(blobs, compressed)}],
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                **_blob(blobs, _json(manifest)),
                "platform": {"architecture": "amd64", "os": "linux"},
                # containerd names the imported image after this annotation.
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        _add(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", _json(index))
        for digest, data in blobs.items():
            _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)


def _layer(files: Sequence[File]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in files:
            _add(tar, file.path.lstrip("/"), file.source.read_bytes(), file.mode)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, path: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _blob(blobs: dict[str, bytes], data: bytes) -> Mapping[str, Any]:
    digest = _digest(data)
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
