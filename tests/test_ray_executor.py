"""The Ray executor on a real local cluster (a head and two worker nodes on 127.0.0.1, one CPU each): the grid's
defacing jobs run on several nodes, a worker node killed mid-run has its jobs run again on the others with no sample
lost or duplicated, the summary equals a local run's, and a cluster that cannot run a job is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from typer.testing import CliRunner

from harness.cli import _register, app
from harness.data.sample_cohort import write_sample_cohort
from harness.engine.errors import EvalError
from harness.engine.ray_executor import RayExecutor
from harness.engine.runner import EvalConfig, Runner
from harness.results.run_summary import summarize_run
from harness.store.run_store import read_json, read_qc
from tests import runner_fixtures
from tests.ray_cluster import LocalCluster, free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
_register()
DEFACERS = ["quickshear", "deface"]


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(free_port()).start(workers=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three coarse nph-evans phantoms: six defacing jobs (two defacers) of about a second each."""
    return write_sample_cohort("nph-evans", n=3, seed=11, out=tmp_path_factory.mktemp("cohort"), resolution_scale=2.6)


def run(cohort: Path, root: Path, **kw):
    cfg = EvalConfig(tasks=["nph-evans"], defacers=DEFACERS, cohort=str(cohort), out=root / "runs",
                     cache_dir=root / "cache", quiet=True, **kw)
    with runner_fixtures.install():
        return Runner(cfg, argv=["harness", "eval", "--test"]).run(summarize=summarize_run)


def comparable(run_dir: Path) -> dict:
    summary = read_json(run_dir / "summary.json")
    return {"counts": summary["counts"], "tasks": summary["tasks"]}


def test_unreachable_cluster_is_a_clear_error():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(EvalError, match=f"cannot reach the Ray cluster at {address}"):
        RayExecutor(address)


def test_a_job_no_node_can_run_is_an_error_naming_the_cluster(cluster):
    executor = RayExecutor(cluster.address)
    try:
        with pytest.raises(EvalError, match=f"no live node of the Ray cluster at {cluster.address} .*GPU 1"):
            list(executor.map(sum, {"a": ([1, 2],)}, resources=lambda key: {"num_cpus": 1, "num_gpus": 1}))
        assert [(k, v) for k, v, _ in executor.map(sum, {"a": ([1, 2],)})] == [("a", 3)]
    finally:
        executor.close()


def test_worker_node_killed_mid_run_loses_and_duplicates_nothing(cluster, cohort, tmp_path):
    local = run(cohort, tmp_path / "local", workers=0)
    head, victim = cluster.nodes[0], cluster.nodes[1]
    root = tmp_path / "ray"
    killed = threading.Event()

    def kill_when_jobs_are_in_flight():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if victim.running("placed"):  # a defacing job is running on the victim right now
                cluster.kill_node(victim)
                killed.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_when_jobs_are_in_flight, daemon=True)
    watcher.start()
    outcome = run(cohort, root, executor="ray", ray_address=cluster.address)
    watcher.join(timeout=5)
    assert killed.is_set()
    assert outcome.counts == local.counts == {"ok": 9, "unparsable": 0, "failed": 0}
    samples = [json.loads(line) for line in (outcome.run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == len({s["sample_id"] for s in samples}) == 9  # none lost, none written twice
    qc = read_qc(outcome.run_dir)
    assert len(qc) == 6 and Counter(q["status"] for q in qc) == {"ok": 6}
    nodes = Counter(q["ran_on"]["node"] for q in qc)
    assert len(nodes) >= 2  # the grid ran on more than one node
    # rendering and scoring ran as cluster jobs too (single mode: the model call alone is the driver's)
    assert all(set(s["ran_on"]) == {"render", "score"} for s in samples)
    assert len({s["ran_on"][part]["node"] for s in samples for part in ("render", "score")}) >= 2
    manifest = read_json(outcome.run_dir / "manifest.json")
    assert manifest["jobs_lost_and_rerun"] >= 1  # the killed node's job ran again elsewhere
    assert max(q["ran_on"]["attempts"] for q in qc) >= 2
    assert comparable(outcome.run_dir) == comparable(local.run_dir)  # the re-identification scores included
    # the privacy stage's attack jobs ran on the cluster, every volume under every condition
    probes = [json.loads(line) for line in (outcome.run_dir / "qc" / "reidentification.jsonl").read_text().splitlines()]
    assert len(probes) == 9 and all("ran_on" in p for p in probes)
    shown = CliRunner().invoke(app, ["runs", "show", str(outcome.run_dir)]).output
    assert "jobs by node (ray executor):" in shown and "lost with a node and run again" in shown and " privacy (" in shown
    assert all(node[:12] in shown for node in nodes)
    assert head.process.poll() is None  # the cluster lives on without the node



def test_without_the_ray_executor_ray_is_not_imported():
    code = ("import sys; import harness.cli.eval; from harness.engine.runner import Runner; "
            "from harness.engine.executors import make_executor; make_executor('local', workers=0).close(); "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_eval_takes_the_executor_from_the_config_file(cohort, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "team.toml"
    config.write_text(f'[eval]\nexecutor = "ray"\nray_address = "{address}"\n')
    args = ["eval", "--task", "nph-evans", "--defacer", "quickshear", "--cohort", str(cohort), "--limit", "1", "-q",
            "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--config", str(config)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, EvalError) and f"cannot reach the Ray cluster at {address}" in str(result.exception)
    config.write_text('[eval]\nexecutor = "slurm"\n')
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, EvalError) and "unknown executor 'slurm'; use one of local, ray" in str(result.exception)
