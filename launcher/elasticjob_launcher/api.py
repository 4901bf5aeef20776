"""torch's launcher Python API (`torch.distributed.launcher.api`), run by the project's agent.

Moving code over is one import line:

    from elasticjob_launcher.api import LaunchConfig, elastic_launch   # was torch.distributed.launcher.api

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, rdzv_backend="c10d", standalone=True)
    results = elastic_launch(config, train)(lr)        # {global rank: what train(lr) returned}

Entrypoints are functions (started with `start_method`) or commands (`sys.executable` and a script
are forked from a preloaded process, see `LaunchConfig.worker_start`). A failure with the restart
budget spent raises torch's `ChildFailedError` with the failed ranks. The project's additions
(store mode, pinning, status reporting, preloaded workers) are `LaunchConfig` fields; see
`elasticjob_launcher.config` for how the config differs from torch's, and docs/launcher.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.numa.binding import NumaOptions

from elasticjob_launcher.config import LaunchConfig
from elasticjob_launcher.launch import launch_agent


class elastic_launch:
    """`elastic_launch(config, entrypoint)(*args)`: run `entrypoint` on this node's workers, as torch's."""

    def __init__(self, config: LaunchConfig, entrypoint: Callable[..., Any] | str) -> None:
        self._config = config
        self._entrypoint = entrypoint

    def __call__(self, *args: Any) -> dict[int, Any]:
        return launch_agent(self._config, self._entrypoint, list(args))


__all__ = ["ChildFailedError", "LaunchConfig", "NumaOptions", "elastic_launch", "launch_agent"]
