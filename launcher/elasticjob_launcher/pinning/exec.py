"""Per-worker shim: apply this local rank's binding, then exec the real command.

`python -m elasticjob_launcher.pinning.exec --plan JSON -- CMD...`, started by torch's agent
with LOCAL_RANK set. CPU affinity is set on this process before exec, so every thread the
training script starts inherits it; OMP_NUM_THREADS becomes the CPU count unless already set;
memory is bound with numactl when it is installed. A failure to pin is logged, never fatal.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any


def apply_cpu_binding(binding: dict[str, Any]) -> str:
    """Pin this process to the binding's CPUs and default OMP_NUM_THREADS to their count; a note on failure."""
    cpus = set(binding["cpus"])
    note = ""
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
    except OSError as exc:
        note = f" (affinity not applied: {exc})"
    if cpus:
        os.environ.setdefault("OMP_NUM_THREADS", str(len(cpus)))
    return note


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 4 or args[0] != "--plan" or args[2] != "--":
        print("usage: python -m elasticjob_launcher.pinning.exec --plan JSON -- CMD...", file=sys.stderr)
        return 2
    bindings, command = json.loads(args[1]), args[3:]
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    binding = bindings[rank % len(bindings)]
    note = apply_cpu_binding(binding)
    numactl = shutil.which("numactl")
    if numactl and binding.get("node") is not None:
        command = [numactl, f"--membind={binding['node']}", "--", *command]
    elif binding.get("node") is not None:
        note += " (memory not bound: numactl is not installed)"
    print(f"[elasticjob-pinning] {binding['describe']}{note}", file=sys.stderr, flush=True)
    os.execvp(command[0], command)  # noqa: S606 (the worker's own command)


if __name__ == "__main__":
    sys.exit(main())
