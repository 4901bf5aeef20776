"""`elasticjob convert`: PyTorchJobs in Kubeflow's documented elastic shapes against golden ElasticJobs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from elasticjob_api import cli
from elasticjob_api.models import ElasticJob
from elasticjob_api.pytorchjob import ConversionError, convert

from .golden import check_golden

INPUTS = Path(__file__).resolve().parents[1] / "data" / "pytorchjob"


@pytest.mark.parametrize("name", ["elastic-c10d", "elastic-etcd", "run-policy"])
def test_conversion_golden(name: str) -> None:
    job, notes = convert(yaml.safe_load((INPUTS / f"{name}.yaml").read_text()))
    ElasticJob.model_validate(job)
    check_golden(f"convert-{name}.yaml", {"elasticjob": job, "notes": notes})


def test_the_pod_template_is_carried_unchanged() -> None:
    source = yaml.safe_load((INPUTS / "elastic-c10d.yaml").read_text())
    job, _ = convert(source)
    assert job["spec"]["template"] == source["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    assert ElasticJob.model_validate(job).spec.template.trainer().name == "pytorch"


def test_cli_reads_stdin_and_reports_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    text = (INPUTS / "elastic-etcd.yaml").read_text()
    assert cli.main(["convert", "-"], stdin=io.StringIO(text)) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["kind"] == "ElasticJob"
    assert "echo-elastic: rdzvBackend etcd: not supported" in err


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"apiVersion": "batch/v1", "kind": "Job"}, "expected kind PyTorchJob"),
        ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {}}}, "neither Worker"),
        (
            {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "x"},
             "spec": {"pytorchReplicaSpecs": {"Worker": {"template": {"spec": {"containers": [{"name": "main"}]}}}}}},
            "not a valid ElasticJob",
        ),
    ],
)  # fmt: skip
def test_what_cannot_be_converted_is_a_clear_error(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        convert(document)


def test_cli_exit_code_for_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Job\napiVersion: batch/v1\n")
    assert cli.main(["convert", str(bad)]) == 2
    assert "expected kind PyTorchJob" in capsys.readouterr().err
