"""What a benchmark ran on: cores, memory, kernel, Python, torch and Kubernetes versions."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]


def kubernetes_version() -> str:
    text = (REPO / "hack" / "k8s" / "ensure.sh").read_text()
    found = re.search(r"^K8S_VERSION=(\S+)", text, re.MULTILINE)
    return found.group(1) if found else "unknown"


def describe() -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "kubernetes": kubernetes_version(),
    }
