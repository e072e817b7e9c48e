"""Writes a chart's README.md from its values.yaml: every key with a ``# --`` comment.

The comments follow helm-docs' convention (``# -- text`` right above a key, more ``#``
lines continue it), so helm-docs would read them too; this keeps the README in the
repository without a Go tool. It fails on a value that has no such comment (on the key or
a parent); ``--check`` also fails when the README is stale (a chart test runs it).

    python charts/values_readme.py [--check] [CHART_DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):")
HEADER = """\
# {name}

{description}

This file is generated from the comments in `values.yaml` by `charts/values_readme.py`
(edit those, then run `python charts/values_readme.py`); a test checks it is current.

## Install

```sh
helm install zeta-router charts/zeta-router -n llm --create-namespace \\
  --set image.repository=REGISTRY/zeta-router --set image.tag=TAG
```

The image is built from the repository's `Dockerfile` (see the repository's README, "The
container image"): the default `{image}` is the project's name for it, but no release has
published it yet, so build and push your own until one does.

Helm installs the CRDs in `crds/` on the first install only and never upgrades or deletes
them. Before upgrading to a chart with new CRDs:

```sh
kubectl apply --server-side -f charts/zeta-router/crds/
```

Scenarios that `helm lint --strict` and `helm template` are checked with are in `ci/`.

## Values

| Key | Type | Default | Description |
|-----|------|---------|-------------|
"""


@dataclass(frozen=True)
class Row:
    key: str
    kind: str
    default: str
    description: str


def documented(values_text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for each key right below a ``# --`` comment."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
        elif stripped.startswith("#") and pending is not None:
            pending.append(stripped[1:].strip())
        elif match := KEY.match(line):
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match["key"]))
            if pending is not None:
                found.append((".".join(k for _, k in stack), " ".join(pending)))
            pending = None
        elif not stripped or not stripped.startswith("#"):
            pending = None
    return found


def leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every value that is not a non-empty mapping."""
    out: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += leaves(value, f"{path}.")
        else:
            out.append(path)
    return out


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def kind_of(value: Any) -> str:
    kinds = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def rows(values_text: str) -> list[Row]:
    values = yaml.safe_load(values_text)
    result = []
    for key, description in documented(values_text):
        value = lookup(values, key)
        default = json.dumps(value, separators=(", ", ": "))
        result.append(Row(key, kind_of(value), default, description))
    return result


def undocumented(values_text: str) -> list[str]:
    """Leaves that neither have a ``# --`` comment nor sit under a key that has one."""
    keys = [key for key, _ in documented(values_text)]
    return [
        leaf
        for leaf in leaves(yaml.safe_load(values_text))
        if not any(leaf == k or leaf.startswith(f"{k}.") for k in keys)
    ]


def cell(text: str) -> str:
    # GitHub drops unknown <tags>, so "<release>" would vanish from a description.
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render(chart: Path) -> str:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values_text = (chart / "values.yaml").read_text()
    image = yaml.safe_load(values_text)["image"]["repository"]
    out = HEADER.format(name=meta["name"], description=meta["description"].strip(), image=image)
    for row in rows(values_text):
        default = row.default.replace("|", "\\|")
        out += f"| `{row.key}` | {row.kind} | `{default}` | {cell(row.description)} |\n"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).parent / "zeta-router"
    parser.add_argument("chart", nargs="?", type=Path, default=default)
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = parser.parse_args()
    readme = args.chart / "README.md"
    text = render(args.chart)
    missing = undocumented((args.chart / "values.yaml").read_text())
    if missing:
        print(f"values with no '# --' comment: {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.check:
        if not readme.exists() or readme.read_text() != text:
            print(f"{readme} is stale: run python {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
