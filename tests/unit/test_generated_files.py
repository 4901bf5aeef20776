"""Generated files are current: the example manifests embed the one training script; the chart README."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["render_examples", "chart_readme"])
def test_generated_files_are_current(script: str) -> None:
    """hack/render_examples.py (the examples) and hack/chart_readme.py (the chart README), each with --check."""
    spec = importlib.util.spec_from_file_location(script, ROOT / "hack" / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, f"run: python hack/{script}.py"
