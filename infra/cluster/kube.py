"""A session on a real cluster, shared by tests/cluster and bench/cluster_bench.py.

- :func:`find` picks the cluster: KUBECONFIG when it answers, else ours (.cluster/) when it answers;
- :class:`Cluster` runs kubectl/helm against it, in a namespace of its own;
- :func:`readme_script` turns the README's "A real cluster on this machine" block into the script
  that runs it, command for command: only the namespace, the local ends of the port-forwards (free
  ports, so a running `make demo` never collides) and, on a cluster that is not ours, the lines that
  start ours, change;
- :class:`ReadmeRun` runs that script and keeps its port-forwards open until closed;
- :func:`api`, :func:`run_deployment`, :func:`wait_final`: the Prefect REST API through the forward.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from infra.local.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / ".cluster"
OURS_KUBECONFIG = OURS / "etc" / "admin.kubeconfig"
README = ROOT / "README.md"
RELEASE = "td"
FULL = f"{RELEASE}-trip-duration"
#: the README's namespace; a session replaces it with its own
README_NAMESPACE = "ml"
#: what the README's block starts ours with; dropped on any other cluster (the images go there another way)
OURS_ONLY = ("make cluster-up", "export KUBECONFIG=$PWD/.cluster/", "python -m infra.cluster.images --import")


class Cluster:
    def __init__(self, kubeconfig: str, kind: str, bin_dir: Path | None, prefix: str = "td-e2e") -> None:
        self.kubeconfig, self.kind = kubeconfig, kind
        path = f"{bin_dir}{os.pathsep}" if bin_dir else ""
        self.env = {**os.environ, "KUBECONFIG": kubeconfig,
                    "PATH": f"{path}{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        self.ns = f"{prefix}-{uuid.uuid4().hex[:6]}"

    def sh(self, *argv: str, timeout: float = 900, check: bool = True, **kwargs) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, env=kwargs.pop("env", self.env),
                              timeout=timeout, cwd=kwargs.pop("cwd", ROOT), **kwargs)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def kubectl(self, *argv: str, **kwargs) -> str:
        return self.sh("kubectl", "-n", self.ns, *argv, **kwargs)

    def json(self, *argv: str) -> dict:
        return json.loads(self.kubectl(*argv, "-o", "json"))


def answers(kubeconfig: str) -> bool:
    kubectl = shutil.which("kubectl", path=f"{OURS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    if not kubectl or not Path(kubeconfig).exists():
        return False
    return subprocess.run([kubectl, "--kubeconfig", kubeconfig, "get", "--raw", "/readyz"],
                          capture_output=True, timeout=20).returncode == 0


def find(prefix: str = "td-e2e") -> Cluster | None:
    """The cluster to use (KUBECONFIG first, then ours), or None when none answers."""
    ours = str(OURS_KUBECONFIG)
    if os.environ.get("KUBECONFIG") and answers(os.environ["KUBECONFIG"]):
        config = os.environ["KUBECONFIG"]
        context = subprocess.run(["kubectl", "--kubeconfig", config, "config", "current-context"],
                                 capture_output=True, text=True).stdout.strip()
        kind = "ours" if Path(config).resolve() == Path(ours).resolve() else ("kind" if context.startswith("kind-") else "other")
        return Cluster(config, kind, OURS / "bin" if kind == "ours" else None, prefix)
    if answers(ours):
        return Cluster(ours, "ours", OURS / "bin", prefix)
    return None


def load_images(cluster: Cluster) -> None:
    """Build the images and put them on the nodes of a kind cluster (ours: the README's block does it)."""
    from infra.cluster import images

    images.build_all()
    for tag in images.ALL:
        cluster.sh("kind", "load", "docker-image", tag, "--name", os.environ.get("KIND_CLUSTER_NAME", "trip-duration"))


def readme_block(heading: str = "### A real cluster on this machine") -> str:
    """The first ```bash block after ``heading`` in the README."""
    text = README.read_text()
    if heading not in text:
        raise AssertionError(f"README.md has no heading {heading!r}")
    return text.split(heading, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]


def localise(text: str, ns: str, ports: dict[int, int] | None = None) -> str:
    """The README's commands for namespace ``ns``, the local port of each forward moved to ``ports``."""
    out = re.sub(rf"(-n|namespace) {README_NAMESPACE}\b", rf"\1 {ns}", text)
    for remote, local in (ports or {}).items():
        out, forwards = re.subn(rf"(port-forward svc/\S+) {remote}\b", rf"\1 {local}:{remote}", out)
        out, urls = re.subn(rf"(127\.0\.0\.1|localhost):{remote}\b", rf"127.0.0.1:{local}", out)
        if not (forwards and urls):
            raise AssertionError(f"the README's block no longer forwards and uses port {remote}: update the test")
    if re.search(rf"(-n|namespace) {README_NAMESPACE}\b", out):
        raise AssertionError("namespace substitution left the README's namespace behind")
    return out


def readme_script(cluster: Cluster, ports: dict[int, int]) -> str:
    lines = localise(readme_block(), cluster.ns, ports).splitlines()
    if cluster.kind != "ours":  # KUBECONFIG already points at the cluster; load_images put the images there
        lines = [line for line in lines if not line.startswith(OURS_ONLY)]
    return "\n".join(lines) + "\n"


class ReadmeRun:
    """The README's block, run by bash -euo pipefail; its port-forwards stay open until close()."""

    REMOTE = {"prefect": 4200, "s3": 9000}

    def __init__(self, cluster: Cluster, log: Path) -> None:
        self.cluster, self.log_path = cluster, log
        self.ports = {remote: free_port() for remote in self.REMOTE.values()}
        self.script = readme_script(cluster, self.ports)
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def run(self, timeout: float = 3600) -> str:
        started = time.monotonic()
        with self.log_path.open("w") as log:  # a file, not a pipe: the forwards outlive bash and hold it open
            self.proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", self.script], cwd=ROOT,
                                         env=self.cluster.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            rc = self.proc.wait(timeout=timeout)
        self.output = self.log_path.read_text()
        self.seconds = time.monotonic() - started
        if rc != 0:
            raise AssertionError(f"the README's block failed ({rc}) after {self.seconds:.0f}s; script:\n"
                                 f"{self.script}\n--- output (tail) ---\n{self.output[-8000:]}")
        return self.output

    def flow_run_ids(self) -> list[str]:
        """The flow runs the block created, in order (`prefect deployment run` prints each UUID)."""
        return re.findall(r"UUID: ([0-9a-f-]{36})", self.output)

    def env(self) -> dict[str, str]:
        """What the README exports (evaluated by bash, `$(kubectl ...)` included), for the tests' own calls."""
        lines = [line for line in self.script.replace("\\\n", " ").splitlines()
                 if line.startswith("export ") and "KUBECONFIG" not in line]
        names = {name for line in lines for name in re.findall(r"(?:^export|\s)([A-Z][A-Z0-9_]*)=", line)}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join([*lines, "env -0"])], cwd=ROOT,
                              env=self.cluster.env, capture_output=True, text=True, timeout=60, check=True)
        evaluated = dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
        return {**self.cluster.env, **{name: evaluated[name] for name in names}}

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the background port-forwards
            except ProcessLookupError:
                pass


class Forward:
    """kubectl port-forward to a Service, on a free local port."""

    def __init__(self, cluster: Cluster, service: str, port: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(["kubectl", "-n", cluster.ns, "port-forward", f"svc/{service}", f"{self.port}:{port}"],
                                     env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        raise AssertionError(f"port-forward to {service} did not open: {self.proc.stdout.read() if self.proc.poll() is not None else ''}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def api(env: dict, method: str, path: str, **kwargs):
    auth = tuple(env["PREFECT_API_AUTH_STRING"].split(":", 1)) if env.get("PREFECT_API_AUTH_STRING") else None
    response = httpx.request(method, env["PREFECT_API_URL"] + path, timeout=30, auth=auth, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def run_deployment(env: dict, name: str, parameters: dict, job_variables: dict | None = None,
                   work_queue_name: str | None = None) -> str:
    """A run of deployment ``name`` (``work_queue_name``: another queue of its pool than its own)."""
    deployment = api(env, "GET", f"/deployments/name/{name}")
    body = {"parameters": parameters, "job_variables": job_variables or {}}
    if work_queue_name:
        body["work_queue_name"] = work_queue_name
    run = api(env, "POST", f"/deployments/{deployment['id']}/create_flow_run", json=body)
    return run["id"]


def fit_runs(env: dict, run_id: str) -> list[dict]:
    """The runs of the ``fit`` deployment a training run started (its subflows), oldest first."""
    return api(env, "POST", "/flow_runs/filter", json={
        "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"})


FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def wait_final(env: dict, run_id: str, timeout: float = 900, poll: float = 3) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(env, "GET", f"/flow_runs/{run_id}")
        if run["state"]["type"] in FINAL:
            return run
        time.sleep(poll)
    raise AssertionError(f"flow run {run_id} not final after {timeout}s: {run['state']}")


def pause_schedules(env: dict, *deployments: str) -> None:
    """Only the runs we create run (a schedule could fire during a long session)."""
    for name in deployments:
        deployment = api(env, "GET", f"/deployments/name/{name}")
        for schedule in deployment["schedules"]:
            api(env, "PATCH", f"/deployments/{deployment['id']}/schedules/{schedule['id']}", json={"active": False})


def pause_triggers(env: dict, *deployments: str) -> list[str]:
    """Pause the automations made from these deployments' ``triggers:`` (prefect.yaml); returns their names."""
    names = []
    for name in deployments:
        deployment = api(env, "GET", f"/deployments/name/{name}")
        for automation in api(env, "GET", f"/automations/related-to/prefect.deployment.{deployment['id']}"):
            api(env, "PATCH", f"/automations/{automation['id']}", json={"enabled": False})
            names.append(automation["name"])
    return names
