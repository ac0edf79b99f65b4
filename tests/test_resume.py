"Nothing lost: SIGKILL a real optimization subprocess half-way, start it again, and it resumes from its cache."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

from dspyopt_nb.run.result import OptimizationResult

HERE = Path(__file__).parent

def _run(optimizer, run_dir, cache, log, *, kill_after=None, timeout=240):
    env = {**os.environ, "DSPY_CACHEDIR": str(cache), "TOY_CALL_LOG": str(log), "DSPYOPT_NO_PROGRESS": "1",
           "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = subprocess.Popen([sys.executable, str(HERE / "resume_job.py"), optimizer, str(run_dir)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_after is None:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out[-3000:]
        return out
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= kill_after:
            p.send_signal(signal.SIGKILL); p.wait(); return None
        time.sleep(0.05)
    p.kill(); pytest.fail(f"the run ended before {kill_after} LM calls: {p.stdout.read()[-2000:]}")

def _calls(log): return log.read_text().splitlines() if log.exists() else []

@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["mipro"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, optimizer):
    # the reference: one uninterrupted run
    _run(optimizer, tmp_path / "ref", tmp_path / "cache-ref", tmp_path / "ref.log")
    ref = OptimizationResult.load(tmp_path / "ref" / "result.json")
    total = len(_calls(tmp_path / "ref.log"))
    assert total > 50
    # the same run, killed with SIGKILL half-way through its LM calls ...
    _run(optimizer, tmp_path / "run", tmp_path / "cache", tmp_path / "first.log", kill_after=total // 2)
    first = _calls(tmp_path / "first.log")
    assert not (tmp_path / "run" / "result.json").exists()
    # ... then started again with the same run_dir and cache
    _run(optimizer, tmp_path / "run", tmp_path / "cache", tmp_path / "second.log")
    second = _calls(tmp_path / "second.log")
    res = OptimizationResult.load(tmp_path / "run" / "result.json")
    # no completed call is made again (the one in flight at the kill may be)
    assert len(set(first) & set(second)) <= 1, "completed LM calls were repeated after the restart"
    assert len(first) + len(second) <= total + 1
    # and the result is the uninterrupted run's
    assert res.program_state == ref.program_state
    assert res.optimized_scores == ref.optimized_scores and res.baseline_scores == ref.baseline_scores
    assert res.status == "finished"

@pytest.mark.slow
def test_sigkill_loses_nothing_acknowledged_and_resume_relogs_to_mlflow(tmp_path):
    "Issue 10.3: MLflow is written off the hot path; after SIGKILL what was acknowledged is in MLflow, and the resumed run is complete."
    from mlflow.tracking import MlflowClient
    from dspyopt_nb.run.catalogue import MLFLOW, TAG_SUPERSEDED_BY, find_run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    os.environ["TRACKING_URI"], os.environ["TOY_DELAY"] = uri, "0.01"
    try:
        _run("bootstrap", tmp_path / "run", tmp_path / "cache", tmp_path / "first.log", kill_after=80)
        ack = json.loads((tmp_path / "run" / MLFLOW).read_text())
        assert ack["acked_seq"] > 0
        from dspyopt_nb.run.events import read_events
        acked = [e for e in read_events(tmp_path / "run" / "events.jsonl") if e.seq <= ack["acked_seq"]]
        c = MlflowClient(uri)
        killed = c.get_run(ack["mlflow_run_id"])
        children = c.search_runs([killed.info.experiment_id], f"tags.mlflow.parentRunId = '{killed.info.run_id}'")
        assert len(children) >= len({e.candidate for e in acked if e.kind == "candidate"})   # nothing acknowledged is lost
        out = _run("bootstrap", tmp_path / "run", tmp_path / "cache", tmp_path / "second.log")
        res = OptimizationResult.load(tmp_path / "run" / "result.json")
        done = c.get_run(res.mlflow_run_id)
        assert done.info.status == "FINISHED" and res.mlflow_run_id != killed.info.run_id
        again = c.get_run(killed.info.run_id)
        assert again.info.status == "KILLED" and again.data.tags[TAG_SUPERSEDED_BY] == res.mlflow_run_id
        kids = c.search_runs([done.info.experiment_id], f"tags.mlflow.parentRunId = '{res.mlflow_run_id}'")
        assert len(kids) == len(res.candidates)                   # the resumed run re-logged everything
    finally:
        os.environ.pop("TRACKING_URI"); os.environ.pop("TOY_DELAY")


def test_a_run_claims_its_lock_while_others_probe_it(tmp_path):
    "`is_executing` takes the lock for an instant; a run starting meanwhile must still claim it (the panel probes while "
    "its thread starts the run: under load the claim failed and the run never started). A run held for real is refused."
    import threading, time
    import pytest
    from dspyopt_nb.run.catalogue import claim, is_executing
    from dspyopt_nb.run.errors import RunBusy
    run_dir, stop = tmp_path / "run", threading.Event()
    run_dir.mkdir()
    def probe():
        while not stop.is_set(): is_executing(run_dir)
    probes = [threading.Thread(target=probe) for _ in range(2)]
    for t in probes: t.start()
    try:
        for _ in range(200):
            with claim(run_dir, "r1"): pass
    finally:
        stop.set()
        for t in probes: t.join()
    with claim(run_dir, "r1"):
        t0 = time.monotonic()
        with pytest.raises(RunBusy, match="executing already"):
            with claim(run_dir, "r1"): pass
        assert time.monotonic() - t0 >= 1.9
