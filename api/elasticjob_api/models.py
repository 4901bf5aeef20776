"""Pydantic models of the ElasticJob API (`elasticjob.io/v1alpha1`): the one source of truth.

The CRD's OpenAPI schema is generated from these models (see `crd.py`); the cross-field rules live
here twice on purpose, once as CEL (`x-kubernetes-validations`, enforced by the API server at
`kubectl apply`) and once as pydantic validators (for whatever reaches the operator some other way,
for example an object stored before a rule existed). `tests/unit/test_models.py` checks that both
reject the same specs.

Limits: `template` is modelled only as far as the operator reads it (containers by name, their
command, args and resources); everything else in the pod template is preserved as given.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic.alias_generators import to_camel

GROUP = "elasticjob.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ElasticJob"
PLURAL = "elasticjobs"
SINGULAR = "elasticjob"
SHORT_NAMES = ["ej"]
TRAINER_CONTAINER = "trainer"
#: Kubeflow's PyTorchJob requires its container to be named `pytorch`: accepted when no `trainer` exists
PYTORCHJOB_CONTAINER = "pytorch"
TRAINER_CONTAINERS = (TRAINER_CONTAINER, PYTORCHJOB_CONTAINER)


def trainer_name(names: Iterable[str]) -> str | None:
    """The trainer among a pod's container names: `trainer`, else `pytorch`, else None."""
    present = set(names)
    return next((name for name in TRAINER_CONTAINERS if name in present), None)


DEFAULT_RDZV_PORT = 29400


class _Model(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class _OpenModel(_Model):
    """A model that keeps fields it does not know (parts of Kubernetes' own objects)."""

    model_config = ConfigDict(extra="allow")


# --- spec -------------------------------------------------------------------------------------


class PinningMode(StrEnum):
    """CPU/GPU affinity of each local worker; the names are torch's AffinityMode names."""

    NONE = "none"
    NODE = "node"
    SOCKET = "socket"
    EXCLUSIVE = "exclusive"
    CORE_COMPLEX = "core-complex"


class RendezvousBackend(StrEnum):
    """How agents join a round through the store: the project's O(1)-join handler or torch's c10d one."""

    ELASTICJOB = "elasticjob"
    C10D = "c10d"


class FailureClass(StrEnum):
    """Why a worker or pod failed; the failure policy decides retry or fail per class."""

    USER_ERROR = "UserError"
    OOM_KILLED = "OOMKilled"
    SIGNAL = "Signal"
    NODE_LOST = "NodeLost"
    STORE_LOST = "StoreLost"
    TIMEOUT = "Timeout"
    INFRASTRUCTURE = "Infrastructure"
    #: a worker stalled in a collective or without progress past the launcher's --stall-timeout;
    #: reported in `lastFailure` only: the launcher restarts the group itself
    HANG = "Hang"


class FailureAction(StrEnum):
    """What a failed worker pod costs: Retry (replace it, counted against backoffLimit), Fail
    (the job), or Ignore (replace it, not counted), as batch/v1's podFailurePolicy Count, FailJob
    and Ignore."""

    RETRY = "Retry"
    FAIL = "Fail"
    IGNORE = "Ignore"


class ExitCodeOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"


class CleanPodPolicy(StrEnum):
    """Which pods a finished job deletes: none, the ones still running, or all of them."""

    NONE = "None"
    RUNNING = "Running"
    ALL = "All"


class SuccessPolicy(StrEnum):
    ALL_WORKERS = "AllWorkers"


class RendezvousSpec(_Model):
    """Where agents meet and how long they wait (torch's c10d rendezvous timeouts)."""

    backend: RendezvousBackend = Field(
        default=RendezvousBackend.ELASTICJOB,
        description="Rendezvous handler: elasticjob (a join costs a few store round-trips; drained agents "
        "leave at once) or c10d (torch's, whose joins retry compare-and-set on one shared state).",
    )
    port: Annotated[int, Field(ge=1, le=65535, description="TCP port of the c10d store.")] = DEFAULT_RDZV_PORT
    join_timeout_seconds: Annotated[
        int, Field(ge=1, description="How long an agent waits for the rendezvous to complete.")
    ] = 900
    last_call_timeout_seconds: Annotated[
        int, Field(ge=0, description="Extra wait for more agents once minReplicas have joined.")
    ] = 15
    close_timeout_seconds: Annotated[
        int, Field(ge=1, description="How long to wait for the rendezvous to close after a round.")
    ] = 30
    heartbeat_timeout_seconds: Annotated[
        int, Field(ge=1, description="An agent silent this long is considered dead.")
    ] = 30


MSG_RULE_MATCH = "a failure rule needs exactly one of failureClass and onExitCodes"
MSG_EXIT_ZERO = "onExitCodes with operator In cannot list 0 (a zero exit is not a failure)"


class ExitCodeRule(_Model):
    """Exit codes a rule matches, in batch/v1 podFailurePolicy's shape. The code matched is the
    trainer container's, except that for the launcher's 3 (the training script failed and the
    job-wide restarts are spent) it is the failed worker process's own, from the launcher's report."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.operator != 'In' || !self.values.exists(v, v == 0)", "message": MSG_EXIT_ZERO}
            ]
        }
    )

    operator: ExitCodeOperator = Field(description="In: the code is one of values; NotIn: it is none of them.")
    values: Annotated[
        list[Annotated[int, Field(ge=0, le=255)]],
        Field(
            min_length=1,
            max_length=255,
            description="Exit codes (0 to 255, each once).",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ]

    @model_validator(mode="after")
    def _valid(self) -> ExitCodeRule:
        if self.operator == ExitCodeOperator.IN and 0 in self.values:
            raise ValueError(MSG_EXIT_ZERO)
        if len(set(self.values)) != len(self.values):
            raise ValueError("onExitCodes.values must not repeat a code")
        return self

    def matches(self, exit_code: int | None) -> bool:
        if exit_code is None:
            return False
        return (exit_code in self.values) == (self.operator == ExitCodeOperator.IN)


class FailureRule(_Model):
    """What to do about one failure class, or about some exit codes; the first matching rule wins."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.failureClass) != has(self.onExitCodes)", "message": MSG_RULE_MATCH}
            ]
        }
    )

    failure_class: FailureClass | None = Field(default=None, description="The class of failure this rule is for.")
    on_exit_codes: ExitCodeRule | None = Field(default=None, description="The exit codes this rule is for.")
    action: FailureAction = Field(
        description="Retry (replace the pod, counted against backoffLimit), Fail the job, or Ignore "
        "(replace the pod, not counted)."
    )

    @model_validator(mode="after")
    def _one_match(self) -> FailureRule:
        if (self.failure_class is None) == (self.on_exit_codes is None):
            raise ValueError(MSG_RULE_MATCH)
        return self

    def matches(self, failure_class: FailureClass, exit_code: int | None) -> bool:
        if self.on_exit_codes is not None:
            return self.on_exit_codes.matches(exit_code)
        return self.failure_class == failure_class


DEFAULT_FAILURE_ACTIONS: dict[FailureClass, FailureAction] = {
    FailureClass.USER_ERROR: FailureAction.FAIL,
    FailureClass.OOM_KILLED: FailureAction.FAIL,
    FailureClass.SIGNAL: FailureAction.RETRY,
    FailureClass.NODE_LOST: FailureAction.RETRY,
    FailureClass.STORE_LOST: FailureAction.RETRY,
    FailureClass.TIMEOUT: FailureAction.RETRY,
    FailureClass.INFRASTRUCTURE: FailureAction.RETRY,
    FailureClass.HANG: FailureAction.RETRY,
}


class FailurePolicy(_Model):
    """How many pod replacements are allowed, and which failures are worth retrying."""

    backoff_limit: Annotated[
        int, Field(ge=0, description="Worker pod replacements allowed before the job is Failed.")
    ] = 6
    rules: Annotated[
        list[FailureRule],
        Field(
            max_length=16,
            description="Per failure class or exit codes: Retry, Fail or Ignore; the first matching rule "
            "wins, then the class's default (docs/fault-tolerance.md). Preempted or evicted pods "
            "(condition DisruptionTarget) are never counted, whatever the rules.",
        ),
    ] = []

    def action_for(self, failure_class: FailureClass, exit_code: int | None = None) -> FailureAction:
        for rule in self.rules:
            if rule.matches(failure_class, exit_code):
                return rule.action
        return DEFAULT_FAILURE_ACTIONS[failure_class]


class SchedulingSpec(_Model):
    """Scheduler hints for the job's pods."""

    scheduler_name: Annotated[str | None, Field(max_length=253, description="spec.schedulerName of every pod.")] = None
    priority_class_name: Annotated[
        str | None, Field(max_length=253, description="spec.priorityClassName of every pod.")
    ] = None
    gang: Annotated[
        bool,
        Field(
            description="Schedule minReplicas workers all at once or none: a Workload for kube-scheduler (no "
            "schedulerName, Kubernetes >= 1.35 with gang scheduling on), else a PodGroup for Volcano "
            "(schedulerName volcano) or scheduler-plugins."
        ),
    ] = False


class Container(_OpenModel):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    command: list[str] | None = None
    args: list[str] | None = None
    resources: dict[str, Any] | None = None


class PodSpec(_OpenModel):
    containers: Annotated[list[Container], Field(min_length=1, max_length=32)]


class PodTemplate(_OpenModel):
    metadata: dict[str, Any] | None = None
    spec: PodSpec

    @model_validator(mode="after")
    def _has_trainer(self) -> PodTemplate:
        if trainer_name(c.name for c in self.spec.containers) is None:
            raise ValueError(MSG_TRAINER)
        return self

    def trainer(self) -> Container:
        name = trainer_name(c.name for c in self.spec.containers)
        return next(c for c in self.spec.containers if c.name == name)


# Cross-field rules: (CEL expression, message). The pydantic validators below mirror them.
MSG_MIN_MAX = "minReplicas must be less than or equal to maxReplicas"
MSG_REPLICAS = "replicas must be between minReplicas and maxReplicas (set it, or scale, within that range)"
MSG_NPROC = "nprocPerNode must be an integer >= 1 or the string 'auto'"
MSG_TRAINER = (
    "spec.template.spec.containers must include a container named 'trainer' (or 'pytorch', as in a PyTorchJob) "
    "that runs the training command"
)

SPEC_RULES: list[JsonValue] = [
    {"rule": "self.minReplicas <= self.maxReplicas", "message": MSG_MIN_MAX},
    {
        "rule": "!has(self.replicas) || (self.replicas >= self.minReplicas && self.replicas <= self.maxReplicas)",
        "message": MSG_REPLICAS,
    },
]
NPROC_RULE: JsonValue = {"rule": "type(self) == string ? self == 'auto' : self >= 1", "message": MSG_NPROC}
TEMPLATE_SPEC_RULE = {
    "rule": "self.containers.exists(c, c.name == 'trainer' || c.name == 'pytorch')",
    "message": MSG_TRAINER,
}


class ElasticJobSpec(_Model):
    """What the user asks for: an elastic group of worker pods running one training command."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": SPEC_RULES})

    min_replicas: Annotated[int, Field(ge=1, le=10000, description="Fewest worker pods training can run with.")]
    max_replicas: Annotated[int, Field(ge=1, le=10000, description="Most worker pods the job may use.")]
    replicas: Annotated[
        int | None,
        Field(ge=1, le=10000, description="Desired worker pods (default maxReplicas); `kubectl scale` sets it."),
    ] = None
    nproc_per_node: Annotated[
        int | Literal["auto"],
        Field(
            description="Worker processes per pod: an integer, or 'auto' (GPUs requested by the trainer, else 1).",
            json_schema_extra={"x-kubernetes-validations": [NPROC_RULE]},
        ),
    ] = "auto"
    max_restarts: Annotated[
        int, Field(ge=0, le=10000, description="Worker-group restarts allowed, counted job-wide.")
    ] = 3
    rendezvous: RendezvousSpec = Field(default_factory=RendezvousSpec)
    pinning: Annotated[PinningMode, Field(description="CPU/GPU pinning of each local worker.")] = PinningMode.NONE
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy)
    success_policy: Annotated[
        SuccessPolicy, Field(description="AllWorkers: every worker of the final round succeeded.")
    ] = SuccessPolicy.ALL_WORKERS
    suspend: Annotated[bool, Field(description="Delete the job's pods and keep the job until resumed.")] = False
    active_deadline_seconds: Annotated[
        int | None, Field(ge=1, description="Fail the job once it has run this long.")
    ] = None
    stall_timeout_seconds: Annotated[
        int | None,
        Field(
            ge=1,
            le=86400,
            description="Seconds a worker may stay in one torch.distributed call (or, once it calls "
            "elasticjob_launcher.progress.step(), between steps) before it counts as hung: the Stalled "
            "condition, then a worker-group restart (failurePolicy class Hang). Unset: off.",
        ),
    ] = None
    ttl_seconds_after_finished: Annotated[
        int | None, Field(ge=0, description="Delete the job this long after it finished.")
    ] = None
    clean_pod_policy: Annotated[
        CleanPodPolicy, Field(description="Pods deleted when the job finishes: None, Running or All.")
    ] = CleanPodPolicy.RUNNING
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    guaranteed_qos: Annotated[
        bool,
        Field(description="With pinning on, make worker pods Guaranteed QoS (requests = limits, integer CPU)."),
    ] = False
    template: Annotated[
        PodTemplate,
        Field(
            description="The worker pod template; its container 'trainer' (else 'pytorch') runs the training command."
        ),
    ]

    @model_validator(mode="after")
    def _cross_field(self) -> ElasticJobSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(MSG_MIN_MAX)
        if self.replicas is not None and not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(MSG_REPLICAS)
        if isinstance(self.nproc_per_node, int) and self.nproc_per_node < 1:
            raise ValueError(MSG_NPROC)
        return self

    @property
    def desired_replicas(self) -> int:
        return self.max_replicas if self.replicas is None else self.replicas


# --- status -----------------------------------------------------------------------------------


class Phase(StrEnum):
    QUEUED = "Queued"
    CREATED = "Created"
    WAITING = "WaitingForRendezvous"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SCALING = "Scaling"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})


class Condition(_Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None


class LastFailure(_Model):
    """The newest worker failure an agent saw."""

    global_rank: int | None = None
    exit_code: int | None = None
    failure_class: str | None = None
    message: Annotated[str | None, Field(max_length=4096)] = None
    time: str | None = None
    step: Annotated[
        int | None, Field(description="A Hang's last step reported through elasticjob_launcher.progress.")
    ] = None
    stalled_seconds: Annotated[
        float | None, Field(description="How long a Hang's rank had been stuck when the launcher reported it.")
    ] = None
    round: Annotated[int | None, Field(description="The rendezvous round the failure ended.")] = None


class WorkerReport(_Model):
    """What the launcher in one worker pod reports about itself (a merge patch on its own job)."""

    model_config = ConfigDict(extra="ignore")

    restarts: int = 0
    round: int | None = None
    world_size: int | None = None
    node_rank: int | None = None
    binding: Annotated[
        dict[str, Any] | None, Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    ] = None
    last_failure: LastFailure | None = None
    update_time: str | None = None


class RestartsStatus(_Model):
    total: int = 0
    workers: dict[str, WorkerReport] = Field(default_factory=dict)


class RendezvousStatus(_Model):
    endpoint: str | None = None
    round: int | None = None
    world_size: int | None = None
    joined_nodes: list[str] = Field(default_factory=list)
    store_generation: int = 0


class ElasticJobStatus(_Model):
    model_config = ConfigDict(extra="ignore")

    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    replicas: int = 0
    ready_replicas: int = 0
    selector: str | None = None
    rendezvous: RendezvousStatus = Field(default_factory=RendezvousStatus)
    restarts: RestartsStatus = Field(default_factory=RestartsStatus)
    replacements: Annotated[int, Field(description="Worker pods replaced; counted against backoffLimit.")] = 0
    worker_indices: list[int] = Field(
        default_factory=list,
        description="Indices of the worker pods alive at the last reconcile (bookkeeping).",
    )
    start_time: str | None = None
    completion_time: str | None = None


class ElasticJob(_OpenModel):
    """The whole object as the operator reads it."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ElasticJobSpec
    status: ElasticJobStatus = Field(default_factory=ElasticJobStatus)

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))
