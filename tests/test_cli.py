"The `dspyopt` console script: run (papermill), validate, runs list|show, schedule add|list|remove, demo; exit codes."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

from dspyopt_nb.cli import main
from dspyopt_nb.jobs import job_lock, list_runs

HERE = Path(__file__).parent
DSPYOPT = Path(sys.executable).parent / "dspyopt"   # the console script settings.ini declares

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
               tracking=False, output_dir="runs", retry_delay_s=0) | fields
    p = tmp_path / f"{file}.yaml"; p.write_text(yaml.safe_dump(cfg)); return p

def test_help_lists_the_commands():
    code, out, _ = _cli("--help")
    assert code == 0 and all(c in out for c in ("run", "validate", "runs", "demo", "schedule", "scheduler"))
    code, out, _ = _cli("demo", "--help")                  # demo passes its options on to python -m dspyopt_nb.demo
    assert code == 0 and "--optimizer" in out

def test_bad_config_exits_2_naming_the_field_and_starts_nothing(tmp_path):
    cfg = _job(tmp_path, optimiser="mipro", n_train=-1)
    code, out, err = _cli("run", cfg)
    assert code == 2 and "optimiser" in err and "did you mean 'optimizer'" in err and "n_train" in err and "Fix:" in err
    assert not (tmp_path / "runs").exists()
    code, _, err = _cli("run", cfg, "--set", "oops")
    assert code == 2 and "KEY=VALUE" in err

def test_validate_prints_the_resolved_config(tmp_path, capsys):
    assert main(["validate", str(_job(tmp_path)), "--set", "seed=3"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out.split("dspyopt:")[0])["seed"] == 3

def test_run_then_runs_list_and_show(tmp_path):
    cfg = _job(tmp_path, "quick")
    code, out, err = _cli("run", cfg, "--set", "seed=1")
    assert code == 0, out + err
    assert "quick: finished" in out and "notebook:" in out and "result:" in out
    [rec] = list_runs(tmp_path / "runs")
    assert rec.status == "finished" and f"notebook: {rec.notebook}" in out
    code, out, _ = _cli("runs", "list", "--dir", tmp_path / "runs")
    assert code == 0 and rec.id in out and "finished" in out
    code, out, _ = _cli("runs", "show", rec.id[:-3], "--dir", tmp_path / "runs", "--json")
    assert code == 0 and json.loads(out)["id"] == rec.id
    code, _, err = _cli("runs", "show", "nope", "--dir", tmp_path / "runs")
    assert code == 2 and "runs list" in err + _

def test_failing_job_exits_1_and_says_where(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text('{"review": "fine", "sentiment": "positive"}\n{"review": "no label"}\n' * 10)
    cfg = _job(tmp_path, "bad", task=None, dataset="d.jsonl", signature="review -> sentiment", metric="exact_match:sentiment")
    assert main(["run", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "bad: FAILED" in out and "error in cell [" in out and "DataError" in out and "the failing cell is marked" in out
    assert main(["runs", "list", "--dir", str(tmp_path / "runs")]) == 0
    assert "failed" in capsys.readouterr().out

def test_a_running_job_makes_a_second_run_exit_3(tmp_path):
    cfg = _job(tmp_path, "busy")
    with job_lock(tmp_path / "runs" / "busy" / ".lock", "busy"):
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
    from dspyopt_nb.tracking import MlflowTracker
    tr = MlflowTracker(uri, "dspyopt"); tr.start("mipro-abc", params={}, tags={"dspyopt.run_id": "abc"}); tr.fail("boom")
    assert main(["runs", "list", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert tr.run_id in out and "FAILED" in out and "mipro-abc" in out

def test_sigterm_ends_a_run_as_failed_and_interrupted(tmp_path):
    uri, flag = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "called"
    cfg = _job(tmp_path, "long", lm="scripted:slow:slow_model", tracking=True, mlflow_uri=uri)
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
    [rec] = list_runs(tmp_path / "runs")
    assert rec.status == "failed" and "interrupted" in rec.error
    from mlflow.tracking import MlflowClient
    run = MlflowClient(uri).get_run(rec.mlflow_run_id)
    assert run.info.status == "FAILED" and "interrupted" in run.data.tags["dspyopt.error"]
