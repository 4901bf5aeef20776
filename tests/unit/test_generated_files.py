"""Generated files are current: the example manifests embed the one training script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_examples_are_current() -> None:
    spec = importlib.util.spec_from_file_location("render_examples", ROOT / "hack" / "render_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run: python hack/render_examples.py"
