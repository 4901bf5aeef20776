"""GPU and NUMA pinning of local workers, from sysfs alone and within the container's cpuset.

    plan = plan_for_launch("exclusive", nproc_per_node=8)
    entrypoint, args = plan.wrap(entrypoint, args)   # each worker pins itself, then execs
    plan.report()                                    # JSON for the job's status

See docs/pinning.md. Modules: `topology` (discovery), `planner` (pure decisions), `exec` (the
per-worker shim that applies a binding before user code runs).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elasticjob_launcher.pinning.planner import MODES, PinningError, WorkerBinding, plan
from elasticjob_launcher.pinning.topology import Topology, discover, format_cpulist

__all__ = ["MODES", "PinningError", "PinningPlan", "WorkerBinding", "plan", "plan_for_launch"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinningPlan:
    mode: str
    bindings: list[WorkerBinding]

    def to_json(self) -> str:
        """The per-rank bindings as the workers apply them ("" when there is nothing to pin)."""
        if not self.bindings:
            return ""
        return json.dumps(
            [{"cpus": list(b.cpus), "node": b.numa_node, "describe": b.describe()} for b in self.bindings]
        )

    def wrap(self, entrypoint: str, args: list[str]) -> tuple[str, list[str]]:
        spec = self.to_json()
        if not spec:
            return entrypoint, list(args)
        return sys.executable, ["-m", "elasticjob_launcher.pinning.exec", "--plan", spec, "--", entrypoint, *args]

    def report(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "workers": [
                {
                    "localRank": b.local_rank,
                    "gpu": b.gpu.ident if b.gpu else None,
                    "numaNode": b.numa_node,
                    "cpus": format_cpulist(set(b.cpus)),
                    "reasons": list(b.reasons),
                }
                for b in self.bindings
            ],
        }


def plan_for_launch(mode: str, nproc_per_node: int, strict: bool = False, root: Path | str = "/") -> PinningPlan:
    """Plan for this machine (or a recorded tree at `root`); logs the binding and every fallback."""
    topo: Topology = discover(root)
    bindings = plan(topo, nproc_per_node, mode, strict=strict)
    for b in bindings:
        log.info("pinning (%s): %s", mode, b.describe())
        for reason in b.reasons:
            log.warning("pinning fallback for local rank %d: %s", b.local_rank, reason)
    return PinningPlan(mode, bindings)
