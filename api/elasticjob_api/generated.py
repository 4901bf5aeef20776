"""The command line shared by the generators of committed files (CRD, API reference)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def generator_main(
    prog: str, description: str, relative: Path, render: Callable[[], str], argv: list[str] | None
) -> int:
    """`--root DIR` (default cwd) and `--check`: write `relative` under the root, or exit 1 if it is stale."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {relative} is stale")
    opts = parser.parse_args(argv)
    path = opts.root / relative
    text = render()
    if opts.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is stale: run `{prog}`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(path)
    return 0
