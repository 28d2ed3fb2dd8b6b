"""Pre-deploy checks of prefect.yaml, and the exact Kubernetes Job of each deployment.

    python -m infra.deployments check          # before `prefect deploy --all`
    python -m infra.deployments jobs [OUTDIR]  # build/k8s/jobs/<deployment>.yaml

Prefect accepts a misspelled job variable silently (the Job then simply lacks it: a GPU
training run lands on a CPU node). ``check`` fails first, naming the key.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"
TEMPLATE = ROOT / "helm" / "trip-duration" / "files" / "base-job-template.json"
#: every deployment of prefect.yaml with a schedule, "<flow>/<deployment>" (tests/unit/test_arrivals.py checks the
#: file against it): what the local stack, the cluster tests and benchmarks pause so that only their runs run
SCHEDULED = ("training/train", "training/train-green", "inference/infer", "inference/infer-green", "arrivals/watch-raw")
#: every deployment of prefect.yaml with an event trigger (the same check)
TRIGGERED = ("inference/backfill", "training/train", "training/train-green", "ingest/ingest")

#: Environment prefect.yaml templates with {{ $VAR }}, and the documented defaults.
DEPLOY_ENV_DEFAULTS = {
    "TRIP_DURATION_BUCKET": "trip-duration",
    "PREFECT_WORK_POOL": "trip-duration",
    "TRIP_DURATION_IMAGE": "ghcr.io/trip-duration/trip-duration:0.1.0",
}


class DeployCheckError(Exception):
    pass


def load_deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["deployments"]


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return json.loads(path.read_text())


def unknown_job_variables(deployments: list[dict], template: dict) -> list[str]:
    """One message per job variable the base job template does not define."""
    known = set(template["variables"]["properties"])
    problems = []
    for deployment in deployments:
        for key in deployment.get("work_pool", {}).get("job_variables", {}):
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"deployment {deployment['name']!r}: job variable {key!r} is not defined by "
                    f"{TEMPLATE.relative_to(ROOT)}{hint}; known: {', '.join(sorted(known))}"
                )
    return problems


def missing_env(environ: dict[str, str] | os._Environ = os.environ) -> list[str]:
    return [
        f"{name} is not set: export {name}={default} (the documented default) or your own value"
        for name, default in DEPLOY_ENV_DEFAULTS.items()
        if not environ.get(name)
    ]


def check(path: Path = PREFECT_YAML) -> None:
    problems = unknown_job_variables(load_deployments(path), load_template()) + missing_env()
    if problems:
        raise DeployCheckError("prefect.yaml is not ready to deploy:\n  - " + "\n  - ".join(problems))


def _resolve_env_placeholders(value: Any, environ: dict[str, str]) -> Any:
    from prefect.utilities.templating import apply_values

    with _patched_environ(environ):
        return apply_values(value, {}, remove_notset=False)


class _patched_environ:
    def __init__(self, values: dict[str, str]):
        self.values, self.saved = values, {}

    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_job(deployment: dict, template: dict, environ: dict[str, str] | None = None) -> dict:
    """The Job manifest the Kubernetes worker submits for a flow run of ``deployment``.

    Uses prefect-kubernetes' own job configuration code: template + job variables, then the
    run-specific preparation (labels, env, command) the worker applies.
    """
    from uuid import uuid4

    from prefect.client.schemas.objects import Deployment, Flow, FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    env = {**DEPLOY_ENV_DEFAULTS, **(environ or {})}
    job_variables = _resolve_env_placeholders(deployment["work_pool"].get("job_variables", {}), env)
    problems = unknown_job_variables([deployment], template)
    if problems:
        raise DeployCheckError("\n".join(problems))
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, job_variables))
    flow_name = deployment["entrypoint"].rsplit(":", 1)[1]
    flow = Flow(id=uuid4(), name=flow_name)
    dep = Deployment(id=uuid4(), name=deployment["name"], flow_id=flow.id, tags=deployment.get("tags", []))
    run = FlowRun(id=uuid4(), name="example-run", flow_id=flow.id, deployment_id=dep.id, tags=dep.tags)
    config.prepare_for_flow_run(run, deployment=dep, flow=flow)
    return config.job_manifest


def write_jobs(outdir: Path, template: dict | None = None) -> list[Path]:
    """Write ``<deployment>.yaml`` for every deployment; ``template`` defaults to the shared file."""
    template = template or load_template()
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for deployment in load_deployments():
        path = outdir / f"{deployment['name']}.yaml"
        path.write_text(yaml.safe_dump(build_job(deployment, template), sort_keys=False))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deployments")
    parser.add_argument("command", choices=["check", "jobs"])
    parser.add_argument("outdir", nargs="?", type=Path, default=ROOT / "build" / "k8s" / "jobs")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            check()
            print("prefect.yaml: job variables and environment OK")
        else:
            for path in write_jobs(args.outdir):
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    except DeployCheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
