"""kopf handlers for ElasticJob: validate into the typed model, plan with pure functions, then act.

Every job has one handler, a kopf timer that runs `reconcile` as soon as the job appears and then
every `Options.reconcile_interval` seconds. The handlers are registered by `registry(options)` on
an explicit kopf registry, and read their settings from the memo, never from the environment.
`reconcile` is safe to run at any time and any number of times: it reads the job's pods from an
in-memory kopf index (no list calls), asks the planner what to do, creates/deletes what the plan
says and writes the status through kopf's patch. There are no create or update handlers: a spec
change (`kubectl scale`) is taken in at the next tick, and kopf keeps no bookkeeping annotations
on the jobs (two fewer writes per job). An invalid object gets a Failed condition with the
validation message; no handler raises on it, so one bad object never stalls the operator.

A tick returns at once, on the event loop, while the job is steady or the watches have not yet
shown what its last reconcile wrote (`pacing`); otherwise the reconcile runs on kopf's thread
pool. So 1,000 steady jobs cost 500 dictionary look-ups a second, not 500 reconciles, and a slow
watch does not make the operator create the same pods again. kopf runs one timer per job at a
time, so reconciles of one job never overlap.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from elasticjob_api.models import GROUP, PLURAL, VERSION, ElasticJob, Phase
from elasticjob_api.times import format_time, now_text, parse_time
from pydantic import ValidationError

from elasticjob_operator import builders, failures, gang, naming, pacing, queueing, workloads
from elasticjob_operator import pods as podinfo
from elasticjob_operator.builders import BuildError
from elasticjob_operator.conditions import GANG_SCHEDULING, set_condition, set_phase_conditions
from elasticjob_operator.kube import Kube
from elasticjob_operator.kueuewatch import KueueWatch
from elasticjob_operator.metrics import Metrics
from elasticjob_operator.planner import Observed, Plan, PlannerSettings, plan

RETRY_BACKOFF = 2.0


@dataclass(frozen=True)
class Options:
    """The operator's settings the handlers use (cli.py's flags); one per registry, in the memo."""

    #: seconds between a job's reconciles (its kopf timer's interval)
    reconcile_interval: float = 2.0
    #: how long a node may be NotReady before its pods are force-deleted and replaced
    node_lost_grace_seconds: float = 30.0
    #: a NetworkPolicy per job that admits only its workers to its store
    store_network_policy: bool = True
    #: kopf's thread pool, where reconciles run
    max_workers: int = 8

    def __post_init__(self) -> None:
        if self.reconcile_interval <= 0:
            raise ValueError(f"the reconcile interval must be positive, not {self.reconcile_interval}")
        if self.node_lost_grace_seconds < 0:
            raise ValueError(f"the node-lost grace must be at least 0 s, not {self.node_lost_grace_seconds}")
        if self.max_workers < 1:
            raise ValueError(f"max workers must be at least 1, not {self.max_workers}")


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf settings tuned for recovery in seconds, and the shared API clients."""
    prefix = GROUP
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # `kubectl describe` shows events as from the operator, not from its framework
    settings.posting.reporting_component = naming.MANAGER
    settings.posting.reporting_instance = socket.gethostname()  # the pod's name in a pod
    settings.posting.event_name_prefix = f"{naming.MANAGER}-"
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.reconnect_backoff = 1.0
    settings.batching.error_delays = [1, 2, 5, 10]
    if memo.get("options") is None:
        memo.options = Options()
    options: Options = memo.options
    settings.execution.max_workers = options.max_workers
    memo.executor = settings.execution.executor
    memo.steady = memo.expected = None
    memo.gone_disrupted = {}  # (namespace, job) -> {pod name: DisruptionTarget reason}
    if memo.get("kube") is None:
        memo.kube = Kube()
    if memo.get("metrics") is None:  # cli.main passes one wired to its leader; without it, one of its own
        memo.metrics = Metrics()
    if memo.get("kueue") is None:  # Kueue's Workloads and flavors (kueuewatch.py: not kopf's watches)
        memo.kueue = KueueWatch(memo.kube.api)
        memo.kueue.on_deleting = functools.partial(release_orphan, memo)
        memo.kueue.start()
    memo.settings = PlannerSettings(node_lost_grace=timedelta(seconds=options.node_lost_grace_seconds))


async def attach_probes(memo: kopf.Memo, **_: Any) -> None:
    """The liveness probe checks this loop (health.py)."""
    health = memo.get("health")
    if health is not None:
        health.attach(asyncio.get_running_loop())


async def count_jobs(*, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """The watch-fed metrics (jobs by phase, world size, created, finished): on every replica."""
    memo.metrics.job_event(event.get("type"), event.get("object") or {})


def _leading(memo: kopf.Memo) -> bool:
    """Whether this replica may act: no election, or it holds the Lease now (leader.py)."""
    leader = memo.get("leader")
    return leader is None or bool(leader.leading())


# The index functions are async so that kopf calls them on the event loop: as plain functions they
# would each take a trip through the thread pool, one per pod or node event.
async def pods_by_job(*, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Any, Any]:
    job = labels.get(naming.LABEL_JOB)
    return {(namespace, job): podinfo.essentials(dict(body))} if job else {}


async def remember_disruptions(
    *,
    event: kopf.RawEvent,
    namespace: str | None,
    name: str | None,
    labels: Mapping[str, str],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A deleted worker pod that carried DisruptionTarget (preempted, evicted) is remembered for
    its job's next reconcile, which would otherwise see only that the pod is gone (a pod is often
    Terminating for less than a reconcile interval). The memory is the process's: an operator
    restart in that window, or a reconcile that fails, forgets it, and the loss counts."""
    job = labels.get(naming.LABEL_JOB)
    if event.get("type") != "DELETED" or not job or name is None:
        return
    reason = failures.disruption(dict(event.get("object") or {}))
    if reason:
        memo.gone_disrupted.setdefault((namespace, job), {})[name] = reason


def release_orphan(memo: kopf.Memo, workload: dict[str, Any]) -> None:
    """A Workload being deleted whose ElasticJob is gone: no reconcile will release it, so this
    does (kueuewatch calls it from its thread)."""
    job = queueing.owner_job(workload)
    if not (_leading(memo) and job and queueing.holds_finalizer(workload)):
        return
    kube: Kube = memo.kube
    namespace = workload["metadata"].get("namespace")
    if kube.get_optional(f"{GROUP}/{VERSION}", "ElasticJob", job, namespace) is None:
        kube.remove_finalizer(workload, queueing.FINALIZER)


def _workloads(body: Mapping[str, Any], memo: kopf.Memo) -> tuple[dict[str, Any], ...] | None:
    """A queued job's Workloads as kueuewatch shows them; None for a job without a queue label."""
    meta = body.get("metadata") or {}
    if not (meta.get("labels") or {}).get(queueing.QUEUE_LABEL):
        return None
    watcher: KueueWatch = memo.kueue
    return watcher.workloads(meta.get("namespace"), meta.get("name"))


def _queue_state(job: ElasticJob, seen: pacing.Seen, memo: kopf.Memo) -> queueing.QueueState | None:
    queue = queueing.queue_name(job)
    if queue is None:
        return None
    watcher: KueueWatch = memo.kueue
    return queueing.QueueState(queue, seen.workloads, watcher.flavors())


def _kueue_missing(decided: Plan, problem: str, now: datetime) -> None:
    """Say on the job that its queue label found no Kueue: it waits, unqueued jobs' way is not taken."""
    message = (
        f"the job is labelled {queueing.QUEUE_LABEL} but its Workload could not be made ({problem}): install "
        "Kueue with ElasticJob.v1alpha1.elasticjob.io in integrations.externalFrameworks, or remove the label; "
        "until then the job waits"
    )
    cond = {"type": queueing.ADMITTED, "status": "False", "reason": "KueueNotInstalled", "message": message}
    decided.status["conditions"] = set_condition(decided.status.get("conditions") or [], cond, format_time(now))


async def nodes_not_ready(*, name: str, status: kopf.Status, **_: Any) -> dict[str, datetime | None]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return {name: None}
            since = cond.get("lastTransitionTime")
            return {name: parse_time(since) if since else None}
    return {name: None}


def _differs(new: Any, old: Any) -> bool:
    """Whether merging `new` into `old` would change anything (so unchanged status is not re-sent)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return any(_differs(v, old.get(k)) for k, v in new.items())
    return bool(new != old)


def _invalid(body: kopf.Body, patch: kopf.Patch, message: str) -> bool:
    """Fail the job with the validation message; whether its status is written (once)."""
    status = body.get("status") or {}
    if status.get("phase") == Phase.FAILED.value:
        return False
    now = now_text()
    patch.status["phase"] = Phase.FAILED.value
    patch.status["conditions"] = set_phase_conditions(
        status.get("conditions") or [], Phase.FAILED, "InvalidSpec", message, now
    )
    patch.status["completionTime"] = now
    kopf.event(body, type="Warning", reason="InvalidSpec", message=message[:1000])
    return True


def _gang_condition(job: ElasticJob, decided: Plan, outcome: gang.Outcome, now: datetime) -> None:
    """Say on the job whether its gang's group is there and follows minReplicas."""
    base = decided.status.get("conditions") or [
        c.model_dump(by_alias=True, exclude_none=True) for c in job.status.conditions
    ]
    group = builders.build_pod_group(job) or {}
    scheduler = job.spec.scheduling.scheduler_name or "default-scheduler"
    if outcome.problem is None:
        status, reason = "True", "PodGroupCreated"
        message = (
            f"{group.get('kind')} {builders.pod_group_name(job)} exists for {scheduler}, "
            f"gang of {job.spec.min_replicas} (minReplicas)"
        )
    elif not outcome.missing:
        status, reason = "False", "PodGroupNotUpdated"
        message = f"{outcome.problem}; tried again at the next reconcile"
    else:
        status, reason = "False", "GangSchedulerMissing"
        fix = (
            "turn on kube-scheduler's gang scheduling (Kubernetes >= 1.35: feature gates GenericWorkload and "
            "GangScheduling, API scheduling.k8s.io/v1alpha1) or set schedulerName to a gang scheduler"
            if builders.uses_workload_api(job)
            else f"install the gang scheduler of schedulerName {scheduler!r}"
        )
        message = (
            f"scheduling.gang is set but its group could not be created ({outcome.problem}): {fix}; "
            "until then the pods wait unscheduled"
        )
    cond = {"type": GANG_SCHEDULING, "status": status, "reason": reason, "message": message}
    decided.status["conditions"] = set_condition(base, cond, format_time(now))


def reconcile(  # noqa: PLR0917 (kopf's kwargs, passed on as they come)
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    pods_by_job: kopf.Index[Any, Any],
    nodes_not_ready: kopf.Index[str, datetime | None],
    logger: logging.Logger | kopf.ObjectLogger,
) -> None:
    if not _leading(memo):
        return  # lost the lease since the tick checked: act on nothing
    memo.steady = memo.expected = None
    seen = pacing.seen(body, pods_by_job, nodes_not_ready, _workloads(body, memo))
    now = datetime.now(UTC)
    # taken for this reconcile only: the first plan after a pod is gone decides whether it counts
    gone_disrupted = memo.gone_disrupted.pop(
        (body.get("metadata", {}).get("namespace"), body.get("metadata", {}).get("name")), {}
    )
    try:
        job = ElasticJob.model_validate(dict(body))
        observed = Observed(
            pods=list(seen.pods),
            nodes_not_ready_since=dict(seen.nodes),
            now=now,
            gone_disrupted=gone_disrupted,
            queue=_queue_state(job, seen, memo),
        )
        decided = plan(job, observed, memo.settings)
    except (ValidationError, BuildError) as exc:
        message = f"invalid spec: {exc}" if isinstance(exc, ValidationError) else str(exc)
        memo.expected = pacing.expect(seen, now, patched=_invalid(body, patch, message), created=(), deleted=())
        return
    kube: Kube = memo.kube
    metrics: Metrics = memo.metrics
    for action in decided.workloads:
        problem = workloads.carry_out(kube, job, action)
        if problem is not None:
            _kueue_missing(decided, problem, now)
    # two waves of concurrent creates: a pod needs its ServiceAccount to exist, a RoleBinding its Role
    later: list[dict[str, Any]] = []
    if decided.create:
        owned = builders.build_owned_objects(job, store_network_policy=memo.options.store_network_policy)
        later = [obj for obj in owned if obj["kind"] == "RoleBinding"]
        group = builders.pod_group_name(job)
        first = [o for o in owned if o["kind"] != "RoleBinding" and o["metadata"]["name"] != group]
        kube.map(kube.create_optional, first)  # the gang's group: gang.sync, below
    if gang.needs_sync(job, creating=bool(decided.create), phase=decided.status.get("phase")):
        outcome = gang.sync(kube, job)
        if outcome.done:
            logger.info("%s the gang's group %s", outcome.done, builders.pod_group_name(job))
        _gang_condition(job, decided, outcome, now)
    created = set()
    fresh = kube.map(kube.create, later + decided.create)[len(later) :]
    for manifest, new in zip(decided.create, fresh, strict=True):
        if new:
            created.add(manifest["metadata"]["name"])
            logger.info("created %s %s", manifest["kind"], manifest["metadata"]["name"])
    for deletion in decided.delete:
        kube.delete_pod(job.namespace, deletion.name, deletion.grace_seconds)
        logger.info("deleted pod %s (%s)", deletion.name, deletion.reason)
    for event in decided.events:
        if event.creates and not created.intersection(event.creates):
            continue  # another reconcile created them already
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        metrics.decided(event.reason, event.cause)
    if decided.delete_job:
        kube.delete_job(job.namespace, job.name, GROUP, VERSION, PLURAL)
        return
    previous = body.get("status") or {}
    changed = {k: v for k, v in decided.status.items() if _differs(v, previous.get(k))}
    if changed:
        patch.status.update(changed)
    elif not decided.acts:
        memo.steady = pacing.steady(seen, now, decided.recheck_at)
    memo.expected = pacing.expect(
        seen,
        now,
        patched=bool(changed),
        created=(m["metadata"]["name"] for m in decided.create if m["kind"] == "Pod"),
        deleted=(d.name for d in decided.delete),
    )


def _reconcile_kwargs(kwargs: dict[str, Any]) -> None:
    metrics: Metrics = kwargs["memo"].metrics
    with metrics.reconciling():
        reconcile(
            kwargs["body"],
            kwargs["patch"],
            kwargs["memo"],
            kwargs["pods_by_job"],
            kwargs["nodes_not_ready"],
            kwargs["logger"],
        )


async def reconcile_timer(**kwargs: Any) -> None:
    """A job's reconcile: at once when it appears, then every interval unless paced."""
    memo, now = kwargs["memo"], datetime.now(UTC)
    if not _leading(memo):
        return  # a standby (or a leader that has just lost the lease) reconciles nothing
    seen = pacing.seen(
        kwargs["body"], kwargs["pods_by_job"], kwargs["nodes_not_ready"], _workloads(kwargs["body"], memo)
    )
    if pacing.waiting_for_watch(memo.get("expected"), seen, now) or pacing.still_steady(memo.get("steady"), seen, now):
        return
    # in kopf's context (kopf.event reads its settings from a context variable), as kopf runs sync handlers
    context = contextvars.copy_context()
    run = functools.partial(context.run, _reconcile_kwargs, kwargs)
    memo.metrics.in_flight.inc()
    try:
        await asyncio.get_running_loop().run_in_executor(memo.executor, run)
    finally:
        memo.metrics.in_flight.dec()


def registry(options: Options) -> kopf.OperatorRegistry:
    """The handlers on a registry of their own, the timer at `options.reconcile_interval`
    (`kopf.run(registry=..., memo=kopf.Memo(options=options, ...))`): two operators with other
    settings can run in one process."""
    r = kopf.OperatorRegistry()
    # kopf puts its login on its default registry only: the kubernetes client's (in-cluster or kubeconfig)
    kopf.on.login(registry=r)(kopf.login_via_client)
    kopf.on.startup(registry=r)(configure)
    kopf.on.startup(registry=r)(attach_probes)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=r)(count_jobs)
    kopf.index("pods", labels={naming.LABEL_MANAGED_BY: naming.MANAGER}, registry=r)(pods_by_job)
    workers = {naming.LABEL_MANAGED_BY: naming.MANAGER, naming.LABEL_ROLE: naming.ROLE_WORKER}
    kopf.on.event("pods", labels=workers, registry=r)(remember_disruptions)
    kopf.index("nodes", registry=r)(nodes_not_ready)
    kopf.timer(GROUP, VERSION, PLURAL, interval=options.reconcile_interval, backoff=RETRY_BACKOFF, registry=r)(
        reconcile_timer
    )
    return r
