"""The Dockerfile is built and run for real: both targets, with Docker's engine started if needed.

hack/docker/build-images.sh does the work (dockerd from Debian's docker.io, a debootstrap base
image, the classic builder) and its own checks: no torch in the operator image, the operator's
--help as a non-root user on a read-only root filesystem, a 2-process job in the training image,
and the CPU example in the CI-only trimmed training image (its build runs it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_images_build_and_run() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "docker" / "build-images.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "rank 0/2: all-reduce ok (3)" in result.stdout
    assert "rank 1/2: all-reduce ok (3)" in result.stdout
    for image in ("elasticjob-operator:dev", "elasticjob-training:dev", "elasticjob-training:ci"):
        assert f"built {image}" in result.stdout
    assert "cpu-trim: the CPU example succeeded" in result.stderr
