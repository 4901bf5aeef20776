"""`LaunchConfig`: torch's launcher configuration, with the project's fields, validated once.

The fields, their order and their defaults are those of `torch.distributed.launcher.api.LaunchConfig`
(torch 2.15), so torch's keyword arguments work unchanged; the project's own fields follow them.
`__post_init__` checks every value and raises `ValueError` with a message that says what to fix;
nothing downstream re-validates. Differences from torch, and why (docs/launcher.md):

* the default `rdzv_backend` is `c10d`, not `etcd`: etcd backends are not supported (the design runs
  the store in its own pod); `static` (torchrun's `--master-addr` form) is;
* the config is frozen: `launch_agent` returns a copy with a generated `run_id` instead of writing it;
* no default `numa_options` from the accelerator count: pinning is what `pinning` (or an explicit
  `numa_options`) says, because it is applied by the project's planner (docs/pinning.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from elasticjob_api.models import DEFAULT_RDZV_PORT, PinningMode, RendezvousBackend
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, LogsSpecs
from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint
from torch.numa.binding import NumaOptions

#: the API's pinning modes (torch's AffinityMode names, and none)
PINNING_MODES = tuple(mode.value for mode in PinningMode)
#: the API's backends (c10d: torch's DynamicRendezvousHandler; elasticjob: the O(1)-join handler,
#: rendezvous.py), and static: torchrun's fixed-rank rendezvous (--master-addr/--master-port/--node-rank)
RDZV_BACKENDS = (*(backend.value for backend in RendezvousBackend), "static")
#: preload: fork workers from a server that imported torch once (worker.py); exec: a fresh python each
WORKER_STARTS = ("preload", "exec")
START_METHODS = ("spawn", "fork", "forkserver")
DEFAULT_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT"
#: the shortest stall timeout: below it, a busy node's scheduling delays read as stalls
MIN_STALL_TIMEOUT = 1.0


def parse_nnodes(text: str) -> tuple[int, int]:
    """`N` or `MIN:MAX` (torchrun's --nnodes)."""
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise ValueError(f"--nnodes must be N or MIN:MAX, got {text!r}")


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity), as torch counts them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_nproc(text: str) -> int:
    """An integer, or torchrun's `auto` (the accelerators if any, else the CPUs), `cpu`, `gpu` or `xpu`."""
    try:
        return int(text)
    except ValueError:
        pass
    import torch

    if text == "cpu":
        return cpu_count()
    if text == "gpu":
        if not torch.cuda.is_available():
            raise ValueError("--nproc-per-node gpu: CUDA is not available")
        return int(torch.cuda.device_count())
    if text == "xpu":
        if not torch.xpu.is_available():
            raise ValueError("--nproc-per-node xpu: no XPU is available")
        return int(torch.xpu.device_count())
    if text == "auto":
        if torch.accelerator.is_available():
            return int(torch.accelerator.device_count())
        return cpu_count()
    raise ValueError(f"--nproc-per-node must be an integer, auto, cpu, gpu or xpu, got {text!r}")


def parse_rdzv_conf(text: str) -> dict[str, str]:
    """`key=value,key=value` (torchrun's --rdzv-conf); quotes around the whole list are dropped, as a shell would."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.strip().strip("'\"").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--rdzv-conf items must be key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def split_endpoint(endpoint: str, default_port: int = DEFAULT_RDZV_PORT) -> tuple[str, int]:
    try:
        host, port = parse_rendezvous_endpoint(endpoint, default_port)
    except ValueError:
        raise ValueError(f"--rdzv-endpoint must be HOST[:PORT], got {endpoint!r}") from None
    return host, port


@dataclass(frozen=True)
class LaunchConfig:
    """torch's `LaunchConfig` fields (same names, order and meaning), then the project's.

    The project's fields:
        standalone: store mode. True: this process hosts the rendezvous store (one node, or the
            first of several reaching it at `rdzv_endpoint`). False: the store is reached at
            `rdzv_endpoint`, and hosted here only when that endpoint is this host and nobody
            serves it yet (torch's c10d behaviour).
        store_wait_timeout: seconds to wait for the store to answer before giving up.
        pinning: CPU/GPU pinning mode (docs/pinning.md); `numa_options` sets it too.
        report_status: report rounds, restarts and failures into the ElasticJob's status when the
            process runs in one of its pods (reporter.py); off elsewhere whatever this says.
        worker_start: `preload` forks `python SCRIPT` workers from a process that imported torch
            once (worker.py); `exec` starts a fresh interpreter per worker, as torch does.
        stall_timeout: seconds a worker may spend in one torch.distributed call, or (once it
            reports steps through `elasticjob_launcher.progress`) without progress, before the
            agent reports a `Hang` and restarts the group (stall.py); None or 0: off.
    """

    min_nodes: int
    max_nodes: int
    nproc_per_node: int
    logs_specs: LogsSpecs | None = None
    run_id: str = ""
    role: str = "default_role"
    rdzv_endpoint: str = ""
    rdzv_backend: str = "c10d"
    rdzv_configs: dict[str, Any] = field(default_factory=dict)
    rdzv_timeout: int = -1
    max_restarts: int = 3
    monitor_interval: float = 0.1
    start_method: str = "spawn"
    log_line_prefix_template: str | None = None
    metrics_cfg: dict[str, str] = field(default_factory=dict)
    local_addr: str | None = None
    event_log_handler: str = "null"
    numa_options: NumaOptions | None = None
    signals_to_handle: str = DEFAULT_SIGNALS
    duplicate_stdout_filters: list[str] | None = None
    duplicate_stderr_filters: list[str] | None = None
    virtual_local_rank: bool = False
    shutdown_timeout: int | None = None
    # the project's
    standalone: bool = False
    store_wait_timeout: float = 900.0
    pinning: str = "none"
    report_status: bool = True
    worker_start: str = "preload"
    stall_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.min_nodes < 1 or self.max_nodes < self.min_nodes:
            raise ValueError(f"--nnodes needs 1 <= MIN <= MAX, got {self.min_nodes}:{self.max_nodes}")
        if self.nproc_per_node < 1:
            raise ValueError(f"--nproc-per-node must be >= 1, got {self.nproc_per_node}")
        if self.rdzv_backend not in RDZV_BACKENDS:
            raise ValueError(
                f"--rdzv-backend must be one of {', '.join(RDZV_BACKENDS)}, got {self.rdzv_backend!r} "
                "(etcd backends are not supported: the rendezvous store is a c10d TCPStore)"
            )
        if not self.standalone and not self.rdzv_endpoint:
            raise ValueError("--rdzv-endpoint HOST:PORT is required unless --standalone is given")
        if self.rdzv_endpoint:
            split_endpoint(self.rdzv_endpoint)
        if self.rdzv_backend == "static":
            self._check_static()
        if self.max_restarts < 0:
            raise ValueError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if self.monitor_interval <= 0:
            raise ValueError(f"--monitor-interval must be > 0, got {self.monitor_interval}")
        if self.start_method not in START_METHODS:
            raise ValueError(f"--start-method must be one of {', '.join(START_METHODS)}, got {self.start_method!r}")
        if self.worker_start not in WORKER_STARTS:
            raise ValueError(f"--worker-start must be one of {', '.join(WORKER_STARTS)}, got {self.worker_start!r}")
        if self.store_wait_timeout <= 0:
            raise ValueError(f"--store-wait-timeout must be > 0, got {self.store_wait_timeout}")
        self._check_stall_timeout()
        if self.shutdown_timeout is not None and self.shutdown_timeout < 0:
            raise ValueError(f"--shutdown-timeout must be >= 0, got {self.shutdown_timeout}")
        pinning = self.pinning
        if self.numa_options is not None and pinning == "none":
            pinning = str(self.numa_options.affinity_mode.value)
        if pinning not in PINNING_MODES:
            raise ValueError(f"--numa-binding must be one of {', '.join(PINNING_MODES)}, got {pinning!r}")
        configs = dict(self.rdzv_configs)
        if self.rdzv_timeout != -1:
            configs["timeout"] = self.rdzv_timeout
        configs.setdefault("timeout", 900)
        self._set(
            pinning=pinning,
            rdzv_configs=configs,
            logs_specs=self.logs_specs or DefaultLogsSpecs(),
            shutdown_timeout=(
                int(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "30"))
                if self.shutdown_timeout is None
                else self.shutdown_timeout
            ),
        )
        if self.standalone:
            self._set(rdzv_endpoint="")

    def _check_stall_timeout(self) -> None:
        timeout = self.stall_timeout
        if timeout is None:
            return
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
            raise ValueError(f"--stall-timeout must be a number of seconds (0: off), got {timeout!r}")
        if timeout < 0 or 0 < timeout < MIN_STALL_TIMEOUT:
            raise ValueError(
                f"--stall-timeout must be 0 (off) or at least {MIN_STALL_TIMEOUT:g} seconds, got {timeout:g}"
            )
        if timeout and timeout <= self.monitor_interval:
            raise ValueError(
                f"--stall-timeout ({timeout:g}s) must be longer than --monitor-interval ({self.monitor_interval:g}s)"
            )
        self._set(stall_timeout=float(timeout) if timeout else None)

    def _check_static(self) -> None:
        if self.min_nodes != self.max_nodes:
            raise ValueError("--rdzv-backend static needs a fixed --nnodes N (static ranks cannot change)")
        if "rank" not in self.rdzv_configs:
            raise ValueError("--rdzv-backend static needs the node's rank: --node-rank (rdzv_configs['rank'])")
        try:
            rank = int(self.rdzv_configs["rank"])
        except (TypeError, ValueError):
            raise ValueError(f"--node-rank must be an integer, got {self.rdzv_configs['rank']!r}") from None
        if not 0 <= rank < self.max_nodes:
            raise ValueError(f"--node-rank must be in [0, {self.max_nodes}), got {rank}")
        if not self.standalone and split_endpoint(self.rdzv_endpoint, -1)[1] == -1:
            raise ValueError("--rdzv-backend static needs a port: --master-port (or HOST:PORT as the endpoint)")

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def node_rank(self) -> int:
        """The static rendezvous' rank of this node (0 for the dynamic backends)."""
        return int(self.rdzv_configs.get("rank", 0)) if self.rdzv_backend == "static" else 0
