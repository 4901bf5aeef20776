"""Model validation: every invalid spec class gets a clear message, in pydantic and in CEL form."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from elasticjob_api import models
from elasticjob_api.models import ElasticJob, ElasticJobSpec, FailureAction, FailureClass
from pydantic import ValidationError

from .conftest import BASE_SPEC, make_job


def _spec(**overrides: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE_SPEC)
    spec.update(overrides)
    return spec


def test_valid_spec_defaults() -> None:
    spec = ElasticJobSpec.model_validate(_spec(replicas=None))
    assert spec.desired_replicas == 3
    assert spec.rendezvous.port == 29400
    assert spec.pinning == models.PinningMode.NONE
    assert spec.template.trainer().command == ["python", "train.py"]


def test_auto_nproc_accepted() -> None:
    assert ElasticJobSpec.model_validate(_spec(nprocPerNode="auto")).nproc_per_node == "auto"


INVALID = {
    "min > max": (_spec(minReplicas=4, maxReplicas=2, replicas=None), models.MSG_MIN_MAX),
    "replicas above max": (_spec(replicas=5), models.MSG_REPLICAS),
    "replicas below min": (_spec(minReplicas=2, replicas=1), models.MSG_REPLICAS),
    "nproc < 1": (_spec(nprocPerNode=0), models.MSG_NPROC),
    "nproc bad string": (_spec(nprocPerNode="many"), "'auto'"),
    "no trainer": (
        _spec(template={"spec": {"containers": [{"name": "main", "image": "x"}]}}),
        models.MSG_TRAINER,
    ),
    "unknown pinning": (_spec(pinning="numa-magic"), "'none', 'node', 'socket', 'exclusive' or 'core-complex'"),
    "bad port": (_spec(rendezvous={"port": 70000}), "less than or equal to 65535"),
    "rule with two matches": (
        _spec(
            failurePolicy={
                "rules": [
                    {"failureClass": "UserError", "onExitCodes": {"operator": "In", "values": [42]}, "action": "Fail"}
                ]
            }
        ),
        models.MSG_RULE_MATCH,
    ),
    "rule with no match": (_spec(failurePolicy={"rules": [{"action": "Fail"}]}), models.MSG_RULE_MATCH),
    "exit code 0 with In": (
        _spec(failurePolicy={"rules": [{"onExitCodes": {"operator": "In", "values": [0, 1]}, "action": "Fail"}]}),
        models.MSG_EXIT_ZERO,
    ),
    "exit code above 255": (
        _spec(failurePolicy={"rules": [{"onExitCodes": {"operator": "NotIn", "values": [256]}, "action": "Fail"}]}),
        "less than or equal to 255",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_specs_have_clear_messages(case: str) -> None:
    spec, message = INVALID[case]
    with pytest.raises(ValidationError) as info:
        ElasticJobSpec.model_validate(spec)
    assert message in str(info.value)


def test_failure_policy_defaults_and_overrides() -> None:
    spec = ElasticJobSpec.model_validate(
        _spec(failurePolicy={"backoffLimit": 2, "rules": [{"failureClass": "UserError", "action": "Retry"}]})
    )
    assert spec.failure_policy.action_for(FailureClass.USER_ERROR) == FailureAction.RETRY
    assert spec.failure_policy.action_for(FailureClass.OOM_KILLED) == FailureAction.FAIL
    assert spec.failure_policy.action_for(FailureClass.NODE_LOST) == FailureAction.RETRY


def test_exit_code_rules_match_in_order() -> None:
    rules = [
        {"onExitCodes": {"operator": "In", "values": [42, 43]}, "action": "Ignore"},
        {"onExitCodes": {"operator": "NotIn", "values": [3, 42, 43]}, "action": "Fail"},
        {"failureClass": "UserError", "action": "Retry"},
    ]
    policy = ElasticJobSpec.model_validate(_spec(failurePolicy={"rules": rules})).failure_policy
    assert policy.action_for(FailureClass.USER_ERROR, 42) == FailureAction.IGNORE
    assert policy.action_for(FailureClass.SIGNAL, 137) == FailureAction.FAIL  # NotIn matched first
    assert policy.action_for(FailureClass.USER_ERROR, 3) == FailureAction.RETRY  # the class rule
    assert policy.action_for(FailureClass.OOM_KILLED, None) == FailureAction.FAIL  # no code: the default


def test_whole_object_round_trip() -> None:
    job = ElasticJob.model_validate(make_job(status={"phase": "Running", "kopf": {"x": 1}}))
    assert job.name == "mnist" and job.namespace == "team-a" and job.uid == "1234-uid"
    assert job.status.phase == models.Phase.RUNNING
    dumped = job.model_dump(by_alias=True, exclude_none=True)
    assert dumped["spec"]["minReplicas"] == 1
    assert dumped["spec"]["template"]["spec"]["containers"][1]["name"] == "sidecar"
