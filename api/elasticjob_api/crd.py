"""Generate the ElasticJob CustomResourceDefinition from the pydantic models.

`python -m elasticjob_api.crd` writes `manifests/crds/elasticjob.io_elasticjobs.yaml` (the chart's
`crds/` entry is a link to that one file); `--check` exits 1 when the committed file is stale.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema. The conversion
inlines `$ref`s, turns `X | None` into an optional X, `int | "auto"` into
`x-kubernetes-int-or-string`, free-form dicts into `x-kubernetes-preserve-unknown-fields`, and
drops what structural schemas forbid (`additionalProperties: false`, titles). Defaults are kept in
the spec (the API server applies them) and dropped from the status.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from elasticjob_api import models
from elasticjob_api.generated import generator_main

CRD_RELATIVE_PATH = Path("manifests/crds/elasticjob.io_elasticjobs.yaml")

NAME_RULES = [
    {
        "rule": "size(self.metadata.name) <= 40",
        "message": "metadata.name must be at most 40 characters: pod and Service names are derived from it",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must start with a letter and contain only lowercase letters, digits and '-' "
        "(it names a Service)",
    },
]

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
    {"name": "World", "type": "integer", "jsonPath": ".status.rendezvous.worldSize"},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts.total"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_DROP_KEYS = {"title", "$defs"}


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].split("/")[-1]])
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    return schema


def _structural(schema: dict[str, Any], defs: dict[str, Any], *, keep_defaults: bool) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    schema = _resolve(schema, defs)
    out: dict[str, Any] = {}
    variants = schema.get("anyOf")
    if variants is not None:
        variants = [_resolve(v, defs) for v in variants if v.get("type") != "null"]
        types = {v.get("type") for v in variants}
        if len(variants) == 1:
            out.update(_structural(variants[0], defs, keep_defaults=keep_defaults))
        elif types == {"integer", "string"}:
            out["x-kubernetes-int-or-string"] = True
        else:
            raise ValueError(f"cannot express anyOf {variants!r} structurally")
    for key, value in schema.items():
        if key in _DROP_KEYS or key == "anyOf":
            continue
        if key == "default" and (not keep_defaults or value is None):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {
                name: _structural(sub, defs, keep_defaults=keep_defaults) for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = _structural(value, defs, keep_defaults=keep_defaults)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _structural(value, defs, keep_defaults=keep_defaults)
            # `false` (extra="forbid") is what pruning does anyway: structural schemas forbid it.
        else:
            out[key] = copy.deepcopy(value)
    if not out.get("type") and not out.get("x-kubernetes-int-or-string"):
        out["type"] = "object"
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" in out and out.get("x-kubernetes-preserve-unknown-fields"):
        # an open object that names some fields: keep both the named schema and the rest
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _model_schema(model: type[BaseModel], *, keep_defaults: bool) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}), keep_defaults=keep_defaults)


def _spec_schema() -> dict[str, Any]:
    spec = _model_schema(models.ElasticJobSpec, keep_defaults=True)
    template_spec = spec["properties"]["template"]["properties"]["spec"]
    template_spec["x-kubernetes-validations"] = [models.TEMPLATE_SPEC_RULE]
    template_spec["x-kubernetes-preserve-unknown-fields"] = True
    # the PodTemplate's metadata is Kubernetes' ObjectMeta: keep it open
    spec["properties"]["template"]["properties"]["metadata"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return spec


def generate_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _spec_schema(),
            "status": _model_schema(models.ElasticJobStatus, keep_defaults=False),
        },
        "x-kubernetes-validations": NAME_RULES,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{models.PLURAL}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": models.SHORT_NAMES,
                "categories": ["all", "elasticjob"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `python -m elasticjob_api.crd` from elasticjob_api/models.py. Do not edit.\n"
    return header + yaml.safe_dump(generate_crd(), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    return generator_main("python -m elasticjob_api.crd", __doc__.splitlines()[0], CRD_RELATIVE_PATH, render_crd, argv)


if __name__ == "__main__":
    sys.exit(main())
