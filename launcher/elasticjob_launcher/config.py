"""The launcher's validated configuration: parsed flags become one frozen dataclass.

`__post_init__` checks every value and raises `ValueError` with a message that says what to fix;
nothing downstream re-validates. Limits: only the c10d rendezvous backend is supported (the
design runs the store in its own pod; etcd backends are out of scope).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PINNING_MODES = ("none", "node", "socket", "exclusive", "core-complex")
REDIRECT_CHOICES = ("0", "1", "2", "3")


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


def parse_nproc(text: str) -> int:
    """An integer, or torchrun's `auto` (GPUs if any, else CPUs), `gpu` or `cpu`."""
    if text in ("auto", "gpu", "cpu"):
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if text == "gpu" and gpus == 0:
            raise ValueError("--nproc-per-node gpu: no CUDA device is visible")
        if text == "cpu" or gpus == 0:
            return os.cpu_count() or 1
        return gpus
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--nproc-per-node must be an integer, auto, gpu or cpu, got {text!r}") from None


def parse_rdzv_conf(text: str) -> dict[str, str]:
    """`key=value,key=value` (torchrun's --rdzv-conf)."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--rdzv-conf items must be key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def split_endpoint(endpoint: str, default_port: int = 29400) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        return endpoint, default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"--rdzv-endpoint must be HOST[:PORT], got {endpoint!r}") from None


#: c10d: torch's DynamicRendezvousHandler; elasticjob: the O(1)-join handler (rendezvous.py)
RDZV_BACKENDS = ("c10d", "elasticjob")
#: preload: fork workers from a server that imported torch once (worker.py); exec: a fresh python each
WORKER_STARTS = ("preload", "exec")


@dataclass(frozen=True)
class LauncherConfig:
    """Everything a worker-mode launch needs, validated."""

    min_nodes: int
    max_nodes: int
    nproc_per_node: int
    training_script: str
    training_script_args: tuple[str, ...] = ()
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str = ""
    rdzv_id: str = "none"
    rdzv_conf: dict[str, str] = field(default_factory=dict)
    standalone: bool = False
    max_restarts: int = 0
    monitor_interval: float = 0.1
    role: str = "default"
    module: bool = False
    no_python: bool = False
    log_dir: str | None = None
    redirects: str = "0"
    tee: str = "0"
    local_addr: str | None = None
    numa_binding: str = "none"
    store_wait_timeout: float = 900.0
    worker_start: str = "preload"

    def __post_init__(self) -> None:
        if self.min_nodes < 1 or self.max_nodes < self.min_nodes:
            raise ValueError(f"--nnodes needs 1 <= MIN <= MAX, got {self.min_nodes}:{self.max_nodes}")
        if self.nproc_per_node < 1:
            raise ValueError(f"--nproc-per-node must be >= 1, got {self.nproc_per_node}")
        if self.rdzv_backend not in RDZV_BACKENDS:
            raise ValueError(f"--rdzv-backend must be one of {', '.join(RDZV_BACKENDS)}, got {self.rdzv_backend!r}")
        if not self.standalone and not self.rdzv_endpoint:
            raise ValueError("--rdzv-endpoint HOST:PORT is required unless --standalone is given")
        if self.max_restarts < 0:
            raise ValueError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if self.monitor_interval <= 0:
            raise ValueError(f"--monitor-interval must be > 0, got {self.monitor_interval}")
        if self.module and self.no_python:
            raise ValueError("--module and --no-python cannot be used together")
        if self.numa_binding not in PINNING_MODES:
            raise ValueError(f"--numa-binding must be one of {', '.join(PINNING_MODES)}, got {self.numa_binding!r}")
        for name in ("redirects", "tee"):
            value = getattr(self, name)
            if value not in REDIRECT_CHOICES:
                raise ValueError(f"--{name} must be one of 0 (none), 1 (stdout), 2 (stderr), 3 (both), got {value!r}")
        if not self.training_script:
            raise ValueError("a training script (or, with --no-python, a command) is required")
        if self.worker_start not in WORKER_STARTS:
            raise ValueError(f"--worker-start must be one of {', '.join(WORKER_STARTS)}, got {self.worker_start!r}")
        if self.store_wait_timeout <= 0:
            raise ValueError(f"--store-wait-timeout must be > 0, got {self.store_wait_timeout}")
        if self.standalone:
            object.__setattr__(self, "rdzv_endpoint", "")
            if self.local_addr is None:  # one node: never depend on the hostname resolving
                object.__setattr__(self, "local_addr", "127.0.0.1")
        if self.rdzv_endpoint:
            split_endpoint(self.rdzv_endpoint)

    def entrypoint(self) -> tuple[str, list[str]]:
        """The program and arguments each worker process runs (torchrun's rules)."""
        import sys

        if self.no_python:
            return self.training_script, list(self.training_script_args)
        if self.module:
            return sys.executable, ["-u", "-m", self.training_script, *self.training_script_args]
        return sys.executable, ["-u", self.training_script, *self.training_script_args]

    @property
    def preload(self) -> bool:
        """Whether workers fork from the preloaded server (a --no-python command always execs)."""
        return self.worker_start == "preload" and not self.no_python
