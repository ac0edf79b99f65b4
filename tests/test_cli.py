"The `dspyopt` console script: run (papermill), validate, runs and jobs list|show, compare, schedule, demo; exit codes; start-up."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

from dspyopt_nb.cli import main
from dspyopt_nb.jobs.runner import job_lock, list_jobs

HERE = Path(__file__).parent
DSPYOPT = Path(sys.executable).parent / "dspyopt"   # the console script settings.ini declares

@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "catalogue"))

def _cli(*args, timeout=600, env=None):
    "Run the installed console script (or python -m dspyopt_nb.cli when it is not installed)."
    cmd = [str(DSPYOPT)] if DSPYOPT.exists() else [sys.executable, "-m", "dspyopt_nb.cli"]
    p = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "DSPYOPT_NO_PROGRESS": "1", **(env or {})})
    return p.returncode, p.stdout, p.stderr

def _job(tmp_path, file="job", **fields) -> Path:
    shutil.copy(HERE / "toy.py", tmp_path / "toy.py")
    (tmp_path / "slow.py").write_text(  # a model that takes a second per call and says when it was first called
        "import os, pathlib, time\n"
        "def slow_model(prompt):\n"
        "    pathlib.Path(os.environ['SLOW_MODEL_FLAG']).touch()\n"
        "    time.sleep(1)\n"
        "    return ' positive'\n")
    cfg = dict(task="sst2", n_train=8, n_val=8, n_test=16, optimizer="none", lm="scripted:toy:toy_model",
               tracking=False, output_dir="jobs", retry_delay_s=0) | fields
    p = tmp_path / f"{file}.yaml"; p.write_text(yaml.safe_dump(cfg)); return p

def test_help_lists_the_commands():
    code, out, _ = _cli("--help")
    assert code == 0 and all(c in out for c in ("run", "validate", "runs", "jobs", "compare", "demo", "schedule", "scheduler"))
    code, out, _ = _cli("demo", "--help")                  # the demo's options are the run settings, with its defaults
    assert code == 0 and "--optimizer" in out and "--n-test" in out and "(default: 300)" in out
    code, out, _ = _cli("run", "--help")
    assert code == 0 and "--max-metric-calls" in out and "--retries" in out

def test_bad_config_exits_2_naming_the_field_and_starts_nothing(tmp_path):
    cfg = _job(tmp_path, optimiser="mipro", n_train=-1)
    code, out, err = _cli("run", cfg)
    assert code == 2 and "optimiser" in err and "did you mean 'optimizer'" in err and "n_train" in err and "Fix:" in err
    assert not (tmp_path / "jobs").exists()
    code, _, err = _cli("run", cfg, "--set", "oops")
    assert code == 2 and "KEY=VALUE" in err

def test_validate_prints_the_resolved_config(tmp_path, capsys):
    assert main(["validate", str(_job(tmp_path)), "--set", "seed=3", "--n-val", "6"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out.split("dspyopt:")[0])["seed"] == 3 and yaml.safe_load(out.split("dspyopt:")[0])["n_val"] == 6

def test_run_then_jobs_and_runs_list_and_show(tmp_path):
    cfg = _job(tmp_path, "quick")
    code, out, err = _cli("run", cfg, "--seed", "1")
    assert code == 0, out + err
    assert "quick: finished" in out and "notebook:" in out and "run:" in out
    [rec] = list_jobs(tmp_path / "jobs")
    assert rec.status == "finished" and f"notebook: {rec.notebook}" in out
    code, out, _ = _cli("jobs", "list", "--dir", tmp_path / "jobs")
    assert code == 0 and rec.id in out and "finished" in out and rec.run_id in out
    code, out, _ = _cli("jobs", "show", rec.id[:-3], "--dir", tmp_path / "jobs", "--json")
    assert code == 0 and json.loads(out)["id"] == rec.id
    code, _, err = _cli("jobs", "show", "nope", "--dir", tmp_path / "jobs")
    assert code == 2 and "jobs list" in err
    # the optimization run is in the run catalogue, found by a prefix of its id
    code, out, _ = _cli("runs", "list")
    assert code == 0 and rec.run_id in out
    code, out, _ = _cli("runs", "show", rec.run_id[:6])
    assert code == 0 and "baseline" in out and rec.run_id in out
    code, _, err = _cli("runs", "show", "zzzz")
    assert code == 2 and "no run 'zzzz'" in err and "Fix:" in err

def test_failing_job_exits_1_and_says_where(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text('{"review": "fine", "sentiment": "positive"}\n{"review": "no label"}\n' * 10)
    cfg = _job(tmp_path, "bad", task=None, dataset="d.jsonl", signature="review -> sentiment", metric="exact_match:sentiment")
    assert main(["run", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "bad: FAILED" in out and "error in cell [" in out and "DataError" in out and "the failing cell is marked" in out
    assert main(["jobs", "list", "--dir", str(tmp_path / "jobs")]) == 0
    assert "failed" in capsys.readouterr().out

def test_a_running_job_makes_a_second_run_exit_3(tmp_path):
    cfg = _job(tmp_path, "busy")
    with job_lock(tmp_path / "jobs" / "busy" / ".lock", "busy"):
        code, _, err = _cli("run", cfg)
    assert code == 3 and "already running" in err and f"pid {os.getpid()}" in err

def test_schedule_add_list_remove(tmp_path, capsys):
    cfg, d = _job(tmp_path), str(tmp_path / "sched")
    assert main(["schedule", "add", "nightly", str(cfg), "--cron", "0 3 * * 1-5", "--dir", d]) == 0
    assert main(["schedule", "list", "--dir", d, "--json"]) == 0
    out = capsys.readouterr().out
    [s] = json.loads(out[out.index("["):])
    assert s["name"] == "nightly" and s["cron"] == "0 3 * * 1-5" and s["config"] == str(cfg) and "03:00:00" in s["next_run"]
    assert main(["schedule", "add", "nightly", str(cfg), "--cron", "0 4 * * *", "--dir", d]) == 2   # exists: --replace
    assert main(["schedule", "add", "other", str(cfg), "--cron", "99 * * * *", "--dir", d]) == 2     # bad cron
    assert main(["schedule", "add", "other", str(tmp_path / "missing.yaml"), "--cron", "0 3 * * *", "--dir", d]) == 2
    assert "Fix:" in capsys.readouterr().err
    assert main(["schedule", "remove", "nightly", "--dir", d]) == 0
    assert main(["schedule", "remove", "nightly", "--dir", d]) == 2

def test_runs_list_from_mlflow(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from dspyopt_nb.tracking.mlflow_tracker import MlflowTracker
    tr = MlflowTracker(uri, "dspyopt"); tr.start("mipro-abc", params={"optimizer": "mipro"}, tags={"dspyopt.run_id": "abc123abc123"}); tr.fail("boom")
    assert main(["runs", "list", "--tracking-uri", uri, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["run_id"] == "abc123abc123" and row["status"] == "failed" and row["mlflow_run_id"] == tr.run_id

def test_compare_runs_and_optimizers(tmp_path, capsys):
    import sys as _s; _s.path.insert(0, str(HERE))
    from dspyopt_nb.optimize import optimize
    args = dict(config=dict(task="sst2", n_train=30, n_val=20, n_test=60, tracking=False), lm="scripted:toy:toy_model", progress=False)
    a, b = optimize(optimizer="none", **args), optimize(optimizer="bootstrap", **args)
    assert main(["compare", a.run_id[:6], b.run_id[:6], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == a.run_id and out["comparison"]["diff"] == pytest.approx(b.optimized - a.optimized)
    assert main(["compare", "sst2", "--optimizers", "bootstrap", "--lm", "scripted:toy:toy_model", "--max-metric-calls", "80",
                 "--n-train", "30", "--n-val", "20", "--n-test", "60", "--no-tracking", "--json"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text[text.index("{"):])
    assert [r["optimizer"] for r in report["tasks"][0]["rows"]] == ["none", "bootstrap"]

def test_startup_needs_no_dspy(tmp_path):
    "Issue 10.6: --help, runs list and validate answer without importing DSPy."
    code = ("import sys; from dspyopt_nb.cli import main; "
            f"main(['--help']); main(['runs', 'list']); main(['validate', {str(_job(tmp_path, lm='local'))!r}]); "
            "print('DSPY', 'dspy' in sys.modules, 'mlflow' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(HERE)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DSPY False False False" in out.stdout, out.stdout[-500:]

def test_sigterm_ends_a_run_as_failed_and_interrupted(tmp_path):
    uri, flag = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "called"
    cfg = _job(tmp_path, "long", lm="scripted:slow:slow_model", tracking=uri)
    cmd = [str(DSPYOPT)] if DSPYOPT.exists() else [sys.executable, "-m", "dspyopt_nb.cli"]
    p = subprocess.Popen(cmd + ["run", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "DSPYOPT_NO_PROGRESS": "1", "SLOW_MODEL_FLAG": str(flag)})
    try:
        deadline = time.time() + 300
        while not flag.exists() and time.time() < deadline and p.poll() is None: time.sleep(0.2)
        assert flag.exists(), "the job never called its model"
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130, out
    [rec] = list_jobs(tmp_path / "jobs")
    assert rec.status == "failed" and "interrupted" in rec.error
    from mlflow.tracking import MlflowClient
    run = MlflowClient(uri).get_run(rec.mlflow_run_id)
    assert run.info.status == "FAILED" and "interrupted" in run.data.tags["dspyopt.error"]
