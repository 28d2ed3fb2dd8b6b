"""Generate the values table of helm/trip-duration/README.md from the `# --` comments of values.yaml.

    python -m infra.helm_docs          # rewrite the table
    python -m infra.helm_docs --check  # fail if it is stale (run by the test suite)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "trip-duration"
BEGIN, END = "<!-- values-table:begin -->", "<!-- values-table:end -->"


def rows(values_path: Path = CHART / "values.yaml") -> list[tuple[str, str, str]]:
    """(key, default, description) for every commented value, in file order."""
    values = yaml.safe_load(values_path.read_text())
    out, stack, pending = [], [], None
    for line in values_path.read_text().splitlines():
        if not line.strip():
            continue
        comment = re.match(r"^(\s*)# -- (.*)$", line)
        if comment:
            pending = comment.group(2)
            continue
        key = re.match(r"^(\s*)([A-Za-z0-9_.-]+):", line)
        if not key or line.lstrip().startswith("#"):
            continue
        depth = len(key.group(1)) // 2
        stack = stack[:depth] + [key.group(2)]
        if pending is not None:
            node = values
            for part in stack:
                node = node[part]
            default = yaml.safe_dump(node, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
            out.append((".".join(stack), default, pending))
            pending = None
    return out


def table() -> str:
    lines = ["| Key | Default | Description |", "|---|---|---|"]
    lines += [f"| `{k}` | `{d}` | {desc} |" for k, d, desc in rows()]
    return "\n".join(lines)


def render(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    path = CHART / "README.md"
    current = path.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("helm/trip-duration/README.md values table is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
