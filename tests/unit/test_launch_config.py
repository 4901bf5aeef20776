"""`LaunchConfig` validation: torch's keyword arguments work, bad values are clear errors."""

from __future__ import annotations

import pytest
from elasticjob_launcher.config import LaunchConfig
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
from torch.numa.binding import AffinityMode, NumaOptions


def test_torchs_keyword_arguments_and_defaults() -> None:
    config = LaunchConfig(
        min_nodes=1, max_nodes=2, nproc_per_node=4, run_id="r", role="trainer", rdzv_endpoint="h:29400",
        rdzv_backend="c10d", rdzv_configs={"join_timeout": 5}, rdzv_timeout=60, max_restarts=2,
        monitor_interval=0.5, start_method="fork", log_line_prefix_template="[${rank}]", metrics_cfg={},
        local_addr="10.0.0.1", event_log_handler="console", numa_options=NumaOptions(affinity_mode=AffinityMode.NODE),
        signals_to_handle="SIGTERM", duplicate_stdout_filters=["loss"], duplicate_stderr_filters=None,
        virtual_local_rank=True, shutdown_timeout=5,
    )  # fmt: skip
    assert config.rdzv_configs == {"join_timeout": 5, "timeout": 60}  # rdzv_timeout, as torch's
    assert config.pinning == "node" and isinstance(config.logs_specs, DefaultLogsSpecs)
    default = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=1, rdzv_endpoint="h:1")
    assert (default.max_restarts, default.role, default.rdzv_configs["timeout"], default.shutdown_timeout) == (
        3, "default_role", 900, 30,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_nodes": 0}, "1 <= MIN <= MAX"),
        ({"min_nodes": 3, "max_nodes": 2}, "1 <= MIN <= MAX"),
        ({"nproc_per_node": 0}, "--nproc-per-node must be >= 1"),
        ({"rdzv_backend": "etcd"}, "etcd backends are not supported"),
        ({"rdzv_endpoint": ""}, "--rdzv-endpoint HOST:PORT is required"),
        ({"rdzv_endpoint": "host:port"}, "HOST[:PORT]"),
        ({"rdzv_backend": "static", "rdzv_configs": {}}, "--node-rank"),
        ({"rdzv_backend": "static", "rdzv_configs": {"rank": 0}, "rdzv_endpoint": "h"}, "--master-port"),
        ({"rdzv_backend": "static", "max_nodes": 2, "rdzv_configs": {"rank": 0}}, "fixed --nnodes"),
        ({"max_restarts": -1}, "--max-restarts must be >= 0"),
        ({"monitor_interval": 0}, "--monitor-interval must be > 0"),
        ({"start_method": "thread"}, "--start-method must be one of"),
        ({"worker_start": "warm"}, "--worker-start must be one of"),
        ({"pinning": "numa"}, "--numa-binding must be one of"),
        ({"store_wait_timeout": 0}, "--store-wait-timeout must be > 0"),
        ({"shutdown_timeout": -1}, "--shutdown-timeout must be >= 0"),
    ],
)
def test_bad_values_say_what_to_fix(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"min_nodes": 1, "max_nodes": 1, "nproc_per_node": 1, "rdzv_endpoint": "h:29400"}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LaunchConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_standalone_needs_no_endpoint() -> None:
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, standalone=True, rdzv_endpoint="ignored:1")
    assert config.rdzv_endpoint == ""
