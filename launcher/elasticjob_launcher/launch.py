"""`launch_agent`: torch's launcher contract, run by the project's agent.

1. Place the store: `standalone` hosts one here; `static` hosts it on node rank 0 at
   MASTER_ADDR:MASTER_PORT; c10d and elasticjob reach it at `rdzv_endpoint`, and host it here only
   when that endpoint is this host and nobody serves it yet (torch's c10d behaviour).
2. Wait for the store; a restarted store's generation names the rendezvous (`<run_id>-g<generation>`).
3. Rendezvous and run the workers under `ElasticJobAgent` (job-wide restarts, drains, agent.py),
   with a stall watch when `stall_timeout` is set: a progress directory per launch, named to
   the workers in `ELASTICJOB_PROGRESS_DIR`, and the NCCL defaults of stall.py, both put in this
   process's environment for the launch only (so exec'd and preloaded workers inherit them).
4. On a store loss, stop the workers and go back to 2; otherwise end as torch's `launch_agent`:
   per-rank return values on success, `ChildFailedError` when the workers failed with the restart
   budget spent, `SignalException` when drained (SIGTERM), `RendezvousTimeoutError`, and
   `StoreUnreachable` when the store never answered. `cli.entry` turns these into exit codes.

Exactly one `events.record` per launch, as torch's. Limits: one role per agent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from torch.distributed import Store, TCPStore
from torch.distributed.elastic import events, metrics
from torch.distributed.elastic.agent.server.api import RunResult, WorkerSpec
from torch.distributed.elastic.metrics.api import MetricsConfig
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous import (
    RendezvousClosedError,
    RendezvousConnectionError,
    RendezvousHandler,
    RendezvousInfo,
    RendezvousParameters,
)
from torch.distributed.elastic.rendezvous import registry as rdzv_registry

from elasticjob_launcher import rendezvous, worker
from elasticjob_launcher import reporter as status
from elasticjob_launcher.agent import ElasticJobAgent, Hooks, JobCounters, JobEnded, StoreLost
from elasticjob_launcher.config import LaunchConfig, split_endpoint
from elasticjob_launcher.stall import StallMonitor, StallReport, stall_watch
from elasticjob_launcher.static_rendezvous import StaticRendezvousHandler
from elasticjob_launcher.store import (
    StoreUnreachable,
    job_store,
    open_server,
    read_generation,
    tcp_answers,
    wait_for_store,
)

log = logging.getLogger(__name__)

#: torch's c10d handler reads it: a fresh worker store every round (the stale-restart fix, agent.py)
NO_SHARED_STORE = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"

Entrypoint = Callable[..., Any] | str


class _Reporting:
    """Turns agent events into status entries for this pod."""

    def __init__(self, sink: status.Reporter, max_restarts: int) -> None:
        self.sink = sink
        self.max_restarts = max_restarts
        self.binding: dict[str, Any] | None = None
        self.restarts = 0
        self.round: int | None = None
        self.world: int | None = None
        self.node_rank: int | None = None
        self.hang: dict[str, Any] | None = None  # the stall's lastFailure, until its FAILED result

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

    def on_stall(self, report: StallReport) -> None:
        """Reported before the agent acts; the FAILED result that follows keeps this lastFailure."""
        self.hang = status.hang_entry(
            report.global_rank,
            report.message(status.MESSAGE_LIMIT),
            step=report.stall.step,
            stalled_seconds=report.stall.seconds,
            round_=self.round,
        )
        self.sink.report(self._entry(self.hang))

    def on_failure(self, result: RunResult, round_: int, restarts: int, stderr_tail: Callable[[int], str]) -> None:
        # restarts done: the fault that spends the budget is not restarted
        self.restarts = min(restarts, self.max_restarts)
        failure, self.hang = self.hang, None
        if failure is None and result.failures:
            rank, first = min(result.failures.items(), key=lambda kv: kv[1].timestamp)
            # torchelastic's error file (written by @record) holds {"message": {"message": ..., "extraInfo": ...}}
            recorded = isinstance((first.error_file_data or {}).get("message"), dict)
            message = status.failure_text(first.message) if recorded else ""
            failure = status.failure_entry(
                rank,
                first.exitcode,
                message or stderr_tail(first.local_rank) or status.failure_text(first.message),
                round_=round_,
            )
        self.sink.report(self._entry(failure))


@contextlib.contextmanager
def _no_shared_store() -> Iterator[None]:
    """Set NO_SHARED_STORE only while torch's handler reads it, so it never reaches the workers."""
    before = os.environ.get(NO_SHARED_STORE)
    os.environ[NO_SHARED_STORE] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(NO_SHARED_STORE, None)
        else:
            os.environ[NO_SHARED_STORE] = before


class _FreshStoreHandler(RendezvousHandler):
    """torch's c10d handler with a fresh worker store every round (pytorch#135712, agent.py)."""

    def __init__(self, inner: RendezvousHandler) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # the agent reads the round from the inner state holder
        return getattr(self.inner, name)

    def get_backend(self) -> str:
        return self.inner.get_backend()

    @property
    def use_agent_store(self) -> bool:
        return False

    def next_rendezvous(self) -> RendezvousInfo:
        with _no_shared_store():
            return self.inner.next_rendezvous()

    def is_closed(self) -> bool:
        return self.inner.is_closed()

    def set_closed(self) -> None:
        self.inner.set_closed()  # type: ignore[no-untyped-call]

    def num_nodes_waiting(self) -> int:
        return self.inner.num_nodes_waiting()

    def get_run_id(self) -> str:
        return self.inner.get_run_id()

    def shutdown(self) -> bool:
        return self.inner.shutdown()


def _handler(config: LaunchConfig, endpoint: str, run_id: str, store: Store) -> RendezvousHandler:
    if config.rdzv_backend == "static":
        master = split_endpoint(endpoint)
        return StaticRendezvousHandler(run_id, store, config.node_rank, config.max_nodes, master)
    conf: dict[str, Any] = {**config.rdzv_configs, "is_host": "false"}  # the store is already placed
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
    with _no_shared_store():
        handler = rdzv_registry.get_rendezvous_handler(params)
    return handler if config.rdzv_backend == rendezvous.BACKEND else _FreshStoreHandler(handler)


def _is_local(host: str) -> bool:
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
        mine = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except socket.gaierror:
        return False
    return bool(addrs & mine) or any(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addrs)


def _place_store(config: LaunchConfig) -> tuple[str, int, TCPStore | None]:
    """(host, port) of the store, and the server when this process hosts it."""
    if config.standalone:
        server = open_server("127.0.0.1", 0, generation=0)
        return "127.0.0.1", server.port, server
    host, port = split_endpoint(config.rdzv_endpoint)
    if config.rdzv_backend == "static":
        return host, port, open_server(host, port, generation=0) if config.node_rank == 0 else None
    if _is_local(host) and tcp_answers(host, port) is not None:
        try:
            server = open_server(host, port, generation=0)
        except RuntimeError as exc:  # another agent of this host was first: use its store
            log.info("the rendezvous store %s:%d is served by another agent (%s)", host, port, exc)
            return host, port, None
        log.info("hosting the rendezvous store on %s:%d (nobody served this local endpoint)", host, server.port)
        return host, server.port, server
    return host, port, None


def _python_target(entrypoint: Entrypoint, args: list[Any]) -> tuple[str, str, list[str]] | None:
    """("script"|"module", target, rest) when the entrypoint is this interpreter running a script."""
    if entrypoint not in (sys.executable, os.environ.get("PYTHON_EXEC", sys.executable)):
        return None
    rest = [str(a) for a in args]
    while rest and rest[0] in ("-u", "-B"):
        rest = rest[1:]
    if len(rest) >= 2 and rest[0] == "-m":
        return "module", rest[1], rest[2:]
    if rest and not rest[0].startswith("-"):
        return "script", rest[0], rest[1:]
    return None


def _worker_command(
    config: LaunchConfig, entrypoint: Entrypoint, args: list[Any], hooks: _Reporting
) -> tuple[Entrypoint, list[Any], str]:
    """The workers' entrypoint, its arguments and torch's start method, pinning included."""
    plan, pinning = "", None
    if config.pinning != "none":
        from elasticjob_launcher.pinning import plan_for_launch

        pinning = plan_for_launch(config.pinning, config.nproc_per_node)
        hooks.binding = pinning.report()
        plan = pinning.to_json()
    if callable(entrypoint):
        if plan:
            return worker.run_pinned, [plan, entrypoint, *args], config.start_method
        return entrypoint, list(args), config.start_method
    target = _python_target(entrypoint, args)
    if target is not None and config.worker_start == "preload":
        kind, name, rest = target
        return worker.run_script, [kind, name, worker.agent_environment(), plan, *rest], worker.START_METHOD
    if pinning is not None:
        return (*pinning.wrap(entrypoint, [str(a) for a in args]), config.start_method)
    return entrypoint, list(args), config.start_method  # the start method is unused for commands


def entrypoint_name(entrypoint: Entrypoint | None, args: list[Any]) -> str:
    """torch's rule: a function's name; for this interpreter, its script; else the command."""
    if callable(entrypoint):
        return str(getattr(entrypoint, "__name__", repr(entrypoint)))
    if isinstance(entrypoint, str):
        if entrypoint == sys.executable:
            return next((str(a) for a in args if not str(a).startswith("-")), "")
        return entrypoint
    return ""


def _run_once(
    config: LaunchConfig,
    *,
    entrypoint: Entrypoint,
    args: list[Any],
    store: Store,
    endpoint: str,
    run_id: str,
    counters: JobCounters,
    hooks: _Reporting,
    stall_monitor: StallMonitor | None = None,
) -> dict[int, Any]:
    worker_entry, worker_args, start_method = _worker_command(config, entrypoint, args, hooks)
    handler = _handler(config, endpoint, run_id, store)
    spec = WorkerSpec(
        role=config.role,
        local_world_size=config.nproc_per_node,
        entrypoint=worker_entry,
        args=tuple(worker_args),
        rdzv_handler=handler,
        max_restarts=config.max_restarts,
        monitor_interval=config.monitor_interval,
        local_addr=config.local_addr,
        event_log_handler=config.event_log_handler,
        duplicate_stdout_filters=config.duplicate_stdout_filters,
        duplicate_stderr_filters=config.duplicate_stderr_filters,
        virtual_local_rank=config.virtual_local_rank,
    )
    agent = ElasticJobAgent(
        spec=spec,
        logs_specs=config.logs_specs,
        start_method=start_method,
        log_line_prefix_template=config.log_line_prefix_template,
        shutdown_timeout=config.shutdown_timeout,
        counters=counters,
        hooks=Hooks(on_round=hooks.on_round, on_failure=hooks.on_failure, on_stall=hooks.on_stall),
        stall_monitor=stall_monitor,
    )
    shutdown_rdzv = True  # only the job's real end closes the rendezvous (never a drain or a store loss)
    try:
        metrics.initialize_metrics(MetricsConfig(config.metrics_cfg))
        result = agent.run(config.role)
        events.record(agent.get_event_succeeded(), config.event_log_handler)
        if result is None:  # torch's graceful rendezvous exit
            shutdown_rdzv = False
            return {}
        if result.is_failed():
            for rank, failure in sorted(result.failures.items()):
                log.error("rank %d failed with exit code %d: %s", rank, failure.exitcode, failure.message)
            raise ChildFailedError(name=entrypoint_name(entrypoint, args), failures=result.failures)
        return dict(result.return_values)
    except ChildFailedError:
        raise
    except JobEnded:
        shutdown_rdzv = False  # closed already, by the node whose failure ended the job
        events.record(agent.get_event_failed(), config.event_log_handler)
        raise
    except SignalException as exc:
        shutdown_rdzv = False
        log.warning("left the job on %s (drained); the rendezvous stays open for the others", exc.sigval.name)
        if isinstance(handler, rendezvous.StoreRendezvousHandler):
            handler.leave()  # the next round need not wait for this node's keep-alive to go stale
        events.record(agent.get_event_failed(), config.event_log_handler)
        raise
    except RendezvousClosedError:
        shutdown_rdzv = False
        log.info("the rendezvous is closed: the job finished without this agent")
        events.record(agent.get_event_succeeded(), config.event_log_handler)
        return {}
    except (RendezvousConnectionError, StoreLost) as exc:
        shutdown_rdzv = False
        raise StoreLost(str(exc)) from exc
    except Exception:
        events.record(agent.get_event_failed(), config.event_log_handler)
        raise
    finally:
        if shutdown_rdzv:
            try:
                handler.shutdown()
            except Exception as exc:  # the result stands; torch logs this too
                log.warning("could not close the rendezvous: %s", exc)


def launch_agent(
    config: LaunchConfig, entrypoint: Entrypoint, args: list[Any], sink: status.Reporter | None = None
) -> dict[int, Any]:
    """Run one node's agent to the job's end (see the module docstring); per-rank return values."""
    if not config.run_id:
        config = replace(config, run_id=str(uuid.uuid4().int))
        log.warning("config has no run_id, generated a random run_id: %s", config.run_id)
    os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = config.signals_to_handle
    if sink is None:
        sink = status.Reporter.from_env() if config.report_status else status.Reporter(None, "report_status=False")
    host, port, server = _place_store(config)
    hooks = _Reporting(sink, config.max_restarts)
    if _python_target(entrypoint, args) is not None and config.worker_start == "preload":
        worker.warm_up()  # torch is imported by the forkserver while the store is awaited
    try:
        with stall_watch(config.stall_timeout) as stall_monitor:
            return _launch(config, entrypoint, args, host=host, port=port, hooks=hooks, stall_monitor=stall_monitor)
    finally:
        sink.close()
        del server


def _launch(
    config: LaunchConfig,
    entrypoint: Entrypoint,
    args: list[Any],
    *,
    host: str,
    port: int,
    hooks: _Reporting,
    stall_monitor: StallMonitor | None,
) -> dict[int, Any]:
    """Steps 2-4 of the module docstring: wait for the store, run, and again after a store loss."""
    while True:
        client = wait_for_store(host, port, config.store_wait_timeout)
        generation = read_generation(client)
        run_id = config.run_id if generation == 0 else f"{config.run_id}-g{generation}"
        log.info("store generation %d: rendezvous id %s", generation, run_id)
        try:
            counters = JobCounters(job_store(client, run_id), floor=hooks.restarts)
            return _run_once(
                config,
                entrypoint=entrypoint,
                args=args,
                store=client,
                endpoint=f"{host}:{port}",
                run_id=run_id,
                counters=counters,
                hooks=hooks,
                stall_monitor=stall_monitor,
            )
        except StoreLost as exc:
            if config.rdzv_backend == "static":
                raise StoreUnreachable(f"the static rendezvous store was lost: {exc}") from exc
            log.warning("the rendezvous store was lost (%s); workers stopped, waiting for it to return", exc)


__all__ = ["ChildFailedError", "StoreUnreachable", "entrypoint_name", "launch_agent"]
