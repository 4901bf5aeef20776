"""`elasticjob`: the user's command line. `elasticjob convert FILE` prints a PyTorchJob as an ElasticJob.

    elasticjob convert pytorchjob.yaml > elasticjob.yaml     # `-` reads standard input

The ElasticJob YAML goes to stdout; each field that could not be carried over is a line on
stderr that says why (elasticjob_api.pytorchjob). Exit codes: 0 converted, 2 unreadable input
or not a convertible PyTorchJob (the message says which).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import yaml

from elasticjob_api.pytorchjob import ConversionError, convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elasticjob", description="ElasticJob tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    conv = commands.add_parser("convert", help="print a Kubeflow PyTorchJob (kubeflow.org/v1) as an ElasticJob")
    conv.add_argument("file", help="the PyTorchJob YAML, or - for standard input")
    return parser


def _read(file: str, stdin: IO[str]) -> list[object]:
    text = stdin.read() if file == "-" else Path(file).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def main(argv: Sequence[str] | None = None, stdin: IO[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    try:
        docs = _read(opts.file, stdin or sys.stdin)
    except (OSError, yaml.YAMLError) as exc:
        print(f"elasticjob convert: cannot read {opts.file}: {exc}", file=sys.stderr)
        return 2
    out = []
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            print(f"elasticjob convert: document {index + 1} is not a mapping", file=sys.stderr)
            return 2
        try:
            job, notes = convert(doc)
        except ConversionError as exc:
            print(f"elasticjob convert: document {index + 1}: {exc}", file=sys.stderr)
            return 2
        name = job["metadata"].get("name", f"document {index + 1}")
        for note in notes:
            print(f"elasticjob convert: {name}: {note}", file=sys.stderr)
        out.append(job)
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False, width=120))
    return 0


if __name__ == "__main__":
    sys.exit(main())
