"""The Dockerfile is built and run for real: both targets, with Docker's engine started if needed.

`hack/kind/project-images.sh --rebuild` runs hack/docker/build-images.sh, which does the work (dockerd from Debian's docker.io, a debootstrap base
image, the classic builder) and its own checks: no torch in the operator image, the operator's
--help as a non-root user on a read-only root filesystem, a 2-process job in the training image,
and the CPU example in the CI-only trimmed training image. It always builds
(Docker's layer cache still applies) and records the images under the key of their inputs, so
`make e2e-kind` later in the same run loads them without building again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_images_build_and_run() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "kind" / "project-images.sh"), "--rebuild"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    images = ["elasticjob-operator:dev", "elasticjob-training:dev", "elasticjob-training:ci"]
    assert result.stdout.split() == images
    log = result.stderr  # build-images.sh's output, its checks' included
    assert "rank 0/2: all-reduce ok (3)" in log
    assert "rank 1/2: all-reduce ok (3)" in log
    for image in images:
        assert f"built {image}" in log
    assert "cpu-trim: the CPU example succeeded" in log
