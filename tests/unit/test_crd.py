"""The committed CRD is exactly what the models generate, and it has what `kubectl` needs."""

from __future__ import annotations

from pathlib import Path

from elasticjob_api import crd

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crd_is_current() -> None:
    assert crd.main(["--root", str(ROOT), "--check"]) == 0, "run: python -m elasticjob_api.crd"


def test_chart_uses_the_same_crd_file() -> None:
    chart_crd = ROOT / "charts/elasticjob-operator/crds/elasticjob.io_elasticjobs.yaml"
    assert chart_crd.read_text() == (ROOT / crd.CRD_RELATIVE_PATH).read_text()


def test_crd_subresources_columns_and_rules() -> None:
    version = crd.generate_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Replicas", "World", "Restarts", "Age"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = [r["message"] for r in spec["x-kubernetes-validations"]]
    assert any("minReplicas" in m for m in messages)
    assert spec["properties"]["nprocPerNode"]["x-kubernetes-int-or-string"] is True
    template_spec = spec["properties"]["template"]["properties"]["spec"]
    assert "trainer" in template_spec["x-kubernetes-validations"][0]["rule"]


def _walk(node: object) -> list[dict[str, object]]:
    out = []
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            out.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_walk(value))
    return out


def test_schema_is_structural() -> None:
    schema = crd.generate_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node
        assert node.get("additionalProperties") is not False
