"""The elastic agent: torch's LocalElasticAgent with job-wide restarts, draining and store recovery.

Built on `torch.distributed.elastic` (rendezvous handler, WorkerSpec, LocalElasticAgent); what
differs from `torch.distributed.launcher.api.launch_agent` and why:

* **The stale-restart trap (pytorch#135712).** With TCP-store sharing (torch's default) the rank-0
  agent's worker store is created once and reused by every later round, while workers assume a
  fresh store per attempt (`_create_c10d_store`: "We create a new TCPStore for every retry so no
  need to add prefix"). A restarted round therefore finds the previous round's keys (gloo's peer
  addresses, init counters) and connects to dead peers. On top, agents count restarts locally:
  the agent whose worker failed counts one, the others restart as a "membership change" and
  count none, so `TORCHELASTIC_RESTART_COUNT` and the restart budget drift apart. Fix: every
  round gets a fresh worker store (`TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`, set before the
  handler is created) and restarts are counted job-wide in the rendezvous store, once per round
  (`JobCounters.count_fault`), so every agent agrees on the count and on the budget.
* **Draining.** SIGTERM (scale-down) marks the current round as drained, stops the workers and
  leaves *without* closing the rendezvous; the survivors' next restart is not counted as a fault.
  Only a finished run (success, or the budget spent) closes the rendezvous. A restart for nodes
  waiting to join marks the round the same way first, so peers whose workers fail on the broken
  collective do not count it as a fault.
* **A round broken elsewhere.** An agent whose group failed (or hung and was killed) queues for
  the next round, but while it lives its peers see a full round of live members, and workers
  that are not in a collective (asleep, loading data, hung outside) never notice. A running
  agent therefore also reads the round's fault count once a second (`JobCounters.faulted`) and
  restarts its workers when another agent counted one.
* **A job that ended elsewhere.** torch's agents notice a closed rendezvous only at their next
  round, so when one node's group fails with the budget spent, the others' workers wait in their
  collectives (or in `init_process_group`, for a rank that crashed before it) until the backend's
  timeout, 30 minutes by default. Here a running agent reads the closed flag at most once a
  second (`CLOSED_CHECK_INTERVAL`, one store read) and stops its workers with `JobEnded`.
* **Store loss.** If the store stops answering, workers are stopped and the caller waits for the
  store to come back; a new store generation means a new rendezvous id.
* **Stalls.** With a stall timeout, `_monitor_workers` also reads the workers' progress slots
  (stall.py): a stalled rank is reported first (`Hooks.on_stall`, with its Python stack), then
  the local workers are killed (SIGTERM, SIGKILL after a grace) and the check returns a FAILED
  result, so the group restarts through the same job-wide path as a worker failure.

Limits: one role per agent (as torchrun); reading the rendezvous round uses the dynamic
handler's state holder, present in torch >= 2.0.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.distributed import Store
from torch.distributed.elastic.agent.server.api import RunResult, WorkerGroup, WorkerState
from torch.distributed.elastic.agent.server.local_elastic_agent import LocalElasticAgent
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure
from torch.distributed.elastic.rendezvous import RendezvousConnectionError, RendezvousStateError

from elasticjob_launcher import stall as stalls

log = logging.getLogger(__name__)


class StoreLost(RuntimeError):
    """The rendezvous store stopped answering while workers ran."""


class JobEnded(RuntimeError):
    """The rendezvous was closed while this node's workers ran: another node's group failed and
    spent the job-wide restart budget (a finished job closes it only after every agent's exit
    barrier, so never while workers run)."""


#: seconds between two reads of the rendezvous' closed flag while workers run
CLOSED_CHECK_INTERVAL = 1.0


class JobCounters:
    """Job-wide bookkeeping in the rendezvous store, shared by every agent of a run.

    A store that stops answering raises `StoreLost` from every method, whichever moment of the
    agent's loop notices it first (a worker fault caused by the loss is often first).
    """

    def __init__(self, store: Store, floor: int = 0) -> None:
        self.store = store
        if floor:
            self.raise_to(floor)

    def _add(self, key: str, amount: int) -> int:
        try:
            return int(self.store.add(key, amount))
        except RuntimeError as exc:  # DistNetworkError, DistStoreError: the store is gone
            raise StoreLost(f"store add {key!r}: {exc}") from exc

    def restarts(self) -> int:
        return self._add("restarts", 0)

    def raise_to(self, floor: int) -> None:
        """After a store restart: carry the count over (the largest any agent remembers)."""
        current = self.restarts()
        while current < floor:
            try:
                got = self.store.compare_set("restarts", str(current), str(floor)).decode()
            except RuntimeError as exc:
                raise StoreLost(f"store compare_set 'restarts': {exc}") from exc
            current = int(got) if got.isdigit() else self.restarts()

    def mark_drain(self, round_: int) -> None:
        self._add(f"drain/{round_}", 1)

    def drained(self, round_: int) -> bool:
        return self._add(f"drain/{round_}", 0) > 0

    def faulted(self, round_: int) -> bool:
        """Whether an agent counted a fault of `round_` (its group failed, or hung and was killed)."""
        return self._add(f"fault/{round_}", 0) > 0

    def count_fault(self, round_: int) -> tuple[int, bool]:
        """Count a worker-group fault of `round_` once job-wide; (total, whether it counted)."""
        if self._add(f"drain/{round_}", 0) > 0:
            return self.restarts(), False
        if self._add(f"fault/{round_}", 1) == 1:
            return self._add("restarts", 1), True
        return self.restarts(), False


def _no_stall_hook(report: stalls.StallReport) -> None:
    pass


@dataclass
class Hooks:
    """Callbacks for status reporting; they must not raise."""

    on_round: Callable[[int, int, int, int], None]  # (round, world size, node rank, restarts)
    #: (result, round, restarts, stderr excerpt of a local rank)
    on_failure: Callable[[RunResult, int, int, Callable[[int], str]], None]
    #: a stall, before the group is stopped; the FAILED result that follows goes to `on_failure`
    on_stall: Callable[[stalls.StallReport], None] = _no_stall_hook


def _round_of(handler: Any) -> int:
    if isinstance(getattr(handler, "round", None), int):  # the elasticjob handler
        return int(handler.round)
    holder = getattr(handler, "_state_holder", None)
    state = getattr(holder, "state", None)
    return int(getattr(state, "round", 0))


class ElasticJobAgent(LocalElasticAgent):
    """LocalElasticAgent whose restart budget and restart count are job-wide."""

    def __init__(
        self,
        *args: Any,
        counters: JobCounters,
        hooks: Hooks,
        stall_monitor: stalls.StallMonitor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.counters = counters
        self.hooks = hooks
        self.stall_monitor = stall_monitor
        self.round = 0
        self.drained = False
        self._closed_checked_at = 0.0

    def stderr_tail(self, local_rank: int, limit: int = 2048) -> str:
        """The end of a worker's stderr log, when it is teed or redirected to a file (--tee/--redirects 2)."""
        paths = getattr(getattr(self, "_pcontext", None), "stderrs", None) or {}
        path = paths.get(local_rank)
        if not path or not os.path.isfile(path):
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            return f.read().decode(errors="replace")

    def _slow_checks(self, spec: Any) -> tuple[bool, bool]:
        """At most once per CLOSED_CHECK_INTERVAL: (the rendezvous is closed, another agent counted
        a fault of this round). The second catches a round broken where this agent's workers do
        not notice: a peer group killed for a hang while these sleep outside any collective."""
        now = time.monotonic()
        if now - self._closed_checked_at < CLOSED_CHECK_INTERVAL:
            return False, False
        self._closed_checked_at = now
        return bool(spec.rdzv_handler.is_closed()), self.counters.faulted(self.round)

    def _rendezvous(self, worker_group: WorkerGroup) -> None:
        super()._rendezvous(worker_group)
        self.round = _round_of(worker_group.spec.rdzv_handler)
        restarts = self.counters.restarts()
        # TORCHELASTIC_RESTART_COUNT = max_restarts - remaining: now the job-wide count everywhere
        self._remaining_restarts = worker_group.spec.max_restarts - restarts
        world = (worker_group.group_world_size or 1) * worker_group.spec.local_world_size
        self.hooks.on_round(self.round, world, worker_group.group_rank or 0, restarts)

    def _start_workers(self, worker_group: WorkerGroup) -> dict[int, Any]:
        if self.stall_monitor is not None:
            self.stall_monitor.reset(worker_group.spec.local_world_size)  # before the workers map their slots
        return super()._start_workers(worker_group)

    def _monitor_workers(self, worker_group: WorkerGroup) -> RunResult:
        result = super()._monitor_workers(worker_group)
        if self.stall_monitor is None or result.state != WorkerState.HEALTHY or self._pcontext is None:
            return result
        found = self.stall_monitor.check()
        if not found:
            return result
        return self._stalled(worker_group, self.stall_monitor, dict(self._pcontext.pids()), found)

    def _stalled(
        self, worker_group: WorkerGroup, monitor: stalls.StallMonitor, pids: dict[int, int], found: list[stalls.Stall]
    ) -> RunResult:
        """Report the stall (stacks first, while the workers live), then kill the local workers."""
        ranks = {w.local_rank: w.global_rank for w in worker_group.workers}
        first = found[0]
        report = stalls.StallReport(
            global_rank=ranks.get(first.local_rank, first.local_rank),
            stall=first,
            timeout=monitor.timeout,
            stacks=monitor.dump_stacks(pids),
            others=[(ranks.get(s.local_rank, s.local_rank), s) for s in found[1:]],
        )
        report.nccl_trace = monitor.nccl_trace(report.global_rank)
        log.error("%s", report.log_text())
        self.hooks.on_stall(report)
        sent = stalls.kill(pids.values(), monitor.kill_grace)
        pid = pids.get(first.local_rank, first.pid)
        failure = ProcessFailure(first.local_rank, pid, -sent.get(pid, signal.SIGTERM), "")
        return RunResult(state=WorkerState.FAILED, failures={report.global_rank: failure})

    def _invoke_run(self, role: str = "default") -> RunResult:
        group = self._worker_group
        spec = group.spec
        try:
            # inside the try: a SIGTERM while the round forms or the workers start is a drain too
            self._initialize_workers(group)
            while True:
                time.sleep(spec.monitor_interval)
                result = self._monitor_workers(group)
                group.state = result.state
                if result.state == WorkerState.SUCCEEDED:
                    self._exit_barrier()
                    return result
                if result.state in {WorkerState.UNHEALTHY, WorkerState.FAILED}:
                    total, counted = self.counters.count_fault(self.round)
                    self.hooks.on_failure(result, self.round, total, self.stderr_tail)
                    if total > spec.max_restarts:
                        log.error("worker group failed; job-wide restarts %d > max %d", total, spec.max_restarts)
                        self._stop_workers(group)
                        group.state = WorkerState.FAILED
                        return result
                    log.info(
                        "worker group %s in round %d; job-wide restart %d/%d%s",
                        result.state.name,
                        self.round,
                        total,
                        spec.max_restarts,
                        "" if counted else " (already counted by another agent, or a drain)",
                    )
                    self._restart_workers(group)
                elif result.state == WorkerState.HEALTHY:
                    try:
                        waiting = spec.rdzv_handler.num_nodes_waiting()
                        # a drained agent never answers its peers' collectives (it may leave before they
                        # even connect): the others must not wait for gloo's timeout
                        drained = self.counters.drained(self.round)
                        if waiting > 0 and not drained:
                            # the round ends by design: marked before this agent stops its workers, so
                            # a peer whose workers fail on the broken collective does not count a fault
                            self.counters.mark_drain(self.round)
                        ended, faulted = self._slow_checks(spec)
                    except (RendezvousConnectionError, RendezvousStateError, RuntimeError) as exc:
                        raise StoreLost(str(exc)) from exc
                    if ended:
                        log.error("the rendezvous was closed: the job failed on another node; stopping the workers")
                        self._stop_workers(group)
                        group.state = WorkerState.FAILED
                        raise JobEnded("the job failed on another node (its restart budget is spent)")
                    if waiting > 0 or drained or faulted:
                        why = (
                            "an agent was drained"
                            if drained
                            else "another agent's group failed in this round"
                            if faulted
                            else f"{waiting} agents waiting to join"
                        )
                        log.info("%s; starting round %d+1", why, self.round)
                        self._restart_workers(group)
        except SignalException:
            self.drained = True
            try:
                self.counters.mark_drain(self.round)
            except StoreLost as exc:
                log.warning("could not mark the drain in the store: %s", exc)
            raise
