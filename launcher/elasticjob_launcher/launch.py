"""Worker mode: wait for the store, rendezvous, run the elastic agent, survive store restarts.

`run(config)` returns one of `elasticjob_api.exitcodes.ExitCode` so the operator can tell
success, user error and infrastructure failure apart. `--standalone` starts a store in this
process and then takes the same path as a multi-node launch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from elasticjob_api.exitcodes import ExitCode
from torch.distributed.elastic.agent.server.api import RunResult, WorkerSpec
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.rendezvous import (
    RendezvousClosedError,
    RendezvousConnectionError,
    RendezvousParameters,
    RendezvousTimeoutError,
)
from torch.distributed.elastic.rendezvous import registry as rdzv_registry

from elasticjob_launcher import rendezvous, worker
from elasticjob_launcher import reporter as status
from elasticjob_launcher.agent import ElasticJobAgent, Hooks, JobCounters, StoreLost
from elasticjob_launcher.config import LauncherConfig, split_endpoint
from elasticjob_launcher.store import (
    StoreUnreachable,
    job_store,
    open_server,
    read_generation,
    wait_for_store,
)

log = logging.getLogger(__name__)


class _Reporting:
    """Turns agent events into status entries for this pod."""

    def __init__(self, sink: status.Reporter, binding: dict[str, Any] | None, max_restarts: int) -> None:
        self.sink = sink
        self.max_restarts = max_restarts
        self.binding = binding
        self.restarts = 0
        self.round: int | None = None
        self.world: int | None = None
        self.node_rank: int | None = None

    def _entry(self, failure: dict[str, Any] | None = None) -> dict[str, Any]:
        return status.worker_entry(
            restarts=self.restarts,
            round_=self.round,
            world_size=self.world,
            node_rank=self.node_rank,
            binding=self.binding,
            failure=failure,
        )

    def on_round(self, round_: int, world: int, node_rank: int, restarts: int) -> None:
        self.round, self.world, self.node_rank, self.restarts = round_, world, node_rank, restarts
        log.info("joined round %d as node %d; world size %d; job-wide restarts %d", round_, node_rank, world, restarts)
        self.sink.report(self._entry())

    def on_failure(self, result: RunResult, round_: int, restarts: int, stderr_tail: Callable[[int], str]) -> None:
        # restarts done: the fault that spends the budget is not restarted
        self.restarts = min(restarts, self.max_restarts)
        failure = None
        if result.failures:
            rank, first = min(result.failures.items(), key=lambda kv: kv[1].timestamp)
            # torchelastic's error file (written by @record) holds {"message": {"message": ..., "extraInfo": ...}}
            recorded = isinstance((first.error_file_data or {}).get("message"), dict)
            message = str(first.message or "") if recorded else ""
            failure = status.failure_entry(
                rank, first.exitcode, message or stderr_tail(first.local_rank) or str(first.message)
            )
        self.sink.report(self._entry(failure))


def _handler(config: LauncherConfig, endpoint: str, run_id: str) -> Any:
    conf: dict[str, Any] = {**config.rdzv_conf, "is_host": "false"}
    params = RendezvousParameters(
        backend=config.rdzv_backend,
        endpoint=endpoint,
        run_id=run_id,
        min_nodes=config.min_nodes,
        max_nodes=config.max_nodes,
        local_addr=config.local_addr,
        **conf,
    )
    rendezvous.register()
    return rdzv_registry.get_rendezvous_handler(params)


def _worker_command(config: LauncherConfig, hooks: _Reporting) -> tuple[Any, list[str], str]:
    """The workers' entrypoint, its arguments and torch's start method, pinning included."""
    plan = ""
    if config.numa_binding != "none":
        from elasticjob_launcher.pinning import plan_for_launch

        pinning = plan_for_launch(config.numa_binding, config.nproc_per_node)
        hooks.binding = pinning.report()
        plan = pinning.to_json()
    if config.preload:
        kind = "module" if config.module else "script"
        args = [kind, config.training_script, worker.agent_environment(), plan, *config.training_script_args]
        return worker.run_script, args, worker.START_METHOD
    entrypoint, args = config.entrypoint()
    if plan:
        entrypoint, args = pinning.wrap(entrypoint, args)
    return entrypoint, args, "spawn"  # the start method is unused for commands


def _run_once(config: LauncherConfig, endpoint: str, run_id: str, counters: JobCounters, hooks: _Reporting) -> int:
    entrypoint, args, start_method = _worker_command(config, hooks)
    handler = _handler(config, endpoint, run_id)
    spec = WorkerSpec(
        role=config.role,
        local_world_size=config.nproc_per_node,
        entrypoint=entrypoint,
        args=tuple(args),
        rdzv_handler=handler,
        max_restarts=config.max_restarts,
        monitor_interval=config.monitor_interval,
        local_addr=config.local_addr,
    )
    logs = DefaultLogsSpecs(
        log_dir=config.log_dir, redirects=Std.from_str(config.redirects), tee=Std.from_str(config.tee)
    )
    agent = ElasticJobAgent(
        spec=spec,
        logs_specs=logs,
        start_method=start_method,
        counters=counters,
        hooks=Hooks(on_round=hooks.on_round, on_failure=hooks.on_failure),
    )
    try:
        result = agent.run(config.role)
    except SignalException as exc:
        log.warning("left the job on %s (drained); the rendezvous stays open for the others", exc.sigval.name)
        if isinstance(handler, rendezvous.StoreRendezvousHandler):
            handler.leave()  # the next round need not wait for this node's keep-alive to go stale
        return ExitCode.DRAINED
    except RendezvousTimeoutError as exc:
        log.error("rendezvous timed out: %s", exc)
        return ExitCode.RENDEZVOUS_TIMEOUT
    except RendezvousClosedError:
        log.info("the rendezvous is closed: the job finished without this agent")
        return ExitCode.SUCCESS
    except RendezvousConnectionError as exc:
        raise StoreLost(str(exc)) from exc
    if result is None:  # torch's graceful rendezvous exit
        return ExitCode.SUCCESS
    # only the job's real end closes the rendezvous (never a drain or a store loss)
    try:
        handler.shutdown()
    except RuntimeError as exc:
        log.warning("could not close the rendezvous: %s", exc)
    if result.is_failed():
        for rank, failure in sorted(result.failures.items()):
            log.error("rank %d failed with exit code %d: %s", rank, failure.exitcode, failure.message)
        return ExitCode.USER_ERROR
    return ExitCode.SUCCESS


def run(config: LauncherConfig, sink: status.Reporter | None = None) -> int:
    """Run the worker-mode launch to its end; returns the process exit code."""
    # the root-cause fix of the stale-restart trap: a fresh worker store every round (agent.py)
    os.environ["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    sink = sink or status.Reporter.from_env()
    server = None
    if config.standalone:
        server = open_server("127.0.0.1", 0, generation=0)
        host, port = "127.0.0.1", server.port
    else:
        host, port = split_endpoint(config.rdzv_endpoint)
    hooks = _Reporting(sink, None, config.max_restarts)
    if config.preload:
        worker.warm_up()  # torch is imported by the forkserver while the store is awaited
    try:
        while True:
            try:
                client = wait_for_store(host, port, config.store_wait_timeout)
            except StoreUnreachable as exc:
                log.error("%s", exc)
                return ExitCode.STORE_UNREACHABLE
            generation = read_generation(client)
            run_id = f"{config.rdzv_id}-g{generation}"
            log.info("store generation %d: rendezvous id %s", generation, run_id)
            try:
                counters = JobCounters(job_store(client, run_id), floor=hooks.restarts)
                return _run_once(config, f"{host}:{port}", run_id, counters, hooks)
            except StoreLost as exc:
                log.warning("the rendezvous store was lost (%s); workers stopped, waiting for it to return", exc)
    finally:
        sink.close()
        del server
