"""Golden files in tests/data/golden: compare, or rewrite with ELASTICJOB_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def check_golden(name: str, objects: Any) -> None:
    text = yaml.safe_dump(objects, sort_keys=True, width=120)
    path = GOLDEN / name
    if os.environ.get("ELASTICJOB_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}: run with ELASTICJOB_UPDATE_GOLDEN=1"
    assert yaml.safe_load(path.read_text()) == objects, f"{name} differs from the golden file"
