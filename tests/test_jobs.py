"Jobs: config validation, real papermill runs of the job notebook (scripted model; one with the embedded model), failures, retries, the lock."
import json, os, shutil
from pathlib import Path

import pytest
import yaml

from dspyopt_nb.jobs.runner import NOTEBOOK_PARAMS, JobLocked, job_lock, job_notebook, list_jobs, load_config, run_job
from dspyopt_nb.run.errors import ConfigError

ROOT = Path(__file__).parents[1]

@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    "One MLflow SQLite store for the module: creating a store migrates it, which takes seconds."
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"

@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    "Runs go under tmp_path (the job's kernel inherits the environment)."
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "runs"))

def _client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(uri)

def _job(tmp_path, file="job", **fields) -> Path:
    "A job config in tmp_path beside helper modules; scripted model, tiny splits, no MLflow unless asked."
    shutil.copy(Path(__file__).parent / "toy.py", tmp_path / "toy.py")   # the job's kernel imports from the config's folder
    (tmp_path / "answers.py").write_text(
        "from toy import toy_model\n"
        "def broken_metric(example, pred, trace=None):\n    raise RuntimeError('metric backend down')\n")
    cfg = dict(task="sst2", n_train=8, n_val=8, n_test=16, optimizer="none", lm="scripted:answers:toy_model",
               tracking=False, output_dir="jobs", retry_delay_s=0) | fields
    p = tmp_path / f"{file}.yaml"; p.write_text(yaml.safe_dump(cfg)); return p

# -- configs ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,bad", [
    (dict(optimiser="mipro"), "optimiser"),
    (dict(n_train=0), "n_train"),
    (dict(n_train="ten"), "n_train"),
    (dict(optimizer="mipor"), "optimizer"),
    (dict(preset="huge"), "preset"),
    (dict(knobs={"num_trails": 3}, optimizer="mipro"), "knobs"),
    (dict(lm="scripted:answers:nope"), "lm"),
    (dict(lm="no-such-provider-model"), "lm"),
    (dict(task="imdb"), "task"),
    (dict(task=None), "task/dataset"),
    (dict(task=None, dataset="missing.jsonl", signature="review -> sentiment", metric="exact_match:sentiment"), "dataset"),
    (dict(task=None, dataset="d.jsonl", signature="review sentiment", metric="exact_match:sentiment"), "signature"),
    (dict(task=None, dataset="d.jsonl", signature="review -> sentiment", metric="exact_match:label"), "metric"),
    (dict(optimizer="bootstrap", max_metric_calls=3), "max_metric_calls"),
    (dict(n_test=1000), "n_train/n_val/n_test"),
    (dict(name="my job"), "name"),
    (dict(retries=-1), "retries"),
    (dict(device="gpu"), "device"),
])
def test_bad_config_names_the_field_and_the_fix_and_starts_nothing(tmp_path, fields, bad):
    (tmp_path / "d.jsonl").write_text('{"review": "fine", "sentiment": "positive"}\n')
    cfg = _job(tmp_path, **fields)
    with pytest.raises(ConfigError) as e: run_job(cfg)
    fields_named = [f for f, _ in e.value.problems]
    assert bad in fields_named, str(e.value)
    assert all("Fix:" in m for _, m in e.value.problems), str(e.value)
    assert str(cfg) in str(e.value)                       # the message names the file
    assert not (tmp_path / "jobs").exists()               # no folder, no lock, no kernel

def test_yaml_errors_and_non_mappings(tmp_path):
    (tmp_path / "broken.yaml").write_text("task: [sst2\n")
    with pytest.raises(ConfigError, match="not valid YAML"): load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- task\n")
    with pytest.raises(ConfigError, match="not a mapping"): load_config(tmp_path / "list.yaml")

def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as e: load_config(_job(tmp_path, optimiser="x", n_val=-1, lm="scripted:answers:nope"))
    assert {"optimiser", "n_val", "lm"} <= {f for f, _ in e.value.problems}

def test_relative_paths_are_relative_to_the_config(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir(); (tmp_path / "data" / "d.jsonl").write_text('{"review": "x", "sentiment": "positive"}\n')
    cfg_path = _job(tmp_path, task=None, dataset="data/d.jsonl", signature="review -> sentiment", metric="exact_match:sentiment")
    monkeypatch.chdir("/")
    cfg = load_config(cfg_path)
    assert cfg.dataset == str(tmp_path / "data" / "d.jsonl") and cfg.output_dir == str(tmp_path / "jobs")

def test_notebook_parameters_match_the_job_notebook():
    import papermill as pm
    declared = set(pm.inspect_notebook(str(job_notebook())))
    assert declared == set(NOTEBOOK_PARAMS)               # the run's config (validated by RunConfig in the notebook) and the job folder

def test_the_package_ships_the_job_notebook():
    "`dspyopt run` from an install reads dspyopt_nb/data/jobs/optimize.ipynb; it must be the source notebook."
    shipped = ROOT / "dspyopt_nb" / "data" / "jobs" / "optimize.ipynb"
    assert shipped.is_file(), "run `make export` (it copies nbs/jobs/optimize.ipynb into the package)"
    assert shipped.read_bytes() == (ROOT / "nbs" / "jobs" / "optimize.ipynb").read_bytes(), "run `make export`"
    nb = json.loads(shipped.read_text())
    assert all(not c.get("outputs") for c in nb["cells"])          # kept clean
    assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])

def test_an_install_runs_the_notebook_shipped_in_the_package(tmp_path, monkeypatch):
    import dspyopt_nb.jobs.runner as jobs
    pkg = tmp_path / "site-packages" / "dspyopt_nb"; (pkg / "data" / "jobs").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "jobs" / "optimize.ipynb", pkg / "data" / "jobs" / "optimize.ipynb")
    monkeypatch.setattr(jobs, "_package_dir", lambda: pkg)      # no nbs/ beside the package: an install
    assert jobs.job_notebook() == pkg / "data" / "jobs" / "optimize.ipynb"
    (pkg / "data" / "jobs" / "optimize.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match="Fix: reinstall"): jobs.job_notebook()

# -- running ------------------------------------------------------------------------------------------------------------

def test_scripted_job_runs_logs_and_registers(tmp_path, mlflow_uri):
    rec = run_job(_job(tmp_path, "ok", optimizer="bootstrap", n_train=16, tracking=mlflow_uri, knobs=dict(num_candidate_programs=2)))
    assert rec.status == "finished" and rec.exit_code == 0 and rec.attempts == 1, rec
    d = Path(rec.job_dir)
    assert {"optimize.ipynb", "config.yaml", "job.json", "run.json"} <= {p.name for p in d.iterdir()}
    run_dir = Path(rec.run_dir)                                          # the optimization run, in the run catalogue
    assert run_dir.parent == tmp_path / "runs" and {"result.json", "program.json", "events.jsonl"} <= {p.name for p in run_dir.iterdir()}
    res = json.loads((run_dir / "result.json").read_text())
    assert res["status"] == "finished" and res["optimized_scores"] and res["mlflow_run_id"] == rec.mlflow_run_id
    assert res["config"]["tags"]["dspyopt.job"] == "ok" and res["config"]["tags"]["dspyopt.job_run"] == rec.id
    nb = json.loads((d / "optimize.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    c = _client(mlflow_uri)
    run = c.get_run(rec.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dspyopt.job"] == "ok" and run.data.tags["dspyopt.job_run"] == rec.id
    assert "optimized_test" in run.data.metrics
    assert "job/optimize.ipynb" in [a.path for a in c.list_artifacts(rec.mlflow_run_id, "job")]
    assert rec.model_version and c.get_model_version("dspyopt-ok", rec.model_version).run_id == rec.mlflow_run_id
    assert [r.id for r in list_jobs(tmp_path / "jobs")] == [rec.id]
    from dspyopt_nb.run.catalogue import find_run
    assert find_run(rec.run_id).tags["dspyopt.job"] == "ok"               # the catalogue knows the job's run

def test_failure_before_optimize_records_a_failed_mlflow_run_and_retries(tmp_path, mlflow_uri):
    # a data file whose last row has no label: the plan reads it, before the run opens an MLflow run
    rows = [dict(review=f"review {i}", sentiment="positive" if i % 2 else "negative") for i in range(40)] + [dict(review="no label")]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = run_job(_job(tmp_path, "baddata", task=None, dataset="d.jsonl", signature="review -> sentiment",
                       metric="exact_match:sentiment", tracking=mlflow_uri, retries=1))
    assert rec.status == "failed" and rec.exit_code == 1 and rec.attempts == 2
    assert rec.error.startswith("DataError") and "line 41" in rec.error and rec.failed_cell
    d = Path(rec.job_dir)
    for name in ("optimize.ipynb", "attempt-1.ipynb"):   # each attempt's partial notebook, failing cell marked
        nb = json.loads((d / name).read_text())
        failed = [c for c in nb["cells"] if c["metadata"].get("papermill", {}).get("status") == "failed"]
        assert len(failed) == 1 and "plan(cfg)" in "".join(failed[0]["source"])
        assert any("papermill-error-cell-tag" in c["metadata"].get("tags", []) for c in nb["cells"])
        assert any(o.get("ename") == "DataError" for o in failed[0]["outputs"])
    runs = _client(mlflow_uri).search_runs([e.experiment_id for e in _client(mlflow_uri).search_experiments()],
                                            filter_string="tags.`dspyopt.job` = 'baddata'")
    assert len(runs) == 2                                   # one FAILED run per attempt
    for r in runs:
        assert r.info.status == "FAILED" and r.data.tags["dspyopt.kind"] == "job" and r.data.tags["dspyopt.status"] == "failed"
        assert "DataError" in r.data.tags["dspyopt.error"]
    assert rec.mlflow_run_id in {r.info.run_id for r in runs}

def test_failure_inside_optimize_fails_the_job_and_its_mlflow_run(tmp_path, mlflow_uri):
    rows = [dict(review=f"review {i}", sentiment="positive") for i in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = run_job(_job(tmp_path, "badmetric", task=None, dataset="d.jsonl", signature="review -> sentiment",
                       metric="answers:broken_metric", max_errors=2, tracking=mlflow_uri))
    assert rec.status == "failed" and rec.error.startswith("JobFailed") and "errors" in rec.error
    run = _client(mlflow_uri).get_run(rec.mlflow_run_id)
    assert run.info.status == "FAILED" and run.data.tags["dspyopt.kind"] == "optimization"   # the run's own MLflow run
    assert run.data.tags["dspyopt.status"] == "failed" and run.data.tags["dspyopt.job"] == "badmetric"
    assert json.loads((Path(rec.run_dir) / "result.json").read_text())["status"] == "failed"

def test_two_runs_of_one_job_never_overlap(tmp_path):
    cfg = load_config(_job(tmp_path, "locked"))
    with job_lock(Path(cfg.output_dir) / "locked" / ".lock", "locked"):
        with pytest.raises(JobLocked, match="already running.*Fix:"): run_job(cfg)
    assert not [p for p in (Path(cfg.output_dir) / "locked").iterdir() if p.is_dir()]   # nothing started

@pytest.mark.slow
def test_real_papermill_run_with_the_embedded_model(tmp_path, mlflow_uri):
    "The one test that runs the embedded Gemma model: bootstrap on a tiny budget, logged and registered."
    rec = run_job(_job(tmp_path, "gemma", lm="local", optimizer="bootstrap", n_train=8, n_val=8, n_test=16,
                       knobs=dict(num_candidate_programs=1, max_bootstrapped_demos=2, max_labeled_demos=2),
                       tracking=mlflow_uri, cell_timeout_s=900))
    assert rec.status == "finished", rec.error
    res = json.loads((Path(rec.run_dir) / "result.json").read_text())
    assert res["lm"].startswith("local/") and len(res["optimized_scores"]) == 16 and res["usage"]["lm_calls"] > 0
    assert _client(mlflow_uri).get_run(rec.mlflow_run_id).info.status == "FINISHED" and rec.model_version


def test_plugin_optimizers_are_known_before_any_run():
    "A fresh process: job configs and the magic accept the GA and a plugin of another distribution before any run."
    import subprocess, sys
    code = ("from dspyopt_nb.jobs.runner import load_config; from dspyopt_nb.notebook.runs import plan_run; "
            "print(load_config({'task': 'sst2', 'optimizer': 'ga'}).optimizer, "
            "plan_run(dict(task='sst2', optimizer='greedy', lm='scripted:dspyopt_nb.engines.scripted:toy_sentiment'), {}).optimizer.name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["ga", "greedy"]
