"""infra/cluster/kube.py: the README's cluster block becomes the e2e test's script with only the
namespace, the local ports and (off our cluster) the lines that start ours changed."""

import pytest

from infra.cluster.kube import Cluster, OURS_ONLY, localise, readme_block, readme_script


def _cluster(kind: str) -> Cluster:
    cluster = Cluster("/nonexistent/kubeconfig", kind, None, prefix="td-unit")
    return cluster


def test_the_script_is_the_readme_block_line_for_line_with_only_namespace_and_ports_changed():
    cluster = _cluster("ours")
    block = readme_block()
    script = readme_script(cluster, {4200: 41001, 9000: 41002})
    assert len(script.splitlines()) == len(block.splitlines())
    changed = [(a, b) for a, b in zip(block.splitlines(), script.splitlines()) if a != b]
    for before, after in changed:
        # undo the three substitutions: what is left must be the README's line itself
        undone = (after.replace(cluster.ns, "ml").replace("41001:4200", "4200").replace("41002:9000", "9000")
                  .replace("127.0.0.1:41001", "127.0.0.1:4200").replace("127.0.0.1:41002", "127.0.0.1:9000"))
        assert undone == before
    assert "helm install td helm/trip-duration" in script and "make deploy" in script
    assert "prefect deployment run training/train" in script and "prefect deployment run inference/infer" in script
    assert "http://s3:9000" in script  # the in-cluster endpoint is not a local port
    assert " ml " not in script and "-n ml\n" not in script


def test_off_our_cluster_only_the_lines_that_start_ours_are_dropped():
    block = readme_block().splitlines()
    script = readme_script(_cluster("kind"), {4200: 41001, 9000: 41002}).splitlines()
    dropped = [line for line in block if line.startswith(OURS_ONLY)]
    assert len(dropped) == 3
    assert len(script) == len(block) - 3


def test_a_readme_that_stops_forwarding_a_port_fails_loudly_instead_of_running_something_else():
    with pytest.raises(AssertionError, match="port 4200"):
        localise("kubectl -n ml port-forward svc/s3 9000 &\nexport X=http://127.0.0.1:9000\n", "ns1", {4200: 1, 9000: 2})


def test_the_logs_recipes_are_found_and_namespaced():
    recipes = localise(readme_block("Logs with `kubectl`"), "ns1")
    assert recipes.count("kubectl -n ns1 logs") == 4
    assert "<flow-run-id>" in recipes


def test_the_readme_takes_the_api_credentials_from_the_generated_secret_and_the_run_reads_them(tmp_path, monkeypatch):
    """The block exports PREFECT_API_AUTH_STRING from the chart's Secret (auth is on by default), and
    ReadmeRun.env evaluates the exports as bash does, `$(...)` included, keeping only exported names."""
    from infra.cluster import kube

    block = readme_block()
    assert ('export PREFECT_API_AUTH_STRING="$(kubectl -n ml get secret td-trip-duration-api-auth '
            "-o jsonpath='{.data.auth-string}' | base64 -d)\"") in block
    run = kube.ReadmeRun.__new__(kube.ReadmeRun)
    run.cluster = _cluster("ours")
    run.cluster.env = {"PATH": "/usr/bin:/bin"}
    run.script = ('export A_TOKEN="$(echo dXNlcjpwdw== | base64 -d)"\n'
                  "kubectl get x -o jsonpath='{.y}'\n"
                  "export B_URL=http://127.0.0.1:1/api C_POOL=p \\\n       D_KEY=k\n")
    env = run.env()
    assert {k: env[k] for k in ("A_TOKEN", "B_URL", "C_POOL", "D_KEY")} == {
        "A_TOKEN": "user:pw", "B_URL": "http://127.0.0.1:1/api", "C_POOL": "p", "D_KEY": "k"}
    assert "jsonpath" not in env
