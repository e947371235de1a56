"""Validates rendered Kubernetes objects offline (run by tests/kubernetes.rs).

stdin: a JSON list of objects. stdout: a JSON list, one entry per object:
{"kind", "name", "validator", "errors": [...]}.

- core objects: kubernetes-validate, the bundled schemas of Kubernetes
  KUBERNETES_VERSION, strict (unknown fields are errors);
- ServiceMonitor and PrometheusRule: the Prometheus Operator's models
  (cloudcoil.models.prometheus_operator, generated from its CRDs); pydantic
  ignores unknown fields, so a field lost in the round trip is an error too.
"""

import json
import sys

import kubernetes_validate
from cloudcoil.models.prometheus_operator import v1 as monitoring

KUBERNETES_VERSION = "1.30.0"
OPERATOR = {"ServiceMonitor": monitoring.ServiceMonitor, "PrometheusRule": monitoring.PrometheusRule}


def lost_fields(given, kept, path=""):
    """Paths present in `given` and missing from `kept` (the model dropped them)."""
    out = []
    if isinstance(given, dict):
        for k, v in given.items():
            if not isinstance(kept, dict) or k not in kept:
                out.append(f"{path}.{k}: unknown field")
            else:
                out += lost_fields(v, kept[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            out += lost_fields(g, k, f"{path}[{i}]")
    return out


def validate(obj):
    kind = obj.get("kind", "")
    if kind in OPERATOR:
        try:
            model = OPERATOR[kind].model_validate(obj)
        except Exception as e:  # pydantic.ValidationError
            return "prometheus-operator", [str(e)]
        kept = model.model_dump(by_alias=True, exclude_none=True, mode="json")
        return "prometheus-operator", lost_fields(obj, kept)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        return f"kubernetes {KUBERNETES_VERSION}", []
    except Exception as e:  # ValidationError, SchemaNotFoundError, InvalidSchemaError
        return f"kubernetes {KUBERNETES_VERSION}", [str(getattr(e, "message", e))]


def main():
    results = []
    for obj in json.load(sys.stdin):
        validator, errors = validate(obj)
        results.append({"kind": obj.get("kind"), "name": obj.get("metadata", {}).get("name"),
                        "validator": validator, "errors": errors})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
