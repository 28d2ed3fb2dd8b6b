"""Render the chart with Helm's real engine (helm-python-sdk) and validate against Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trip-duration"
KUBE_VERSION = "1.30.0"


def ci_values() -> dict[str, dict]:
    return {p.stem.removesuffix("-values"): yaml.safe_load(p.read_text()) for p in sorted((CHART / "ci").glob("*-values.yaml"))}


def render(values: dict, name: str = "td", namespace: str = "ml", lookup_free: bool = True) -> list[dict]:
    """The chart's objects. Rendering has no cluster to look up, so generated passwords need
    ``secrets.allowWithoutLookup`` (``lookup_free``); ``lookup_free=False`` renders as `helm template` would."""
    if lookup_free:
        values = {**values, "secrets": {"allowWithoutLookup": True, **values.get("secrets", {})}}
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=name, namespace=namespace, is_install=True)
    return [doc for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def validate(manifest: dict) -> None:
    """Strict validation: unknown fields fail too."""
    kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]))
    return out
