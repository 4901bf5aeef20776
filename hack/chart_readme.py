"""Write the chart's README from values.yaml's `# --` comments (helm-docs style); `--check` compares.

    python hack/chart_readme.py            # writes charts/elasticjob-operator/README.md
    python hack/chart_readme.py --check    # exit 1 if the README is not current (a test runs this)

Each value's row: its dotted key, its type, its default (as YAML) and the comment block above it.
A key whose children carry the comments (e.g. `image:`) gets no row of its own. Limits: the
comment block must sit directly above its key, as tests/chart checks; no `@section` directives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "elasticjob-operator"
HEADER = """# elasticjob-operator

{description}

```bash
helm install elasticjob charts/elasticjob-operator -n elasticjob-system --create-namespace
```

Generated from `values.yaml` by `python hack/chart_readme.py`; do not edit. Version {version},
app version {app_version}. The CRD is in `crds/` (Helm installs it, and never upgrades it: see
docs/upgrading.md).

## Values

| key | type | default | description |
|---|---|---|---|
"""


def _comments(lines: list[str]) -> dict[str, str]:
    """Dotted key -> its `# --` comment, from the indentation of values.yaml."""
    found: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key = ".".join([*(p for _, p in parents), stripped.split(":", 1)[0].strip()])
        parents.append((indent, stripped.split(":", 1)[0].strip()))
        block: list[str] = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            block.insert(0, lines[j].strip().lstrip("#").strip())
            j -= 1
        if block and block[0].startswith("--"):
            found[key] = " ".join([block[0][2:].strip(), *block[1:]]).strip()
    return found


def _type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(value), "null"
    )


def _value(values: dict[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def render() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = []
    for key, comment in _comments((CHART / "values.yaml").read_text().splitlines()).items():
        value = _value(values, key)
        default = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
        cell = comment.replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(value)} | `{default}` | {cell} |")
    head = HEADER.format(description=chart["description"], version=chart["version"], app_version=chart["appVersion"])
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is not current")
    opts = parser.parse_args(argv)
    path, text = CHART / "README.md", render()
    if opts.check:
        current = path.exists() and path.read_text() == text
        if not current:
            print(f"{path} is not current: run python hack/chart_readme.py", file=sys.stderr)
        return 0 if current else 1
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
